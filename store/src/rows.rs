//! One Rust struct per table, field for field in column order.
//!
//! `Enum8` columns are held as `i8`: RowBinary sends an `Enum8` as its numeric value, and the
//! numbers are the 1-based positions in the `ALL` lists of `ioc-schemas` (see the migration).
//! `DateTime` columns are whole seconds (`u32`) beside the exact `*_ms` column.

use ioc_schemas::{DeadLetter, District, EpochMs, IngestedReading, Kind, Transport, WindowResult};
use serde::{Deserialize, Serialize};

/// A row type with the table it goes to. Implemented by every row type of this crate.
pub trait StoreRow:
    clickhouse::RowOwned + clickhouse::RowWrite + Serialize + Send + Sync + 'static
{
    /// The table's name in the configured database.
    const TABLE: &'static str;

    /// Leaves out the rows of `batch` that a later row of the same batch replaces, as the
    /// table would once its parts merge; returns how many. None, unless the table keeps one
    /// version per key.
    fn drop_replaced(_batch: &mut Vec<Self>) -> usize
    where
        Self: Sized,
    {
        0
    }
}

/// A valid reading as stored in `readings`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct ReadingRow {
    /// Unique per device.
    pub message_id: String,
    /// The device.
    pub device_id: String,
    /// `Enum8` kind: position in `Kind::ALL`, from 1.
    pub kind: i8,
    /// `Enum8` district: position in `District::ALL`, from 1.
    pub district: i8,
    /// Event time, whole seconds.
    pub event_time: u32,
    /// Event time, epoch ms.
    pub event_time_ms: u64,
    /// Receive time, whole seconds.
    pub received_at: u32,
    /// Receive time, epoch ms; the replacing version (the latest copy wins).
    pub received_at_ms: u64,
    /// `Enum8` transport: 1 MQTT, 2 Kafka.
    pub transport: i8,
    /// The MQTT topic or Kafka topic/partition.
    pub source: String,
    /// 1 when it arrived later than the allowed lateness (so it is in no window).
    pub late: u8,
    /// The JSON exactly as received.
    pub payload: String,
}

impl ReadingRow {
    /// The row for a reading; `late` as the dataflow decided.
    pub fn new(r: &IngestedReading, late: bool) -> ReadingRow {
        ReadingRow {
            message_id: r.reading.message_id.clone(),
            device_id: r.reading.device_id.clone(),
            source: r.source.clone(),
            payload: r.payload.clone(),
            ..ReadingRow::without_text(r, late)
        }
    }

    /// [`new`](Self::new), taking the reading's text instead of copying it.
    pub fn from_owned(r: IngestedReading, late: bool) -> ReadingRow {
        let row = ReadingRow::without_text(&r, late);
        ReadingRow {
            message_id: r.reading.message_id,
            device_id: r.reading.device_id,
            source: r.source,
            payload: r.payload,
            ..row
        }
    }

    /// The row's numbers; its text fields empty.
    fn without_text(r: &IngestedReading, late: bool) -> ReadingRow {
        let event_ms = r.reading.event_time.0;
        ReadingRow {
            message_id: String::new(),
            device_id: String::new(),
            kind: kind_code(r.reading.kind()),
            district: district_code(r.district),
            event_time: seconds(event_ms),
            event_time_ms: event_ms,
            received_at: seconds(r.received_at_ms),
            received_at_ms: r.received_at_ms,
            transport: transport_code(r.transport),
            source: String::new(),
            late: u8::from(late),
            payload: String::new(),
        }
    }
}

impl StoreRow for ReadingRow {
    const TABLE: &'static str = "readings";
}

/// A window aggregate as stored in `window_results`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct WindowRow {
    /// `Enum8` kind.
    pub kind: i8,
    /// `Enum8` district.
    pub district: i8,
    /// The device.
    pub device_id: String,
    /// The metric aggregated.
    pub metric: String,
    /// Window length, ms.
    pub window_size_ms: u64,
    /// Window start, whole seconds.
    pub window_start: u32,
    /// Window start, epoch ms.
    pub window_start_ms: u64,
    /// Number of samples.
    pub count: u64,
    /// Sum of the samples.
    pub sum: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// `sum / count`.
    pub mean: f64,
    /// When it was emitted, whole seconds.
    pub emitted_at: u32,
    /// When it was emitted, epoch ms.
    pub emitted_at_ms: u64,
    /// The replacing version: a correction of the same window has a higher one.
    pub version: u32,
    /// 1 once the window can no longer change.
    pub is_final: u8,
}

