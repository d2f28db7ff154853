//! After a restart, the stored windows from before the replay restore the KPI state with long
//! horizons: the first hourly AQI equals an uninterrupted run's, and no KPI row of the history
//! is emitted again.

use std::sync::Arc;

use ioc_dataflow::{
    Collected, DataflowConfig, DataflowMetrics, ManualClock, RegistryFeed, RunOptions,
};
use ioc_schemas::{
    AqiPeriod, Body, District, EnvironmentBody, EventTime, Ingested, IngestedReading, Kind, Kpi,
    Medium, Reading, Transport, WindowResult,
};

/// 2026-11-28 00:00 UTC.
const T0: u64 = 1_795_824_000_000;
const HOUR: u64 = 3_600_000;
const FIVE_MINUTES: u64 = 300_000;

/// A stored final 5-minute PM2.5 window of the station.
fn stored(end: u64, pm25: f64) -> WindowResult {
    WindowResult {
        kind: Kind::Environment,
        district: District::CamLe,
        device_id: "aq-1".into(),
        metric: "pm25".into(),
        window_start_ms: end - FIVE_MINUTES,
        window_size_ms: FIVE_MINUTES,
        count: 1,
        sum: pm25,
        min: pm25,
        max: pm25,
        mean: pm25,
        emitted_at_ms: end,
        version: 3,
        is_final: true,
    }
}

fn reading(t: u64, pm25: f64) -> Ingested {
    Ingested::Replayed(IngestedReading {
        reading: Reading {
            message_id: format!("aq-1-{t}"),
            device_id: "aq-1".into(),
            event_time: EventTime(t),
            body: Body::Environment(EnvironmentBody {
                units: Default::default(),
                station_id: "aq-1".into(),
                medium: Medium::Air,
                measurements: [("pm25".to_owned(), pm25)].into(),
            }),
        },
        district: District::CamLe,
        transport: Transport::Mqtt,
        source: "ioc/v1/environment/cam_le/aq-1".into(),
        received_at_ms: t,
        payload: String::new(),
    })
}

#[test]
fn stored_windows_restore_the_nowcast_after_a_restart() {
    // Hours 0 and 1 (PM2.5 40 then 100 µg/m³) ran before the stop and are stored; the
    // restarted run replays hour 2 (100 µg/m³) from its start.
    let restart = T0 + 2 * HOUR;
    let history: Vec<WindowResult> = (1..=24u64)
        .map(|i| stored(T0 + i * FIVE_MINUTES, if i <= 12 { 40.0 } else { 100.0 }))
        .collect();
    let out = Collected::default();
    let (tx, rx) = ioc_dataflow::Feed::new(ioc_dataflow::Topology::single(2), 100);
    let handle = ioc_dataflow::spawn(
        DataflowConfig::default(),
        RunOptions {
            emit_windows_from_ms: restart,
            finish_open_windows: true,
            kpi_history: history,
            ..RunOptions::default()
        },
        rx,
        RegistryFeed::fixed(Vec::new()),
        out.clone(),
        DataflowMetrics::new(&prometheus::Registry::new()).unwrap(),
        Arc::new(ManualClock::new(restart)),
    )
    .unwrap();
    for i in 0..12u64 {
        tx.blocking_send(reading(restart + i * FIVE_MINUTES + 1_000, 100.0))
            .unwrap();
    }
    drop(tx);
    handle.join().unwrap();

    let kpis = std::mem::take(&mut out.emitted().kpis);
    let hourly: Vec<_> = kpis
        .iter()
        .filter_map(|k| match k {
            Kpi::Air(a) if a.period == AqiPeriod::Hour => Some(a.clone()),
            _ => None,
        })
        .collect();
    // Only hour 2 comes out (hours 0 and 1 were emitted by the run before the stop), and its
    // NowCast spans all three hours: w* = 40/100 → ½; (100 + 50 + 10) / 1.75 = 91.4 µg/m³.
    assert_eq!(hourly.len(), 1, "{hourly:?}");
    let h2 = &hourly[0];
    assert_eq!(h2.window_start_ms, restart);
    assert!((h2.pm25.unwrap() - 160.0 / 1.75).abs() < 1e-9, "{h2:?}");
    assert_eq!(h2.coverage, 12);
    assert!(
        kpis.iter().all(|k| k.window_start_ms() >= restart),
        "history re-emitted: {kpis:?}"
    );
}
