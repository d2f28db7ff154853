//! Decoding and validating a payload into a [`Reading`], with a precise reason when it fails.
//! Shared by every transport.

use std::borrow::Cow;

use ioc_schemas::{
    parse_topic, Body, District, EventTime, Kind, Reading, RejectCode, Rejection, ValidationLimits,
};
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
        return Err(too_large(payload.len(), max_payload_bytes));
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
    let mut reading = Reading {
        message_id: envelope.message_id,
        device_id: envelope.device_id,
        event_time: envelope.event_time,
        body,
    };
    // Ranges apply to values in their canonical units.
    reading.convert_units()?;
    reading.validate(now_ms, limits)?;
    Ok(reading)
}

/// Decodes a payload stored when it arrived (and valid then) back into its reading, to be
/// replayed: only its shape is checked again, not the clock-relative limits, which it met
/// when it came.
pub fn decode_stored(payload: &str) -> Result<Reading, Rejection> {
    let limits = ValidationLimits {
        max_future_ms: u64::MAX / 4,
        min_event_time_ms: 0,
    };
    decode_reading(payload.as_bytes(), usize::MAX, 0, &limits)
}

/// What a decoder needs besides the bytes: the size limit, the receiver's clock and the
/// validation limits.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest accepted payload in bytes.
    pub max_payload_bytes: usize,
    /// The receiver's clock, epoch ms, for the future check.
    pub now_ms: u64,
    /// Ranges and the future horizon.
    pub validation: ValidationLimits,
}

impl DecodeLimits {
    fn reading(&self, payload: &[u8]) -> Result<Reading, Rejection> {
        decode_reading(
            payload,
            self.max_payload_bytes,
            self.now_ms,
            &self.validation,
        )
    }

    /// Judged first, so an oversized message is always `payload_too_large` (and kept only in
    /// part), whatever else is wrong with it.
    fn check_size(&self, payload: &[u8]) -> Result<(), Rejection> {
        if payload.len() > self.max_payload_bytes {
            return Err(too_large(payload.len(), self.max_payload_bytes));
        }
        Ok(())
    }
}

fn too_large(len: usize, max_payload_bytes: usize) -> Rejection {
    Rejection::new(
        RejectCode::PayloadTooLarge,
        format!("payload is {len} bytes, the limit is {max_payload_bytes}"),
    )
}

fn mismatch(detail: String) -> Rejection {
    Rejection::new(RejectCode::SourceMismatch, detail)
}

/// Decodes an MQTT message: the payload must be a reading of the kind and device its topic
/// (`ioc/v1/<kind>/<district>/<device_id>`) names; the district comes from the topic.
pub fn decode_mqtt(
    topic: &str,
    payload: &[u8],
    limits: &DecodeLimits,
) -> Result<(Reading, District), Rejection> {
    limits.check_size(payload)?;
    let parts = parse_topic(topic)?;
    let reading = limits.reading(payload)?;
    if reading.kind() != parts.kind || reading.device_id != parts.device_id {
        return Err(mismatch(format!(
            "payload is {} from device `{}` but the topic `{topic}` says {} from `{}`",
            reading.kind(),
            reading.device_id,
            parts.kind,
            parts.device_id
        )));
    }
    Ok((reading, parts.district))
}

/// The parts of a Kafka message a reading is judged by.
#[derive(Debug, Clone, Copy)]
pub struct KafkaParts<'a> {
    /// The topic it was read from.
    pub topic: &'a str,
    /// The kind that topic carries, if it is a reading topic.
    pub kind: Option<Kind>,
    /// The message key, which must be the device id when present.
    pub key: Option<&'a [u8]>,
    /// The value of the district header, if any.
    pub district_header: Option<&'a [u8]>,
    /// The value.
    pub payload: &'a [u8],
}

