//! Property: whatever the arrival order, the windows the dataflow emits equal a brute-force
//! batch computation over the readings that were on time, and every late reading is reported
//! late.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use ioc_dataflow::{Collected, DataflowConfig, DataflowMetrics, ManualClock};
use ioc_schemas::{
    Body, District, EventTime, Ingested, IngestedReading, Reading, SensorBody, Transport,
    WindowResult, WindowSpec,
};
use proptest::prelude::*;

const BASE: u64 = 1_795_827_600_000; // 2026-11-28T01:00:00Z, a 5-minute boundary
const LATENESS: u64 = 20_000;

fn reading(device: &str, id: &str, t: u64, value: f64) -> Ingested {
    let r = Reading {
        message_id: id.to_owned(),
        device_id: device.to_owned(),
        event_time: EventTime(t),
        body: Body::Sensor(SensorBody {
            metric: "water_level_m".into(),
            value,
            unit: "m".into(),
        }),
    };
    Ingested::Reading(
        IngestedReading {
            reading: r,
            district: District::CamLe,
            transport: Transport::Mqtt,
            source: "test".into(),
            received_at_ms: t,
            payload: String::new(),
        },
        None,
    )
}

/// `(device, start, size)`
type WindowKey = (String, u64, u64);
/// `(count, sum, min, max)` of a window.
type Stats = (u64, f64, f64, f64);
/// One arrival: `(device, message id, event time, value)`.
type Arrival = (String, String, u64, f64);

fn run(workers: usize, arrivals: &[Arrival]) -> (Collected, Vec<WindowResult>) {
    let config = DataflowConfig {
        workers,
        epoch_ms: 1_000,
        allowed_lateness_ms: LATENESS,
        idle_timeout_ms: u64::MAX / 4,
        // Sliced in two widths: 1 minute (the first three) and 10 minutes (the last).
        windows: vec![
            WindowSpec::MINUTE,
            WindowSpec::FIVE_MINUTES,
            WindowSpec::sliding(300_000, 60_000),
            WindowSpec::sliding(900_000, 60_000),
            WindowSpec::sliding(1_800_000, 600_000),
        ],
        ..DataflowConfig::default()
    };
    let (tx, rx) = ioc_dataflow::Feed::new(
        ioc_dataflow::Topology::single(config.workers),
        arrivals.len() + 2,
    );
    for (device, id, t, v) in arrivals {
        tx.blocking_send(reading(device, id, *t, *v)).unwrap();
    }
    // Far ahead: closes every window of the readings above.
    tx.blocking_send(reading("closer", "closer-1", BASE + 86_400_000, 0.0))
        .unwrap();
    drop(tx);
    let out = Collected::default();
    let metrics = DataflowMetrics::new(&prometheus::Registry::new()).unwrap();
    let handle = ioc_dataflow::spawn(
        config,
        ioc_dataflow::RunOptions::default(),
        rx,
        ioc_dataflow::RegistryFeed::fixed(Vec::new()),
        out.clone(),
        metrics,
        Arc::new(ManualClock::new(BASE)),
    )
    .unwrap();
    handle.join().unwrap();
    for (r, late) in &out.emitted().raw {
        if let Some(watermark) = late {
            assert!(
                r.reading.event_time.0 < *watermark,
                "late behind its watermark"
            );
        }
    }
    let windows = out
        .emitted()
        .windows
        .iter()
        .filter(|w| w.device_id != "closer")
        .cloned()
        .collect();
    (out, windows)
}

fn oracle(arrivals: &[Arrival]) -> (BTreeMap<WindowKey, Stats>, HashSet<String>) {
    let mut seen = HashSet::new();
    let mut max_event: Option<u64> = None;
    let mut late = HashSet::new();
    let mut windows: BTreeMap<WindowKey, Stats> = BTreeMap::new();
    for (device, id, t, v) in arrivals {
        if !seen.insert((device.clone(), id.clone())) {
            continue;
        }
        let watermark = max_event.map_or(0, |m| m.saturating_sub(LATENESS));
        if *t < watermark {
            late.insert(id.clone());
            continue;
        }
        max_event = Some(max_event.map_or(*t, |m| m.max(*t)));
        // 1-minute windows, 5-minute windows starting every minute (which include the
        // tumbling 5-minute ones), 15-minute ones every minute, 30-minute ones every 10.
        for (size, slide) in [
            (60_000, 60_000),
            (300_000, 60_000),
            (900_000, 60_000),
            (1_800_000, 600_000),
        ] {
            let latest = t - t % slide;
            for start in (0..size / slide).filter_map(|k| latest.checked_sub(k * slide)) {
                let e = windows.entry((device.clone(), start, size)).or_insert((
                    0,
                    0.0,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                ));
                e.0 += 1;
                e.1 += v;
                e.2 = e.2.min(*v);
                e.3 = e.3.max(*v);
            }
        }
    }
    (windows, late)
}

