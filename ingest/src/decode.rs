//! Decoding and validating a payload into a [`Reading`], with a precise reason when it fails.
//! Shared by every transport.

use std::borrow::Cow;

use ioc_schemas::{Body, EventTime, Kind, Reading, RejectCode, Rejection, ValidationLimits};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The envelope as it arrives; the body is decoded once the kind is known, so errors can say
/// which part is wrong.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEnvelope<'a> {
    message_id: String,
    device_id: String,
    event_time: EventTime,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    body: &'a RawValue,
}

/// Decodes and validates one payload. `now_ms` is the receiver's clock, for the future check.
pub fn decode_reading(
    payload: &[u8],
    max_payload_bytes: usize,
    now_ms: u64,
    limits: &ValidationLimits,
) -> Result<Reading, Rejection> {
    if payload.len() > max_payload_bytes {
        return Err(Rejection::new(
            RejectCode::PayloadTooLarge,
            format!(
                "payload is {} bytes, the limit is {max_payload_bytes}",
                payload.len()
            ),
        ));
    }
    let text = std::str::from_utf8(payload).map_err(|e| {
        Rejection::new(
            RejectCode::InvalidUtf8,
            format!("payload is not UTF-8: {e}"),
        )
    })?;
    let envelope: WireEnvelope<'_> = serde_json::from_str(text).map_err(|e| classify(&e, ""))?;
    let Some(kind) = Kind::from_name(&envelope.kind) else {
        return Err(Rejection::new(
            RejectCode::UnknownKind,
            format!(
                "kind `{}` is not one of sensor, traffic_signal, camera_event, environment",
                envelope.kind
            ),
        ));
    };
    let raw = envelope.body.get();
    let body = match kind {
        Kind::Sensor => serde_json::from_str(raw).map(Body::Sensor),
        Kind::TrafficSignal => serde_json::from_str(raw).map(Body::TrafficSignal),
        Kind::CameraEvent => serde_json::from_str(raw).map(Body::CameraEvent),
        Kind::Environment => serde_json::from_str(raw).map(Body::Environment),
    }
    .map_err(|e| classify(&e, "body: "))?;
    let reading = Reading {
        message_id: envelope.message_id,
        device_id: envelope.device_id,
        event_time: envelope.event_time,
        body,
    };
    reading.validate(now_ms, limits)?;
    Ok(reading)
}

/// Maps a serde_json error to a rejection code by its class and message.
fn classify(e: &serde_json::Error, prefix: &str) -> Rejection {
    use serde_json::error::Category;
    let message = e.to_string();
    let code = match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => RejectCode::MalformedJson,
        Category::Data if message.starts_with("missing field") => RejectCode::MissingField,
        Category::Data if message.starts_with("unknown field") => RejectCode::UnknownField,
        Category::Data
            if message.starts_with("unknown variant")
                || message.starts_with("invalid value")
                || message.starts_with("event_time") =>
        {
            RejectCode::OutOfRange
        }
        Category::Data => RejectCode::WrongType,
    };
    Rejection::new(code, format!("{prefix}{message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_827_600_000;

    fn decode(text: &str) -> Result<Reading, Rejection> {
        decode_reading(text.as_bytes(), 65_536, NOW, &ValidationLimits::default())
    }

    const GOOD: &str = r#"{"message_id":"m1","device_id":"rain-cam_le-01","event_time":"2026-11-28T08:00:00+07:00","kind":"sensor","body":{"metric":"rainfall_mm","value":2.5,"unit":"mm"}}"#;

    #[test]
    fn decodes_a_valid_reading() {
        let r = decode(GOOD).unwrap();
        assert_eq!(r.event_time.0, NOW);
        assert_eq!(r.kind(), Kind::Sensor);
    }

    #[test]
    fn every_rejection_names_its_cause() {
        let cases: &[(&str, RejectCode, &str)] = &[
            (
                "{not json",
                RejectCode::MalformedJson,
                "key must be a string",
            ),
            (
                r#"{"device_id":"d","event_time":1,"kind":"sensor","body":{}}"#,
                RejectCode::MissingField,
                "missing field `message_id`",
            ),
            (
                &GOOD.replace("2.5", "\"2.5\""),
                RejectCode::WrongType,
                "body: invalid type: string \"2.5\", expected f64",
            ),
            (
                &GOOD.replace("\"kind\":\"sensor\"", "\"kind\":\"radar\""),
                RejectCode::UnknownKind,
                "kind `radar` is not one of",
            ),
            (
                &GOOD.replace("\"unit\"", "\"units\""),
                RejectCode::UnknownField,
                "body: unknown field `units`",
            ),
            (
                &GOOD.replace("2026-11-28T08:00:00+07:00", "2026-11-29T08:00:00+07:00"),
                RejectCode::FutureEventTime,
                "86400 s ahead",
            ),
            (
                &GOOD.replace("2026-11-28T08:00:00+07:00", "soon"),
                RejectCode::OutOfRange,
                "event_time `soon` is not RFC 3339",
            ),
            (
                &GOOD.replace("rainfall_mm", "Rainfall MM"),
                RejectCode::OutOfRange,
                "body.metric `Rainfall MM` must be",
            ),
        ];
        for (text, code, detail) in cases {
            let e = decode(text).unwrap_err();
            assert_eq!(e.code, *code, "{text}: {e}");
            assert!(e.detail.contains(detail), "{text}: {e}");
        }
        let e = decode_reading(&[0xff, 0xfe], 100, NOW, &ValidationLimits::default()).unwrap_err();
        assert_eq!(e.code, RejectCode::InvalidUtf8);
        let e = decode_reading(GOOD.as_bytes(), 10, NOW, &ValidationLimits::default()).unwrap_err();
        assert_eq!(e.code, RejectCode::PayloadTooLarge);
    }

    #[test]
    fn the_wire_format_round_trips_through_serde() {
        let r = decode(GOOD).unwrap();
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(decode(&text).unwrap(), r);
    }
}
