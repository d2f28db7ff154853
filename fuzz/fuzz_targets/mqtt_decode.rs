//! Fuzzes `ioc_ingest::decode_mqtt`, the decoder of the MQTT transport.
//!
//! Input format: the topic's bytes, one 0x00 byte, then the payload's bytes:
//!
//! ```text
//! ioc/v1/sensor/cam_le/rain-cam_le-01 \0 {"message_id":"m1",...}
//! ```
//!
//! Without a 0x00 the whole input is the topic and the payload is empty. A topic that is not
//! UTF-8 is decoded lossily (MQTT topics are UTF-8 on the wire). The payload may hold any
//! bytes, 0x00 included. Decoded with a 65,536-byte payload limit and the clock fixed at
//! 2026-11-28T08:00:00+07:00; `ioc-fuzz/src/lib.rs` lists the checks.

#![no_main]

use ioc_fuzz::{alloc_bound, check, limits, measure, Outcome};
use ioc_ingest::decode_mqtt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (topic, payload) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let topic = String::from_utf8_lossy(topic);
    let limits = limits();
    let bound = alloc_bound(payload.len(), topic.len());
    let (result, allocations) = measure(bound, || decode_mqtt(&topic, payload, &limits));
    let outcome = Outcome {
        result: &result,
        payload_len: payload.len(),
        side_len: topic.len(),
        allocations,
    };
    check(outcome, |json| decode_mqtt(&topic, json, &limits));
});