fn arrivals_strategy() -> impl Strategy<Value = Vec<Arrival>> {
    // Readings over 15 minutes from 3 devices, with whole-number values so sums are exact,
    // then shuffled by a random per-reading delay of up to 60 s (beyond the lateness).
    prop::collection::vec(
        (0..3usize, 0..900_000u64, -50..50i32, 0..60_000u64, 0..10u8),
        1..120,
    )
    .prop_map(|raw| {
        let mut items: Vec<(u64, String, String, u64, f64)> = Vec::new();
        for (i, (dev, offset, value, delay, dup)) in raw.into_iter().enumerate() {
            let device = format!("gauge-{dev}");
            let id = format!("m{i}");
            let t = BASE + offset;
            items.push((t + delay, device.clone(), id.clone(), t, f64::from(value)));
            if dup == 0 {
                // A repeat of the same message, arriving a little later.
                items.push((t + delay + 1_000, device, id, t, f64::from(value)));
            }
        }
        items.sort_by_key(|(arrival, ..)| *arrival);
        items
            .into_iter()
            .map(|(_, d, id, t, v)| (d, id, t, v))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn windows_equal_a_batch_computation(arrivals in arrivals_strategy(), workers in 1..3usize) {
        let (out, windows) = run(workers, &arrivals);
        let (expected, expected_late) = oracle(&arrivals);

        // Every window ends with exactly one final result, after any provisional ones, each
        // version higher than the last.
        let mut got = BTreeMap::new();
        let mut last_version = BTreeMap::new();
        for w in &windows {
            let key = (w.device_id.clone(), w.window_start_ms, w.window_size_ms);
            prop_assert!(!got.contains_key(&key), "a result after the final one: {w:?}");
            if let Some(previous) = last_version.insert(key.clone(), w.version) {
                prop_assert!(w.version > previous, "version did not grow: {w:?}");
            }
            prop_assert_eq!(w.mean, w.sum / w.count as f64);
            if w.is_final {
                got.insert(key, (w.count, w.sum, w.min, w.max));
            }
        }
        prop_assert_eq!(got, expected);

        let reported_late: HashSet<String> = late_ids(&out).into_iter().collect();
        prop_assert_eq!(reported_late, expected_late);
    }
}

/// The message ids of the readings reported late.
fn late_ids(out: &Collected) -> Vec<String> {
    out.emitted()
        .raw
        .iter()
        .filter(|(_, late)| late.is_some())
        .map(|(r, _)| r.reading.message_id.clone())
        .collect()
}

#[test]
fn out_of_order_within_lateness_counts_and_late_is_reported() {
    let a = |id: &str, t: u64, v: f64| ("g".to_owned(), id.to_owned(), t, v);
    let arrivals = vec![
        a("1", BASE + 10_000, 1.0),
        a("2", BASE + 50_000, 2.0),
        a("3", BASE + 30_000, 3.0), // out of order, within lateness
        a("4", BASE + 70_000, 4.0),
        a("5", BASE + 45_000, 5.0), // 25 s behind the newest: late
        a("2", BASE + 50_000, 2.0), // duplicate
    ];
    let (out, windows) = run(2, &arrivals);
    let mut minute: Vec<_> = windows
        .iter()
        .filter(|w| w.window_size_ms == 60_000)
        .map(|w| (w.window_start_ms - BASE, w.count, w.sum))
        .collect();
    minute.sort_by_key(|m| m.0);
    assert_eq!(minute, vec![(0, 3, 6.0), (60_000, 1, 4.0)]);
    assert_eq!(late_ids(&out), ["5"]);
    assert_eq!(out.emitted().duplicates.len(), 1);
}
