//! Ingest metrics.

use ioc_schemas::{Kind, RejectCode, Transport};
use prometheus::{CounterVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// The `kind` labels counted: every reading kind, then `unknown`.
const KIND_LABELS: usize = Kind::ALL.len() + 1;

/// The transports, as labelled.
const TRANSPORTS: [Transport; 2] = [Transport::Mqtt, Transport::Kafka];

/// The per-message counters of one transport, resolved once so that counting a message looks
/// no label up: indexed by [`kind_index`], and the rejected ones by reject code.
#[derive(Debug, Clone)]
pub(crate) struct MessageCounters {
    received: [IntCounter; KIND_LABELS],
    accepted: [IntCounter; KIND_LABELS],
    rejected: [[IntCounter; RejectCode::ALL.len()]; KIND_LABELS],
}

impl MessageCounters {
    /// Resolves (and so exports, at 0) the series of `transport` in the `received`,
    /// `accepted` and `rejected` families.
    fn of(
        [received, accepted, rejected]: [&IntCounterVec; 3],
        transport: Transport,
    ) -> MessageCounters {
        let t = transport.as_str();
        let kind = |k: usize| Kind::ALL.get(k).map_or("unknown", |kind| kind.as_str());
        MessageCounters {
            received: std::array::from_fn(|k| received.with_label_values(&[t, kind(k)])),
            accepted: std::array::from_fn(|k| accepted.with_label_values(&[t, kind(k)])),
            rejected: std::array::from_fn(|k| {
                std::array::from_fn(|c| {
                    rejected.with_label_values(&[t, kind(k), RejectCode::ALL[c].as_str()])
                })
            }),
        }
    }

    /// `ioc_ingest_received_total` of a message of `kind` (`None`: unknown).
    pub(crate) fn received(&self, kind: Option<Kind>) -> &IntCounter {
        &self.received[kind_index(kind)]
    }

    /// `ioc_ingest_accepted_total` of a message of `kind`.
    pub(crate) fn accepted(&self, kind: Option<Kind>) -> &IntCounter {
        &self.accepted[kind_index(kind)]
    }

    /// `ioc_ingest_rejected_total` of a message of `kind` rejected with `code`.
    pub(crate) fn rejected(&self, kind: Option<Kind>, code: RejectCode) -> &IntCounter {
        // The codes are declared in the order of `RejectCode::ALL` (checked by a test).
        &self.rejected[kind_index(kind)][code as usize]
    }
}

/// The place of a kind among the `kind` labels: its place in `Kind::ALL` (the declaration
/// order, checked by a test), `unknown` last.
fn kind_index(kind: Option<Kind>) -> usize {
    kind.map_or(Kind::ALL.len(), |k| k as usize)
}

/// Counters of what ingest received, accepted and rejected.
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    /// `ioc_ingest_received_total{transport,kind}`; kind from the topic, `unknown` if unparsable.
    pub received: IntCounterVec,
    /// `ioc_ingest_accepted_total{transport,kind}`.
    pub accepted: IntCounterVec,
    /// `ioc_ingest_rejected_total{transport,kind,code}`.
    pub rejected: IntCounterVec,
    /// `ioc_ingest_reconnects_total{transport}`.
    pub reconnects: IntCounterVec,
    /// `ioc_ingest_ack_failures_total{transport}`: acknowledgements never sent (an MQTT PUBACK
    /// whose connection ended first, a Kafka offset that could not be stored).
    pub ack_failures: IntCounterVec,
    /// `ioc_ingest_mqtt_oversized_packets_total`: packets over `mqtt.max_packet_bytes`, each of
    /// which cost the connection.
    pub oversized_packets: IntCounter,
    /// `ioc_ingest_mqtt_unacked_messages`: QoS 1 messages received and not yet acknowledged.
    pub mqtt_unacked: IntGauge,
    /// `ioc_ingest_mqtt_connected`: 1 while connected.
    pub connected: IntGauge,
    /// `ioc_ingest_stashed_records`: decoded records waiting for room in the pipeline.
    pub stashed: IntGauge,
    /// `ioc_ingest_kafka_connected`: 1 while the Kafka consumer runs.
    pub kafka_connected: IntGauge,
    /// `ioc_ingest_kafka_assigned_partitions`: partitions this consumer reads.
    pub kafka_assigned: IntGauge,
    /// `ioc_ingest_kafka_lag_messages{topic,partition}`: messages behind the partition's end.
    pub kafka_lag: IntGaugeVec,
    /// `ioc_ingest_kafka_partition_paused{topic,partition}`: 1 while alignment holds it back.
    pub kafka_paused: IntGaugeVec,
    /// `ioc_ingest_kafka_paused_seconds_total{topic,partition}`: time held back by alignment.
    pub kafka_paused_seconds: CounterVec,
    /// `ioc_ingest_kafka_partition_caught_up{topic,partition}`: 1 once it has reached its end.
    pub kafka_caught_up: IntGaugeVec,
    /// `ioc_ingest_kafka_held`: 1 while taking from Kafka waits for room in the pipeline.
    pub kafka_held: IntGauge,
    /// `ioc_ingest_kafka_fetch_requests_total`: fetch requests the consumer has sent.
    pub kafka_fetches: IntCounter,
    /// The per-message counters of MQTT.
    mqtt_messages: MessageCounters,
    /// The per-message counters of Kafka.
    kafka_messages: MessageCounters,
}