impl From<&WindowResult> for WindowRow {
    /// The result's version and finality, so the latest correction wins on merge.
    fn from(w: &WindowResult) -> WindowRow {
        WindowRow {
            kind: kind_code(w.kind),
            district: district_code(w.district),
            device_id: w.device_id.clone(),
            metric: w.metric.clone(),
            window_size_ms: w.window_size_ms,
            window_start: seconds(w.window_start_ms),
            window_start_ms: w.window_start_ms,
            count: w.count,
            sum: w.sum,
            min: w.min,
            max: w.max,
            mean: w.mean,
            emitted_at: seconds(w.emitted_at_ms),
            emitted_at_ms: w.emitted_at_ms,
            version: w.version,
            is_final: u8::from(w.is_final),
        }
    }
}

impl StoreRow for WindowRow {
    const TABLE: &'static str = "window_results";

    /// Keeps, per window (the table's sorting key), the highest version, and the last of
    /// equal ones, as `ReplacingMergeTree(version)` does: in a backlog a window's provisional
    /// row and its final one often share a batch, and only the final one is worth inserting.
    fn drop_replaced(batch: &mut Vec<Self>) -> usize {
        let keep = {
            // The sorting key `(kind, device_id, metric, window_size_ms, window_start_ms)`.
            type Key<'a> = (i8, &'a str, &'a str, u64, u64);
            // Per key: the newest version and where it is.
            // Randomly seeded foldhash, as in the dataflow's per-reading maps: SipHash cost more.
            let mut newest: std::collections::HashMap<Key<'_>, (u32, usize), _> =
                std::collections::HashMap::with_capacity_and_hasher(
                    batch.len(),
                    foldhash::fast::RandomState::default(),
                );
            for (i, r) in batch.iter().enumerate() {
                let key = (
                    r.kind,
                    r.device_id.as_str(),
                    r.metric.as_str(),
                    r.window_size_ms,
                    r.window_start_ms,
                );
                let slot = newest.entry(key).or_insert((r.version, i));
                if r.version >= slot.0 {
                    *slot = (r.version, i);
                }
            }
            if newest.len() == batch.len() {
                return 0;
            }
            let mut keep = vec![false; batch.len()];
            for (_, i) in newest.into_values() {
                keep[i] = true;
            }
            keep
        };
        let before = batch.len();
        let mut kept = keep.into_iter();
        batch.retain(|_| kept.next().unwrap_or(true));
        before - batch.len()
    }
}

/// A late reading as recorded in the late ledger `late_readings`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct LateReadingRow {
    /// Unique per device.
    pub message_id: String,
    /// The device.
    pub device_id: String,
    /// `Enum8` kind.
    pub kind: i8,
    /// `Enum8` district.
    pub district: i8,
    /// Event time, whole seconds.
    pub event_time: u32,
    /// Event time, epoch ms.
    pub event_time_ms: u64,
    /// Receive time, whole seconds.
    pub received_at: u32,
    /// Receive time, epoch ms.
    pub received_at_ms: u64,
    /// The watermark when it arrived, epoch ms.
    pub watermark_ms: u64,
    /// How far behind the watermark it was, ms.
    pub late_by_ms: u64,
    /// The MQTT topic or Kafka topic/partition.
    pub source: String,
}

impl LateReadingRow {
    /// The ledger row of a reading that arrived when the watermark stood at `watermark_ms`.
    pub fn new(r: &IngestedReading, watermark_ms: u64) -> LateReadingRow {
        let event_ms = r.reading.event_time.0;
        LateReadingRow {
            message_id: r.reading.message_id.clone(),
            device_id: r.reading.device_id.clone(),
            kind: kind_code(r.reading.kind()),
            district: district_code(r.district),
            event_time: seconds(event_ms),
            event_time_ms: event_ms,
            received_at: seconds(r.received_at_ms),
            received_at_ms: r.received_at_ms,
            watermark_ms,
            late_by_ms: watermark_ms.saturating_sub(event_ms),
            source: r.source.clone(),
        }
    }
}

impl StoreRow for LateReadingRow {
    const TABLE: &'static str = "late_readings";
}

