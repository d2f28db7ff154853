//! Ingest for the Da Nang IOC backend: the MQTT and Kafka sources, decoding and validation.
//!
//! Every transport turns a message into an [`ioc_schemas::Ingested`] record — a valid reading
//! or a dead letter with its reason — carrying the acknowledgement to run once the record is
//! durable. Bad input never panics and is never dropped: it becomes a dead letter.

mod decode;
#[cfg(feature = "kafka")]
mod kafka;
mod metrics;
mod mqtt;
mod offsets;
#[cfg(feature = "kafka")]
mod partitions;
mod puback;
mod record;

pub use decode::{decode_kafka, decode_mqtt, decode_reading, DecodeLimits, KafkaParts};
#[cfg(feature = "kafka")]
pub use kafka::{describe_topics, run_kafka, KafkaAssignment, KafkaConfig, KafkaTopics};
pub use metrics::IngestMetrics;
pub use mqtt::{run_mqtt, MqttConfig};
pub use offsets::OffsetTracker;

/// The Kafka header naming a reading's district (its slug), until the device registry does.
pub const DISTRICT_HEADER: &str = "district";

/// What can go wrong in ingest.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The configuration is unusable. Permanent.
    #[error("invalid ingest config: {0}")]
    Config(String),
    /// The MQTT client failed in a way reconnecting cannot fix. Permanent.
    #[error("mqtt: {0}")]
    Mqtt(String),
    /// The Kafka client could not be set up (bad settings, unknown topics). Permanent.
    #[error("kafka: {0}")]
    Kafka(String),
}

impl IngestError {
    /// Whether retrying may succeed.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Wall-clock now in epoch ms.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
