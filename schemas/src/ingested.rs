//! What ingest hands on: accepted readings, dead letters, and the receipt that acknowledges
//! the source once a record is durable.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::district::District;
use crate::event_time::EpochMs;
use crate::reading::Reading;
use crate::reject::Rejection;

/// Which transport a record came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// An MQTT subscription.
    Mqtt,
    /// A Kafka topic.
    Kafka,
}

impl Transport {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Mqtt => "mqtt",
            Transport::Kafka => "kafka",
        }
    }
}

/// A callback run once the record it travels with is durably stored, such as an MQTT PUBACK
/// or a Kafka offset mark. Dropping it without calling [`Ack::done`] leaves the record
/// unacknowledged, so the source redelivers it.
pub struct Ack(Box<dyn FnOnce() + Send + 'static>);

impl Ack {
    /// Wraps the acknowledgement.
    pub fn new(f: impl FnOnce() + Send + 'static) -> Ack {
        Ack(Box::new(f))
    }

    /// Acknowledges the record.
    pub fn done(self) {
        (self.0)()
    }
}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ack")
    }
}

/// A decoded, validated reading with where and when it arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestedReading {
    /// The reading.
    pub reading: Reading,
    /// The device's district (from the topic, or later the registry).
    pub district: District,
    /// The transport it came in on.
    pub transport: Transport,
    /// The MQTT topic or Kafka topic/partition it came from.
    pub source: String,
    /// When the receiver got it, epoch ms.
    pub received_at_ms: EpochMs,
    /// The payload exactly as received, kept for the raw table.
    pub payload: String,
}

/// An input that failed decoding or validation, kept with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// When the receiver got it, epoch ms.
    pub received_at_ms: EpochMs,
    /// The transport it came in on.
    pub transport: Transport,
    /// The MQTT topic or Kafka topic/partition it came from.
    pub source: String,
    /// The payload bytes exactly as received.
    pub payload: Vec<u8>,
    /// Why it was rejected.
    pub rejection: Rejection,
}

/// One record out of ingest.
#[derive(Debug)]
pub enum Ingested {
    /// A valid reading.
    Reading(IngestedReading, Option<Ack>),
    /// A rejected input.
    DeadLetter(DeadLetter, Option<Ack>),
    /// A reading already stored, read back at start-up to rebuild windows that were open when
    /// the process stopped: counted in windows, not stored again, nothing to acknowledge.
    Replayed(IngestedReading),
}
