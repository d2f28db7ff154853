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

    /// Splits the acknowledgement into `parts` that must all be done (in any order, on any
    /// thread) before the record is acknowledged: for a record stored in several tables.
    pub fn split(self, parts: usize) -> Vec<Ack> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        if parts <= 1 {
            return vec![self];
        }
        let remaining = Arc::new(AtomicUsize::new(parts));
        let whole = Arc::new(Mutex::new(Some(self)));
        (0..parts)
            .map(|_| {
                let (remaining, whole) = (Arc::clone(&remaining), Arc::clone(&whole));
                Ack::new(move || {
                    if remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                        let ack = match whole.lock() {
                            Ok(mut slot) => slot.take(),
                            Err(poisoned) => poisoned.into_inner().take(),
                        };
                        if let Some(ack) = ack {
                            ack.done();
                        }
                    }
                })
            })
            .collect()
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
    /// The payload bytes exactly as received; only the first [`DeadLetter::KEPT_BYTES`] of a
    /// payload over the size limit.
    pub payload: Vec<u8>,
    /// The payload's whole size in bytes.
    pub payload_bytes: u64,
    /// Why it was rejected.
    pub rejection: Rejection,
}

impl DeadLetter {
    /// How much of a payload over the size limit is kept: enough to tell the device and the
    /// message, never the whole of an oversized payload.
    pub const KEPT_BYTES: usize = 1024;

    /// A dead letter for `payload`, keeping it whole unless it was rejected for its size.
    pub fn new(
        received_at_ms: EpochMs,
        transport: Transport,
        source: String,
        payload: &[u8],
        rejection: Rejection,
    ) -> DeadLetter {
        let kept = if rejection.code == crate::RejectCode::PayloadTooLarge {
            &payload[..payload.len().min(Self::KEPT_BYTES)]
        } else {
            payload
        };
        DeadLetter {
            received_at_ms,
            transport,
            source,
            payload: kept.to_vec(),
            payload_bytes: payload.len() as u64,
            rejection,
        }
    }
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
    /// A change in what an input source holds back of event time: a Kafka partition assigned,
    /// caught up with its end, or revoked. It travels in order with the source's readings.
    Source(SourceMark),
}

/// A Kafka partition's standing as a watermark source, named as its readings' `source` is up
/// to the `@`: `topic/partition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMark {
    /// `topic/partition`.
    pub source: String,
    /// What changed.
    pub state: SourceState,
}

/// See [`SourceMark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// Assigned to this consumer: until it delivers a reading or catches up, the watermark
    /// cannot pass what it may still deliver, so it holds time where it is.
    Assigned,
    /// Every message before `next_offset` has been taken and the partition's end was there:
    /// it no longer holds time back by being behind (a live tail still holds for the idle
    /// timeout after its last reading).
    CaughtUp {
        /// The offset after the last one taken.
        next_offset: i64,
    },
    /// No longer this consumer's: it stops holding time.
    Revoked,
}

impl SourceMark {
    /// The source standing for the Kafka consumer before the group's first assignment. It is
    /// announced (`Assigned`) before any source starts and withdrawn (`Revoked`) after the
    /// first assignment's partitions are announced, so that MQTT, which connects sooner,
    /// cannot move event time past the partitions' backlog before they exist.
    pub const KAFKA_GROUP: &'static str = "kafka-group";

    /// The mark of the Kafka consumer awaiting its group's first assignment.
    pub fn kafka_group(state: SourceState) -> SourceMark {
        SourceMark {
            source: Self::KAFKA_GROUP.to_owned(),
            state,
        }
    }

    /// The mark of `topic`/`partition`.
    pub fn new(topic: &str, partition: i32, state: SourceState) -> SourceMark {
        SourceMark {
            source: KafkaSource::partition_name(topic, partition),
            state,
        }
    }
}

/// A Kafka record's `source`: `topic/partition@offset`; up to the `@` it names the partition,
/// as a [`SourceMark`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaSource<'a> {
    /// `topic/partition`.
    pub partition_name: &'a str,
    /// The partition.
    pub partition: u32,
    /// The record's offset; `None` in a partition's name.
    pub offset: Option<i64>,
}

impl<'a> KafkaSource<'a> {
    /// `topic/partition`.
    pub fn partition_name(topic: &str, partition: i32) -> String {
        format!("{topic}/{partition}")
    }

    /// `topic/partition@offset`.
    pub fn of_record(topic: &str, partition: i32, offset: i64) -> String {
        format!("{topic}/{partition}@{offset}")
    }

    /// Reads `topic/partition@offset` or `topic/partition`; `None` for any other string.
    pub fn parse(source: &'a str) -> Option<KafkaSource<'a>> {
        let (partition_name, offset) = match source.rsplit_once('@') {
            Some((name, offset)) => (name, Some(offset.parse().ok()?)),
            None => (source, None),
        };
        let partition = partition_name.rsplit_once('/')?.1.parse().ok()?;
        Some(KafkaSource {
            partition_name,
            partition,
            offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::Ack;

    #[test]
    fn kafka_sources_read_back_as_written() {
        use super::KafkaSource;
        let record = KafkaSource::of_record("ioc.v1.sensor", 3, 17);
        let parsed = KafkaSource::parse(&record).unwrap();
        assert_eq!(
            parsed,
            KafkaSource {
                partition_name: "ioc.v1.sensor/3",
                partition: 3,
                offset: Some(17)
            }
        );
        assert_eq!(
            parsed.partition_name,
            KafkaSource::partition_name("ioc.v1.sensor", 3)
        );
        let name = KafkaSource::parse("a/b/12").unwrap();
        assert_eq!((name.partition, name.offset), (12, None));
        assert_eq!(KafkaSource::parse("kafka-group"), None);
        assert_eq!(KafkaSource::parse("t/1@x"), None);
    }

    #[test]
    fn a_split_ack_fires_once_when_every_part_is_done() {
        let fired = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&fired);
        let mut parts = Ack::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .split(3);
        parts.pop().unwrap().done();
        parts.pop().unwrap().done();
        assert_eq!(fired.load(Ordering::SeqCst), 0);
        parts.pop().unwrap().done();
        assert_eq!(fired.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_dropped_part_leaves_the_record_unacknowledged() {
        let fired = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&fired);
        let mut parts = Ack::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .split(2);
        parts.pop().unwrap().done();
        drop(parts);
        assert_eq!(fired.load(Ordering::SeqCst), 0);
    }
}

#[cfg(test)]
mod dead_letter_tests {
    use super::{DeadLetter, Transport};
    use crate::{RejectCode, Rejection};

    #[test]
    fn an_oversized_payload_keeps_its_head_and_its_size() {
        let payload = vec![b'x'; 70_000];
        let too_large = Rejection::new(RejectCode::PayloadTooLarge, "too large");
        let d = DeadLetter::new(1, Transport::Mqtt, "t".into(), &payload, too_large);
        assert_eq!(d.payload.len(), DeadLetter::KEPT_BYTES);
        assert_eq!(d.payload_bytes, 70_000);
        let malformed = Rejection::new(RejectCode::MalformedJson, "bad");
        let d = DeadLetter::new(1, Transport::Mqtt, "t".into(), &payload[..5000], malformed);
        assert_eq!((d.payload.len(), d.payload_bytes), (5000, 5000));
    }
}
