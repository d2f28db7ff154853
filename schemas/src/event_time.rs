//! Event time on the wire: RFC 3339 text or epoch milliseconds, held as epoch milliseconds.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Milliseconds since the Unix epoch, UTC.
pub type EpochMs = u64;

/// The wall clock now, epoch ms (0 before 1970, which no clock here reports).
pub fn now_ms() -> EpochMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The time an observation was made, as the device reports it.
///
/// Accepted on the wire as an RFC 3339 string (`2026-11-28T08:00:00+07:00`) or as an integer
/// number of milliseconds since the Unix epoch. Serialised as epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventTime(pub EpochMs);

impl EventTime {
    /// Parses RFC 3339 text. Times before the epoch are refused.
    pub fn parse_rfc3339(text: &str) -> Result<EventTime, String> {
        let parsed = OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|e| format!("event_time `{text}` is not RFC 3339: {e}"))?;
        let ms = parsed.unix_timestamp_nanos() / 1_000_000;
        u64::try_from(ms)
            .map(EventTime)
            .map_err(|_| format!("event_time `{text}` is before 1970"))
    }

    /// Parses epoch milliseconds or RFC 3339 text, as people give a time on a command line
    /// or in a query string.
    pub fn parse_ms_or_rfc3339(text: &str) -> Result<EventTime, String> {
        let text = text.trim();
        match text.parse::<u64>() {
            Ok(ms) => Ok(EventTime(ms)),
            Err(_) => EventTime::parse_rfc3339(text),
        }
    }

    /// RFC 3339 in UTC with milliseconds, for display and logs.
    pub fn to_rfc3339(self) -> String {
        format_rfc3339_ms(self.0)
    }
}

/// Formats epoch milliseconds as RFC 3339 UTC (`2026-11-28T01:00:00.000Z`).
pub fn format_rfc3339_ms(ms: EpochMs) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => {
            let (h, m, s) = t.time().as_hms();
            format!(
                "{:04}-{:02}-{:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.millisecond()
            )
        }
        Err(_) => ms.to_string(),
    }
}

impl Serialize for EventTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for EventTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EventTimeVisitor;
        impl Visitor<'_> for EventTimeVisitor {
            type Value = EventTime;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an RFC 3339 string or epoch milliseconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<EventTime, E> {
                Ok(EventTime(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<EventTime, E> {
                u64::try_from(v)
                    .map(EventTime)
                    .map_err(|_| E::custom(format!("event_time {v} is before 1970")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<EventTime, E> {
                Err(E::custom(format!(
                    "event_time {v} is not a whole number of epoch milliseconds"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EventTime, E> {
                EventTime::parse_rfc3339(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(EventTimeVisitor)
    }
}

impl JsonSchema for EventTime {
    fn schema_name() -> Cow<'static, str> {
        "EventTime".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "When the observation was made: RFC 3339 text or integer milliseconds since the Unix epoch (UTC).",
            "oneOf": [
                { "type": "string", "format": "date-time" },
                { "type": "integer", "minimum": 0 }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_rfc3339_and_epoch_ms() {
        let a: EventTime = serde_json::from_str("\"2026-11-28T08:00:00+07:00\"").unwrap();
        let b: EventTime = serde_json::from_str("1795827600000").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_rfc3339(), "2026-11-28T01:00:00.000Z");
        let frac: EventTime = serde_json::from_str("\"2026-11-28T01:00:00.250Z\"").unwrap();
        assert_eq!(frac.0, 1_795_827_600_250);
    }

    #[test]
    fn refuses_bad_times_with_a_reason() {
        let e = serde_json::from_str::<EventTime>("\"yesterday\"").unwrap_err();
        assert!(e.to_string().contains("not RFC 3339"), "{e}");
        let e = serde_json::from_str::<EventTime>("-5").unwrap_err();
        assert!(e.to_string().contains("before 1970"), "{e}");
        let e = serde_json::from_str::<EventTime>("1.5").unwrap_err();
        assert!(e.to_string().contains("whole number"), "{e}");
        let e = serde_json::from_str::<EventTime>("true").unwrap_err();
        assert!(e.to_string().contains("RFC 3339 string or epoch"), "{e}");
    }
}