/// Decodes a Kafka message: the payload must be a reading of the kind its topic carries,
/// keyed (when keyed) by its device, with its district in the `district` header.
pub fn decode_kafka(
    message: KafkaParts<'_>,
    limits: &DecodeLimits,
) -> Result<(Reading, District), Rejection> {
    limits.check_size(message.payload)?;
    let topic = message.topic;
    let kind = message
        .kind
        .ok_or_else(|| mismatch(format!("topic `{topic}` is not a reading topic")))?;
    let reading = limits.reading(message.payload)?;
    if reading.kind() != kind {
        return Err(mismatch(format!(
            "payload is {} but topic `{topic}` carries {kind}",
            reading.kind()
        )));
    }
    if let Some(key) = message.key {
        if key != reading.device_id.as_bytes() {
            return Err(mismatch(format!(
                "message key `{}` is not the payload's device `{}`",
                shown(key),
                reading.device_id
            )));
        }
    }
    let header = crate::DISTRICT_HEADER;
    let raw = message.district_header.ok_or_else(|| {
        mismatch(format!(
            "the message has no `{header}` header naming the device's district"
        ))
    })?;
    let district = std::str::from_utf8(raw)
        .ok()
        .and_then(District::from_slug)
        .ok_or_else(|| {
            mismatch(format!(
                "header `{header}` names the unknown district `{}`",
                shown(raw)
            ))
        })?;
    Ok((reading, district))
}

/// How much of a value a rejection's detail quotes: enough to recognise it, never a copy of
/// a large key or header (those are outside the payload limit).
const SHOWN_BYTES: usize = 128;
/// The longest detail kept from a serde_json error, which may quote a whole string value.
const MAX_DETAIL_BYTES: usize = 1024;

/// The first [`SHOWN_BYTES`] of `bytes` as text, marked when cut.
fn shown(bytes: &[u8]) -> String {
    if bytes.len() <= SHOWN_BYTES {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    format!(
        "{}… ({} bytes)",
        String::from_utf8_lossy(&bytes[..SHOWN_BYTES]),
        bytes.len()
    )
}

/// `text` cut to at most `max` bytes at a character boundary, marked when cut.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("… (cut)");
    }
    text
}

