//! Ingest for the Da Nang IOC backend: the MQTT and Kafka sources, decoding and validation.
//!
//! Every transport turns a message into an [`ioc_schemas::Ingested`] record — a valid reading
//! or a dead letter with its reason — carrying the acknowledgement to run once the record is
//! durable. Bad input never panics and is never dropped: it becomes a dead letter.

#[cfg(feature = "kafka")]
mod assignment;
mod decode;
#[cfg(feature = "kafka")]
mod kafka;
mod metrics;
mod mqtt;
mod offsets;
#[cfg(feature = "kafka")]
mod partitions;
mod puback;
#[cfg(feature = "kafka")]
mod queues;
mod record;

#[cfg(feature = "kafka")]
pub use assignment::KafkaAssignment;
pub use decode::{
    decode_kafka, decode_mqtt, decode_reading, decode_stored, DecodeLimits, KafkaParts,
};
#[cfg(feature = "kafka")]
pub use kafka::{
    describe_topics, fetch_requests_sent, run_kafka, KafkaConfig, KafkaTopics, PartitionAssignment,
};
pub use metrics::IngestMetrics;
pub use mqtt::{run_mqtt, MqttConfig};
pub use offsets::OffsetTracker;

/// The Kafka header naming a reading's district (its slug), until the device registry does.
pub const DISTRICT_HEADER: &str = "district";

/// What can go wrong in ingest. A variant's text says what was being done; the cause is its
/// [`source`](std::error::Error::source), so logs show the whole chain.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The configuration is unusable.
    #[error("invalid ingest config: {0}")]
    Config(String),
    /// A subscription could not be queued to the MQTT client.
    #[error("cannot subscribe to {topic}")]
    Subscribe {
        /// The topic filter.
        topic: String,
        /// The client's error.
        #[source]
        source: rumqttc::ClientError,
    },
    /// The Kafka client failed; `context` says what was being done.
    #[cfg(feature = "kafka")]
    #[error("kafka: {context}")]
    Kafka {
        /// What was being done, such as `cannot create the consumer`.
        context: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A fixed assignment gives this process no partition at all, so it would hold event
    /// time for the whole cluster without reading anything.
    #[error(
        "no partition of {counts:?} falls to this process: give the topics at least as many \
         partitions as the cluster has workers"
    )]
    NoPartitions {
        /// Partitions per topic.
        counts: std::collections::BTreeMap<String, usize>,
    },
    /// A blocking task (the Kafka metadata request) panicked or was cancelled.
    #[error("the {task} task failed")]
    Task {
        /// What the task did.
        task: &'static str,
        /// The panic or cancellation.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl IngestError {
    /// Whether retrying may succeed, per variant:
    ///
    /// - `Config`: the same settings fail again.
    /// - `Subscribe`: the client's request queue was full (the event loop is alive while
    ///   subscribing, so it is not closed); it empties as the loop runs.
    /// - `Kafka`: when the broker or the network failed (transport failures, timeouts, a
    ///   coordinator or leader moving, the broker throttling); not for bad settings, unknown
    ///   topics or a client that cannot be created.
    /// - `NoPartitions`: the topics keep their partition counts until an operator adds some.
    /// - `Task`: a panic is a program fault; a cancellation happens only at shutdown.
    pub fn is_retryable(&self) -> bool {
        match self {
            IngestError::Subscribe { .. } => true,
            #[cfg(feature = "kafka")]
            IngestError::Kafka { source, .. } => kafka::is_retryable_kafka(source),
            IngestError::Config(_)
            | IngestError::NoPartitions { .. }
            | IngestError::Task { .. } => false,
        }
    }
}

/// Wraps a Kafka client error with what was being done.
#[cfg(feature = "kafka")]
pub(crate) fn kafka_error(
    context: impl Into<String>,
) -> impl FnOnce(rdkafka::error::KafkaError) -> IngestError {
    let context = context.into();
    move |source| IngestError::Kafka { context, source }
}

/// Wall-clock now in epoch ms.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
