//! A silent source does not stall time: once it has been idle for the idle timeout, windows
//! close on the other sources' watermarks.

use std::sync::Arc;
use std::time::Duration;

use ioc_dataflow::{Collected, DataflowConfig, DataflowMetrics, ManualClock};
use ioc_schemas::{
    Body, District, EventTime, Ingested, IngestedReading, Reading, SensorBody, Transport,
    WindowSpec,
};

const BASE: u64 = 1_795_827_600_000;
const MINUTE: u64 = 60_000;

fn from_partition(partition: u32, device: &str, seq: u64, t: u64) -> Ingested {
    Ingested::Reading(
        IngestedReading {
            reading: Reading {
                message_id: format!("{device}-{seq}"),
                device_id: device.into(),
                event_time: EventTime(t),
                body: Body::Sensor(SensorBody {
                    metric: "rainfall_mm".into(),
                    value: 1.0,
                    unit: "mm".into(),
                }),
            },
            district: District::HoaVang,
            transport: Transport::Kafka,
            source: format!("ioc.sensor/{partition}@{seq}"),
            received_at_ms: t,
            payload: String::new(),
        },
        None,
    )
}

/// Returns the 1-minute windows emitted, as (device, start offset in minutes), with the
/// quiet partition silent for `silence_ms` of wall time before the busy one speaks.
fn run(silence_ms: u64) -> Vec<(String, u64)> {
    let config = DataflowConfig {
        workers: 2,
        allowed_lateness_ms: 10_000,
        idle_timeout_ms: 5_000,
        windows: vec![WindowSpec::MINUTE],
        ..DataflowConfig::default()
    };
    let clock = ManualClock::new(BASE);
    let out = Collected::default();
    let (tx, rx) = ioc_dataflow::Feed::new(ioc_dataflow::Topology::single(config.workers), 100);
    let handle = ioc_dataflow::spawn(
        config,
        ioc_dataflow::RunOptions::default(),
        rx,
        ioc_dataflow::RegistryFeed::fixed(Vec::new()),
        out.clone(),
        DataflowMetrics::new(&prometheus::Registry::new()).unwrap(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    // Partition 0 delivers one reading and falls silent.
    tx.blocking_send(from_partition(0, "gauge-quiet", 0, BASE + 1_000))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    clock.advance(silence_ms);
    // Partition 1 delivers ten minutes of readings.
    for m in 0..10 {
        tx.blocking_send(from_partition(
            1,
            "gauge-busy",
            m,
            BASE + m * MINUTE + 30_000,
        ))
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    drop(tx);
    handle.join().unwrap();
    // The 5-minute windows the KPIs need are always computed too; this test is about minutes.
    let mut got: Vec<(String, u64)> = out
        .emitted()
        .windows
        .iter()
        .filter(|w| w.is_final && w.window_size_ms == MINUTE)
        .map(|w| (w.device_id.clone(), (w.window_start_ms - BASE) / MINUTE))
        .collect();
    got.sort();
    got
}

#[test]
fn windows_close_while_a_partition_is_silent() {
    // Silent for 6 s, over the 5 s idle timeout: the busy partition's watermark (9:30 minus
    // 10 s) closes every minute before 9:00, the quiet device's included.
    let mut expected: Vec<(String, u64)> = (0..9).map(|m| ("gauge-busy".to_owned(), m)).collect();
    expected.push(("gauge-quiet".to_owned(), 0));
    expected.sort();
    assert_eq!(run(6_000), expected);
}

#[test]
fn a_source_that_is_merely_slow_still_holds_time() {
    // Silent for 1 s only: the quiet partition still counts, and its watermark (0:01 minus
    // 10 s) closes nothing.
    assert_eq!(run(1_000), Vec::<(String, u64)>::new());
}