impl IngestMetrics {
    /// Registers the metrics. Every series whose labels are known up front (transport, kind,
    /// rejection code) is exported from the start, at 0; the per-partition Kafka series
    /// appear with their partition.
    pub fn new(registry: &Registry) -> Result<IngestMetrics, prometheus::Error> {
        // The per-message counters are resolved (so exported) by `register`.
        let metrics = IngestMetrics::register(registry)?;
        for transport in TRANSPORTS.map(Transport::as_str) {
            metrics.reconnects.with_label_values(&[transport]);
            metrics.ack_failures.with_label_values(&[transport]);
        }
        Ok(metrics)
    }

    /// The per-message counters of `transport`.
    pub(crate) fn messages(&self, transport: Transport) -> &MessageCounters {
        match transport {
            Transport::Mqtt => &self.mqtt_messages,
            Transport::Kafka => &self.kafka_messages,
        }
    }

    fn register(registry: &Registry) -> Result<IngestMetrics, prometheus::Error> {
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let received = counter(
            "ioc_ingest_received_total",
            "Messages received.",
            &["transport", "kind"],
        )?;
        let accepted = counter(
            "ioc_ingest_accepted_total",
            "Messages that decoded and validated.",
            &["transport", "kind"],
        )?;
        let rejected = counter(
            "ioc_ingest_rejected_total",
            "Messages rejected to dead letters, by reason.",
            &["transport", "kind", "code"],
        )?;
        let families = [&received, &accepted, &rejected];
        Ok(IngestMetrics {
            mqtt_messages: MessageCounters::of(families, Transport::Mqtt),
            kafka_messages: MessageCounters::of(families, Transport::Kafka),
            received,
            accepted,
            rejected,
            reconnects: counter(
                "ioc_ingest_reconnects_total",
                "Broken connections to a broker.",
                &["transport"],
            )?,
            ack_failures: counter(
                "ioc_ingest_ack_failures_total",
                "Acknowledgements never sent: the connection ended first, or the offset could not be stored (the source redelivers).",
                &["transport"],
            )?,
            kafka_fetches: {
                let c = IntCounter::new(
                    "ioc_ingest_kafka_fetch_requests_total",
                    "Fetch requests the Kafka consumer has sent to the brokers, from librdkafka's \
                     statistics (every kafka.statistics_interval_ms).",
                )?;
                registry.register(Box::new(c.clone()))?;
                c
            },
            oversized_packets: {
                let c = IntCounter::new(
                    "ioc_ingest_mqtt_oversized_packets_total",
                    "MQTT packets over mqtt.max_packet_bytes; each cost the connection.",
                )?;
                registry.register(Box::new(c.clone()))?;
                c
            },
            mqtt_unacked: gauge(
                "ioc_ingest_mqtt_unacked_messages",
                "QoS 1 messages received and not yet acknowledged (acknowledged in arrival order).",
            )?,
            connected: gauge(
                "ioc_ingest_mqtt_connected",
                "1 while the MQTT connection is up.",
            )?,
            stashed: gauge(
                "ioc_ingest_stashed_records",
                "Decoded records waiting for room in the pipeline.",
            )?,
            kafka_connected: gauge(
                "ioc_ingest_kafka_connected",
                "1 while the Kafka consumer runs.",
            )?,
            kafka_assigned: gauge(
                "ioc_ingest_kafka_assigned_partitions",
                "Kafka partitions this consumer reads (assigned to itself, or by the group).",
            )?,
            kafka_paused: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "ioc_ingest_kafka_partition_paused",
                        "1 while watermark alignment holds the partition back, unread (it ran ahead in event time).",
                    ),
                    &["topic", "partition"],
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            kafka_paused_seconds: {
                let c = CounterVec::new(
                    Opts::new(
                        "ioc_ingest_kafka_paused_seconds_total",
                        "Time each partition spent held back by watermark alignment.",
                    ),
                    &["topic", "partition"],
                )?;
                registry.register(Box::new(c.clone()))?;
                c
            },
            kafka_caught_up: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "ioc_ingest_kafka_partition_caught_up",
                        "1 once the partition's position has reached its end (it no longer holds event time back).",
                    ),
                    &["topic", "partition"],
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            kafka_held: gauge(
                "ioc_ingest_kafka_held",
                "1 while taking from Kafka waits for room in the pipeline (the consumer is still polled).",
            )?,
            kafka_lag: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "ioc_ingest_kafka_lag_messages",
                        "Messages between the group's committed offset and the partition's end.",
                    ),
                    &["topic", "partition"],
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_series_are_exported_from_the_start() {
        let registry = Registry::new();
        IngestMetrics::new(&registry).unwrap();
        let families = registry.gather();
        let series = |name: &str| {
            families
                .iter()
                .find(|f| f.name() == name)
                .map_or(0, |f| f.get_metric().len())
        };
        let kinds = Kind::ALL.len() + 1;
        assert_eq!(series("ioc_ingest_received_total"), 2 * kinds);
        assert_eq!(series("ioc_ingest_accepted_total"), 2 * kinds);
        assert_eq!(
            series("ioc_ingest_rejected_total"),
            2 * kinds * RejectCode::ALL.len()
        );
        assert_eq!(series("ioc_ingest_reconnects_total"), 2);
        assert_eq!(series("ioc_ingest_ack_failures_total"), 2);
        assert_eq!(series("ioc_ingest_mqtt_oversized_packets_total"), 1);
    }

    #[test]
    fn resolved_counters_are_the_labelled_series() {
        for (i, kind) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "Kind::ALL follows the declaration order");
        }
        for (i, code) in RejectCode::ALL.into_iter().enumerate() {
            assert_eq!(
                code as usize, i,
                "RejectCode::ALL follows the declaration order"
            );
        }
        let metrics = IngestMetrics::new(&Registry::new()).unwrap();
        let kafka = metrics.messages(Transport::Kafka);
        kafka.received(Some(Kind::Environment)).inc();
        kafka.received(None).inc_by(2);
        kafka
            .rejected(Some(Kind::Sensor), RejectCode::PayloadTooLarge)
            .inc();
        let get = |vec: &IntCounterVec, labels: &[&str]| vec.with_label_values(labels).get();
        assert_eq!(get(&metrics.received, &["kafka", "environment"]), 1);
        assert_eq!(get(&metrics.received, &["kafka", "unknown"]), 2);
        assert_eq!(get(&metrics.received, &["mqtt", "unknown"]), 0);
        assert_eq!(
            get(&metrics.rejected, &["kafka", "sensor", "payload_too_large"]),
            1
        );
    }
}