/// A rejected input as stored in `dead_letters`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct DeadLetterRow {
    /// Receive time, whole seconds.
    pub received_at: u32,
    /// Receive time, epoch ms.
    pub received_at_ms: u64,
    /// `Enum8` transport.
    pub transport: i8,
    /// The MQTT topic or Kafka topic/partition.
    pub source: String,
    /// `Enum8` rejection code: position in `RejectCode::ALL`, from 1.
    pub code: i8,
    /// The rejection's detail.
    pub reason: String,
    /// The bytes exactly as received, possibly not UTF-8; the first
    /// [`DeadLetter::KEPT_BYTES`] of an oversized payload.
    #[serde(with = "string_bytes")]
    pub payload: Vec<u8>,
    /// The payload's whole size in bytes.
    pub payload_bytes: u64,
}

impl DeadLetterRow {
    /// The dead letter this row was written from; an error names an `Enum8` value this
    /// version does not know.
    pub fn into_dead_letter(self) -> Result<DeadLetter, String> {
        let code = usize::try_from(self.code)
            .ok()
            .and_then(|i| ioc_schemas::RejectCode::ALL.get(i.wrapping_sub(1)))
            .ok_or_else(|| format!("unknown rejection code {}", self.code))?;
        let transport = match self.transport {
            1 => Transport::Mqtt,
            2 => Transport::Kafka,
            other => return Err(format!("unknown transport {other}")),
        };
        Ok(DeadLetter {
            received_at_ms: self.received_at_ms,
            transport,
            source: self.source,
            payload: self.payload,
            payload_bytes: self.payload_bytes,
            rejection: ioc_schemas::Rejection::new(*code, self.reason),
        })
    }
}

impl From<&DeadLetter> for DeadLetterRow {
    fn from(d: &DeadLetter) -> DeadLetterRow {
        DeadLetterRow {
            received_at: seconds(d.received_at_ms),
            received_at_ms: d.received_at_ms,
            transport: transport_code(d.transport),
            source: d.source.clone(),
            code: position_code(&ioc_schemas::RejectCode::ALL, &d.rejection.code),
            reason: d.rejection.detail.clone(),
            payload: d.payload.clone(),
            payload_bytes: d.payload_bytes,
        }
    }
}

impl StoreRow for DeadLetterRow {
    const TABLE: &'static str = "dead_letters";
}

/// The `Enum8` value of a kind.
pub fn kind_code(kind: Kind) -> i8 {
    position_code(&Kind::ALL, &kind)
}

/// The `Enum8` value of a district.
pub fn district_code(district: District) -> i8 {
    position_code(&District::ALL, &district)
}

/// The `Enum8` value of a transport.
pub fn transport_code(transport: Transport) -> i8 {
    match transport {
        Transport::Mqtt => 1,
        Transport::Kafka => 2,
    }
}

/// 1-based position in a short `ALL` list (every list has under 127 entries and holds every
/// variant, so the fallback 0 — not a valid enum value, hence an insert error — is never hit).
pub(crate) fn position_code<T: PartialEq>(all: &[T], value: &T) -> i8 {
    all.iter()
        .position(|v| v == value)
        .and_then(|i| i8::try_from(i + 1).ok())
        .unwrap_or(0)
}

/// Whole seconds for a `DateTime` column, which ends in 2106.
pub(crate) fn seconds(ms: EpochMs) -> u32 {
    u32::try_from(ms / 1000).unwrap_or(u32::MAX)
}

/// `Vec<u8>` as a ClickHouse `String`: serde would otherwise send a `Vec<u8>` as an `Array`.
mod string_bytes {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(BytesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioc_schemas::{Body, EventTime, Reading, RejectCode, Rejection, SensorBody};

    #[test]
    fn a_dead_letter_row_reads_back_as_the_letter() {
        for (code, transport) in [
            (RejectCode::InvalidUtf8, Transport::Mqtt),
            (RejectCode::PayloadTooLarge, Transport::Kafka),
        ] {
            let letter = DeadLetter::new(
                1_795_827_600_000,
                transport,
                "ioc.v1.sensor/3@17".into(),
                b"\xff not json",
                Rejection::new(code, "why"),
            );
            let row = DeadLetterRow::from(&letter);
            assert_eq!(row.into_dead_letter(), Ok(letter));
        }
        let mut row = DeadLetterRow::from(&DeadLetter::new(
            0,
            Transport::Mqtt,
            String::new(),
            b"x",
            Rejection::new(RejectCode::OutOfRange, "x"),
        ));
        row.code = 99;
        assert!(row.into_dead_letter().is_err());
    }

    #[test]
    fn codes_follow_the_all_lists_from_one() {
        assert_eq!(kind_code(Kind::Sensor), 1);
        assert_eq!(kind_code(Kind::Environment), 4);
        assert_eq!(district_code(District::HaiChau), 1);
        assert_eq!(district_code(District::HoaVang), 7);
        for (i, k) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(kind_code(k) as usize, i + 1);
        }
        assert_eq!(
            position_code(&RejectCode::ALL, &RejectCode::PayloadTooLarge),
            10
        );
    }

