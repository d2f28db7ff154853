//! Fuzzes `ioc_ingest::decode_kafka`, the decoder of the Kafka transport.
//!
//! Input format: one flags byte, then the key and the district header if the flags say they
//! are present, each ended by a 0x00 byte, then the payload's bytes:
//!
//! ```text
//! flags [key \0] [district-header \0] payload
//! ```
//!
//! Flags:
//! - bits 0–2, the topic: 0 to 6 read from the reading topic of `Kind::ALL[n % 4]`
//!   (`ioc.sensor`, `ioc.traffic_signal`, `ioc.camera_event`, `ioc.environment`); 7 read from
//!   `ioc.dead_letters`, which is not a reading topic;
//! - bit 3 (0x08): a key is present;
//! - bit 4 (0x10): a `district` header is present;
//! - bits 5–7: ignored.
//!
//! So `0x18` + `rain-cam_le-01\0cam_le\0{...}` is a sensor reading keyed by its device with
//! its district header. A key or header without its ending 0x00 takes the rest of the input
//! (the payload is then empty); neither can hold 0x00 itself. An empty input is skipped.
//! Decoded with a 65,536-byte payload limit and the clock fixed at 2026-11-28T08:00:00+07:00;
//! `ioc-fuzz/src/lib.rs` lists the checks.

#![no_main]

use ioc_fuzz::{alloc_bound, check, limits, measure, Outcome};
use ioc_ingest::{decode_kafka, KafkaParts};
use ioc_schemas::Kind;
use libfuzzer_sys::fuzz_target;

const KEY: u8 = 0x08;
const HEADER: u8 = 0x10;

/// The bytes up to the next 0x00 and the rest after it (all of it, and nothing, without one).
fn field(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let (topic, kind) = match flags & 0x07 {
        7 => ("ioc.dead_letters", None),
        n => {
            let kind = Kind::ALL[usize::from(n % 4)];
            let topic = match kind {
                Kind::Sensor => "ioc.sensor",
                Kind::TrafficSignal => "ioc.traffic_signal",
                Kind::CameraEvent => "ioc.camera_event",
                Kind::Environment => "ioc.environment",
            };
            (topic, Some(kind))
        }
    };
    let mut key = None;
    if flags & KEY != 0 {
        let (k, r) = field(rest);
        (key, rest) = (Some(k), r);
    }
    let mut district_header = None;
    if flags & HEADER != 0 {
        let (h, r) = field(rest);
        (district_header, rest) = (Some(h), r);
    }
    let parts = KafkaParts {
        topic,
        kind,
        key,
        district_header,
        payload: rest,
    };
    let side_len =
        topic.len() + key.map_or(0, <[u8]>::len) + district_header.map_or(0, <[u8]>::len);
    let limits = limits();
    let bound = alloc_bound(parts.payload.len(), side_len);
    let (result, allocations) = measure(bound, || decode_kafka(parts, &limits));
    let outcome = Outcome {
        result: &result,
        payload_len: parts.payload.len(),
        side_len,
        allocations,
    };
    check(outcome, |json| {
        decode_kafka(
            KafkaParts {
                payload: json,
                ..parts
            },
            &limits,
        )
    });
});
