//! Publishing the generated stream to Kafka: one topic per reading kind, keyed by device id,
//! with the device's district in a `district` header.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use ioc_schemas::{parse_topic, Kind};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio::time::{sleep_until, Instant};
use tracing::info;

use crate::config::SimulatorConfig;
use crate::error::SimulatorError;
use crate::fleet::Fleet;
use crate::generator::Generator;
use crate::publish::{pace_target, start_ms, PublishReport, PACING_SLACK};

/// Waits for one delivery report.
async fn delivered(future: DeliveryFuture) -> Result<(), SimulatorError> {
    match future.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(SimulatorError::Refused(format!(
            "kafka delivery failed: {e}"
        ))),
        Err(_) => Err(SimulatorError::EventLoopStopped),
    }
}

/// A producer of generated messages to Kafka: each goes to its kind's topic, keyed by device
/// id, with the district in a `district` header, and at most `max_in_flight` deliveries wait
/// at once.
pub struct KafkaSink {
    producer: FutureProducer,
    in_flight: VecDeque<DeliveryFuture>,
    max_in_flight: usize,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

impl KafkaSink {
    /// A producer to `brokers`; a message not delivered within `delivery_timeout_ms` fails.
    pub fn new(
        brokers: &str,
        client_id: &str,
        delivery_timeout_ms: u64,
        max_in_flight: usize,
    ) -> Result<KafkaSink, SimulatorError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("client.id", client_id)
            .set("linger.ms", "5")
            // One record per batch, as each device sends its own message. It also keeps a
            // consumer that resumes mid-batch whole on tansu 0.6.0, which skips the rest of a
            // batch when a fetch starts inside it (see the README).
            .set("batch.num.messages", "1")
            .set("message.timeout.ms", delivery_timeout_ms.to_string())
            .create()
            .map_err(|e| {
                SimulatorError::InvalidConfig(format!("cannot create the kafka producer: {e}"))
            })?;
        Ok(KafkaSink {
            producer,
            in_flight: VecDeque::new(),
            max_in_flight: max_in_flight.max(1),
        })
    }

    /// Sends a message generated for the MQTT topic `mqtt_topic` to its kind's Kafka topic.
    pub async fn send(
        &mut self,
        topic_of: &impl Fn(Kind) -> String,
        mqtt_topic: &str,
        payload: &[u8],
    ) -> Result<(), SimulatorError> {
        // Malformed messages still have a well-formed topic, so each goes to its kind's topic.
        let (topic, key, district) = match parse_topic(mqtt_topic) {
            Ok(p) => (topic_of(p.kind), p.device_id.to_owned(), Some(p.district)),
            Err(_) => (topic_of(Kind::Sensor), String::new(), None),
        };
        let mut headers = OwnedHeaders::new();
        if let Some(d) = district {
            headers = headers.insert(Header {
                key: "district",
                value: Some(d.slug()),
            });
        }
        let mut record = FutureRecord::to(&topic)
            .key(key.as_str())
            .payload(payload)
            .headers(headers);
        loop {
            match self.producer.send_result(record) {
                Ok(future) => {
                    self.in_flight.push_back(future);
                    break;
                }
                // The local queue is full: wait for the oldest delivery, then try again.
                Err((_, back)) => {
                    record = back;
                    match self.in_flight.pop_front() {
                        Some(oldest) => delivered(oldest).await?,
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            }
        }
        while self.in_flight.len() > self.max_in_flight {
            if let Some(oldest) = self.in_flight.pop_front() {
                delivered(oldest).await?;
            }
        }
        Ok(())
    }

    /// Waits until every message sent has been acknowledged by the broker.
    pub async fn flush(self) -> Result<(), SimulatorError> {
        for future in self.in_flight {
            delivered(future).await?;
        }
        Ok(())
    }
}

/// Publishes Da Nang's simulated fleet to Kafka at `brokers`, the topic of each kind given by
/// `topic_of`, paced as [`publish_mqtt`](crate::publish_mqtt) (in real time at the devices'
/// registry intervals with `cfg.rate_per_s` as a ceiling, else at exactly `cfg.rate_per_s`
/// messages per second). Stops after `cfg.max_messages` or when `shutdown` completes; on `Ok`
/// every message counted was acknowledged by the broker.
pub async fn publish_kafka(
    cfg: &SimulatorConfig,
    brokers: &str,
    topic_of: impl Fn(Kind) -> String,
    shutdown: impl Future<Output = ()>,
) -> Result<PublishReport, SimulatorError> {
    cfg.validate()?;
    let start_ms = start_ms(cfg);
    let mut generator = Generator::new(Fleet::da_nang(cfg.seed), cfg.seed, cfg, start_ms)?;
    let mut sink = KafkaSink::new(
        brokers,
        &cfg.client_id,
        cfg.drain_timeout_ms,
        cfg.channel_capacity,
    )?;
    info!(
        brokers,
        rate_per_s = cfg.rate_per_s,
        real_time = cfg.real_time,
        // In real-time mode what the fleet sends (rate_per_s caps it).
        fleet_rate_per_s = generator.fleet().natural_rate_per_s(),
        run_id = %generator.run_id(),
        "simulator publishing to kafka"
    );
    let t0 = Instant::now();
    let mut report = PublishReport::default();
    let mut shutdown = pin!(shutdown);
    while let Some(msg) = generator.next() {
        let target = pace_target(cfg, &generator, t0, start_ms, report.sent);
        if target > Instant::now() + PACING_SLACK {
            tokio::select! {
                () = sleep_until(target) => {}
                () = &mut shutdown => break,
            }
        }
        sink.send(&topic_of, &msg.topic, &msg.payload).await?;
        report.count(msg.class);
    }
    sink.flush().await?;
    info!(
        sent = report.sent,
        "simulator finished; every kafka message acknowledged"
    );
    Ok(report)
}