    #[test]
    fn reading_row_carries_both_time_columns() {
        let r = IngestedReading {
            reading: Reading {
                message_id: "m1".into(),
                device_id: "rain-hai_chau-1".into(),
                event_time: EventTime(1_795_827_600_250),
                body: Body::Sensor(SensorBody {
                    metric: "rainfall_mm".into(),
                    value: 1.5,
                    unit: "mm".into(),
                }),
            },
            district: District::HaiChau,
            transport: Transport::Kafka,
            source: "ioc.readings/3".into(),
            received_at_ms: 1_795_827_601_999,
            payload: "{}".into(),
        };
        let row = ReadingRow::new(&r, true);
        assert_eq!(row.event_time, 1_795_827_600);
        assert_eq!(row.event_time_ms, 1_795_827_600_250);
        assert_eq!(row.received_at, 1_795_827_601);
        assert_eq!(
            (row.kind, row.district, row.transport, row.late),
            (1, 1, 2, 1)
        );
        assert_eq!(row.source, "ioc.readings/3");
        // Taking the reading's text gives the same row as copying it.
        assert_eq!(ReadingRow::from_owned(r, true), row);
    }

    #[test]
    fn dead_letter_row_keeps_bytes_and_reason() {
        let d = DeadLetter::new(
            5_000,
            Transport::Mqtt,
            "ioc/v1/x".into(),
            &[0xff, 0x00, b'{'],
            Rejection::new(RejectCode::InvalidUtf8, "byte 0 is not utf-8"),
        );
        let row = DeadLetterRow::from(&d);
        assert_eq!(row.payload, vec![0xff, 0x00, b'{']);
        assert_eq!((row.code, row.received_at), (1, 5));
        assert_eq!(row.reason, "byte 0 is not utf-8");
        assert_eq!(row.payload_bytes, 3);
    }

    #[test]
    fn a_batch_keeps_the_newest_version_of_each_window_and_the_last_of_equal_ones() {
        let row = |device: &str, start_ms: u64, version: u32, sum: f64| WindowRow {
            kind: 2,
            district: 1,
            device_id: device.into(),
            metric: "vehicles".into(),
            window_size_ms: 60_000,
            window_start: (start_ms / 1000) as u32,
            window_start_ms: start_ms,
            count: u64::from(version / 2),
            sum,
            min: 0.0,
            max: 0.0,
            mean: 0.0,
            emitted_at: 0,
            emitted_at_ms: 0,
            version,
            is_final: u8::from(version % 2 == 1),
        };
        let mut batch = vec![
            row("a", 0, 4, 1.0),      // provisional, replaced by the final below
            row("b", 0, 6, 2.0),      // the only row of its window
            row("a", 60_000, 2, 3.0), // another window of the same series
            row("a", 0, 5, 4.0),      // final
            row("c", 0, 3, 5.0),      // equal versions: the later one wins
            row("c", 0, 3, 6.0),
            row("a", 0, 4, 7.0), // an older version after the final: still replaced
        ];
        assert_eq!(WindowRow::drop_replaced(&mut batch), 3);
        let kept: Vec<(&str, u64, u32, f64)> = batch
            .iter()
            .map(|r| (r.device_id.as_str(), r.window_start_ms, r.version, r.sum))
            .collect();
        assert_eq!(
            kept,
            [
                ("b", 0, 6, 2.0),
                ("a", 60_000, 2, 3.0),
                ("a", 0, 5, 4.0),
                ("c", 0, 3, 6.0)
            ]
        );
        let mut unique = batch.clone();
        assert_eq!(WindowRow::drop_replaced(&mut unique), 0);
        assert_eq!(unique, batch);
    }
}