/// Maps a serde_json error to a rejection code by its class and message.
fn classify(e: &serde_json::Error, prefix: &str) -> Rejection {
    use serde_json::error::Category;
    let message = cut(e.to_string(), MAX_DETAIL_BYTES);
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
    fn co_in_mg_per_cubic_metre_is_received_in_micrograms() {
        let payload = format!(
            r#"{{"message_id":"m1","device_id":"aq-1","event_time":{NOW},"kind":"environment",
            "body":{{"station_id":"aq-1","medium":"air","measurements":{{"co":4.2,"pm25":30}},
            "units":{{"co":"mg/m3"}}}}}}"#
        );
        let r = decode(&payload).unwrap();
        let Body::Environment(b) = &r.body else {
            panic!("environment")
        };
        assert_eq!((b.measurements["co"], b.units.len()), (4200.0, 0));
        let refused = payload.replace("mg/m3", "ppm");
        let e = decode(&refused).unwrap_err();
        assert_eq!(e.code, RejectCode::OutOfRange);
        assert!(
            e.detail.contains("unit `ppm` is not accepted for `co`"),
            "{}",
            e.detail
        );
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

    const LIMITS: DecodeLimits = DecodeLimits {
        max_payload_bytes: 65_536,
        now_ms: NOW,
        validation: ValidationLimits {
            max_future_ms: 300_000,
            min_event_time_ms: 0,
        },
    };

    #[test]
    fn mqtt_messages_are_judged_by_size_then_topic_then_payload() {
        let topic = "ioc/v1/sensor/cam_le/rain-cam_le-01";
        let (reading, district) = decode_mqtt(topic, GOOD.as_bytes(), &LIMITS).unwrap();
        assert_eq!(
            (reading.device_id.as_str(), district),
            ("rain-cam_le-01", District::CamLe)
        );
        let big = vec![b' '; 70_000];
        for t in [topic, "not/a/reading/topic"] {
            let e = decode_mqtt(t, &big, &LIMITS).unwrap_err();
            assert_eq!(e.code, RejectCode::PayloadTooLarge, "{t}");
            assert_eq!(e.detail, "payload is 70000 bytes, the limit is 65536");
        }
        let e = decode_mqtt("ioc/v1/sensor/cam_le/other", GOOD.as_bytes(), &LIMITS).unwrap_err();
        assert_eq!(e.code, RejectCode::SourceMismatch);
        assert!(e.detail.contains("says sensor from `other`"), "{e}");
        let e = decode_mqtt("ioc/v2/x", b"{", &LIMITS).unwrap_err();
        assert_eq!(e.code, RejectCode::SourceMismatch);
    }

    #[test]
    fn kafka_messages_need_their_topic_key_and_district_header_to_agree() {
        let good = KafkaParts {
            topic: "ioc.sensor",
            kind: Some(Kind::Sensor),
            key: Some(b"rain-cam_le-01"),
            district_header: Some(b"cam_le"),
            payload: GOOD.as_bytes(),
        };
        assert_eq!(decode_kafka(good, &LIMITS).unwrap().1, District::CamLe);
        let cases = [
            (KafkaParts { kind: None, ..good }, "is not a reading topic"),
            (
                KafkaParts {
                    kind: Some(Kind::Environment),
                    ..good
                },
                "carries environment",
            ),
            (
                KafkaParts {
                    key: Some(b"other"),
                    ..good
                },
                "message key `other`",
            ),
            (
                KafkaParts {
                    district_header: None,
                    ..good
                },
                "no `district` header",
            ),
            (
                KafkaParts {
                    district_header: Some(b"hanoi"),
                    ..good
                },
                "unknown district `hanoi`",
            ),
        ];
        for (parts, detail) in cases {
            let e = decode_kafka(parts, &LIMITS).unwrap_err();
            assert_eq!(e.code, RejectCode::SourceMismatch);
            assert!(e.detail.contains(detail), "{e}");
        }
        assert!(decode_kafka(KafkaParts { key: None, ..good }, &LIMITS).is_ok());
    }

    #[test]
    fn details_quote_at_most_the_head_of_a_large_value() {
        let body = format!(
            r#"{{"metric":"rainfall_mm","value":"{}","unit":"mm"}}"#,
            "\u{85}".repeat(10_000)
        );
        let text = GOOD.replace(r#"{"metric":"rainfall_mm","value":2.5,"unit":"mm"}"#, &body);
        let e = decode(&text).unwrap_err();
        assert_eq!(e.code, RejectCode::WrongType);
        assert!(
            e.detail.len() <= MAX_DETAIL_BYTES + 16 && e.detail.ends_with("… (cut)"),
            "{}",
            e.detail.len()
        );
        let key = vec![0xff; 70_000];
        let parts = KafkaParts {
            topic: "ioc.sensor",
            kind: Some(Kind::Sensor),
            key: Some(&key),
            district_header: Some(&key),
            payload: GOOD.as_bytes(),
        };
        let e = decode_kafka(parts, &LIMITS).unwrap_err();
        assert!(
            e.detail.len() < 600 && e.detail.contains("(70000 bytes)"),
            "{}",
            e.detail
        );
        let e = decode_kafka(KafkaParts { key: None, ..parts }, &LIMITS).unwrap_err();
        assert!(
            e.detail.len() < 600 && e.detail.contains("(70000 bytes)"),
            "{}",
            e.detail
        );
    }

    #[test]
    fn a_stored_payload_is_judged_by_its_shape_not_the_clock() {
        // Far ahead of `NOW`, which the live decoder refuses; stored, it was valid then.
        let ahead = GOOD.replace("2026-11-28T08:00:00+07:00", "2027-11-28T08:00:00+07:00");
        assert_eq!(
            decode(&ahead).unwrap_err().code,
            RejectCode::FutureEventTime
        );
        assert_eq!(decode_stored(&ahead).unwrap().device_id, "rain-cam_le-01");
        let e = decode_stored("{not json").unwrap_err();
        assert_eq!(e.code, RejectCode::MalformedJson);
    }

    #[test]
    fn the_wire_format_round_trips_through_serde() {
        let r = decode(GOOD).unwrap();
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(decode(&text).unwrap(), r);
    }
}
