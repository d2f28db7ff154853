//! Ingest metrics.

use ioc_schemas::{Kind, RejectCode, Transport};
use prometheus::{CounterVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// The transports, as labelled.
const TRANSPORTS: [Transport; 2] = [Transport::Mqtt, Transport::Kafka];

/// The `kind` labels: every reading kind, and `unknown` for a message whose topic or key
/// names none.
fn kind_labels() -> impl Iterator<Item = &'static str> {
    Kind::ALL.iter().map(|k| k.as_str()).chain(["unknown"])
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
    /// `ioc_ingest_ack_failures_total{transport}`: acknowledgements that could not be queued.
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
    /// `ioc_ingest_kafka_assigned_partitions`: partitions the group gives this consumer.
    pub kafka_assigned: IntGauge,
    /// `ioc_ingest_kafka_lag_messages{topic,partition}`: messages behind the partition's end.
    pub kafka_lag: IntGaugeVec,
    /// `ioc_ingest_kafka_partition_paused{topic,partition}`: 1 while alignment pauses it.
    pub kafka_paused: IntGaugeVec,
    /// `ioc_ingest_kafka_paused_seconds_total{topic,partition}`: time paused by alignment.
    pub kafka_paused_seconds: CounterVec,
    /// `ioc_ingest_kafka_partition_caught_up{topic,partition}`: 1 once it has reached its end.
    pub kafka_caught_up: IntGaugeVec,
    /// `ioc_ingest_kafka_held`: 1 while taking from Kafka waits for room in the pipeline.
    pub kafka_held: IntGauge,
}

impl IngestMetrics {
    /// Registers the metrics. Every series whose labels are known up front (transport, kind,
    /// rejection code) is exported from the start, at 0; the per-partition Kafka series
    /// appear with their partition.
    pub fn new(registry: &Registry) -> Result<IngestMetrics, prometheus::Error> {
        let metrics = IngestMetrics::register(registry)?;
        for transport in TRANSPORTS.map(Transport::as_str) {
            metrics.reconnects.with_label_values(&[transport]);
            metrics.ack_failures.with_label_values(&[transport]);
            for kind in kind_labels() {
                metrics.received.with_label_values(&[transport, kind]);
                metrics.accepted.with_label_values(&[transport, kind]);
                for code in RejectCode::ALL {
                    metrics
                        .rejected
                        .with_label_values(&[transport, kind, code.as_str()]);
                }
            }
        }
        Ok(metrics)
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
        Ok(IngestMetrics {
            received: counter(
                "ioc_ingest_received_total",
                "Messages received.",
                &["transport", "kind"],
            )?,
            accepted: counter(
                "ioc_ingest_accepted_total",
                "Messages that decoded and validated.",
                &["transport", "kind"],
            )?,
            rejected: counter(
                "ioc_ingest_rejected_total",
                "Messages rejected to dead letters, by reason.",
                &["transport", "kind", "code"],
            )?,
            reconnects: counter(
                "ioc_ingest_reconnects_total",
                "Broken connections to a broker.",
                &["transport"],
            )?,
            ack_failures: counter(
                "ioc_ingest_ack_failures_total",
                "Acknowledgements that could not be queued (the source redelivers).",
                &["transport"],
            )?,
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
                "Partitions the consumer group has assigned to this consumer.",
            )?,
            kafka_paused: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "ioc_ingest_kafka_partition_paused",
                        "1 while watermark alignment pauses the partition (it ran ahead in event time).",
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
                        "Time each partition spent paused by watermark alignment.",
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
}
