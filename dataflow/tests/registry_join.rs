//! Registry changes reach the running dataflow: readings after a change are joined with the
//! new entry, readings before it keep the old one, unknown devices are reported and still
//! windowed, and health covers the registered devices.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ioc_dataflow::{
    Collected, DataflowConfig, DataflowMetrics, ManualClock, RegistryFeed, RunOptions,
};
use ioc_schemas::{
    Body, Department, Device, DeviceChange, District, EventTime, Ingested, IngestedReading, Kind,
    Kpi, Reading, Scope, SensorBody, Transport, WindowSpec,
};
use tokio::sync::mpsc;

/// 2026-11-28 00:00 UTC.
const T0: u64 = 1_795_824_000_000;

fn gauge(id: &str, district: District) -> Device {
    Device {
        id: id.into(),
        kind: Kind::Sensor,
        name: format!("Trạm đo mưa {id}"),
        district,
        lat: 16.0,
        lon: 108.2,
        department: Department::DisasterPrevention,
        expected_interval_s: 60,
        free_flow_kmh: None,
        water_class: None,
        flood_alarm_m: None,
    }
}

fn reading(device: &str, seq: u64, t: u64) -> Ingested {
    Ingested::Reading(
        IngestedReading {
            reading: Reading {
                message_id: format!("{device}-{seq}"),
                device_id: device.into(),
                event_time: EventTime(t),
                body: Body::Sensor(SensorBody {
                    metric: "rainfall_mm".into(),
                    value: 2.0,
                    unit: "mm".into(),
                }),
            },
            // The topic says Hòa Vang; the registry may say otherwise.
            district: District::HoaVang,
            transport: Transport::Mqtt,
            source: format!("ioc/v1/sensor/hoa_vang/{device}"),
            received_at_ms: t,
            payload: String::new(),
        },
        None,
    )
}

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn registry_changes_apply_to_the_readings_that_follow() {
    let config = DataflowConfig {
        workers: 2,
        allowed_lateness_ms: 5_000,
        windows: vec![WindowSpec::MINUTE, WindowSpec::FIVE_MINUTES],
        ..DataflowConfig::default()
    };
    let out = Collected::default();
    let registry = prometheus::Registry::new();
    let metrics = DataflowMetrics::new(&registry).unwrap();
    let (tx, rx) = ioc_dataflow::Feed::new(ioc_dataflow::Topology::single(config.workers), 100);
    let (changes_tx, changes_rx) = mpsc::channel(10);
    let handle = ioc_dataflow::spawn(
        config,
        RunOptions {
            finish_open_windows: true,
            reading_rules: true,
            ..RunOptions::default()
        },
        rx,
        RegistryFeed::live(
            vec![
                gauge("rg-1", District::HaiChau),
                gauge("rg-silent", District::LienChieu),
            ],
            changes_rx,
        ),
        out.clone(),
        metrics.clone(),
        Arc::new(ManualClock::new(T0)),
    )
    .unwrap();

    // Minute 0: the registered gauge (Hải Châu in the registry) and a stranger.
    tx.blocking_send(reading("rg-1", 0, T0 + 1_000)).unwrap();
    tx.blocking_send(reading("stranger", 0, T0 + 2_000))
        .unwrap();
    wait_for("the stranger to be reported", || {
        !out.emitted().unknown.is_empty()
    });

    // The gauge moves to Cẩm Lệ and the stranger is registered in Sơn Trà.
    changes_tx
        .blocking_send(DeviceChange::Upsert(gauge("rg-1", District::CamLe)))
        .unwrap();
    changes_tx
        .blocking_send(DeviceChange::Upsert(gauge("stranger", District::SonTra)))
        .unwrap();
    wait_for("the changes to apply", || {
        metrics
            .registry_changes
            .with_label_values(&["upsert"])
            .get()
            == 2
    });

    // Minute 2: both again; then time moves past the first 5-minute window.
    tx.blocking_send(reading("rg-1", 1, T0 + 150_000)).unwrap();
    tx.blocking_send(reading("stranger", 1, T0 + 151_000))
        .unwrap();
    tx.blocking_send(reading("rg-1", 2, T0 + 400_000)).unwrap();
    drop(tx);
    handle.join().unwrap();

    let emitted = out.emitted();
    let district_of = |device: &str, start: u64| {
        emitted
            .windows
            .iter()
            .find(|w| {
                w.is_final
                    && w.device_id == device
                    && w.window_start_ms == start
                    && w.window_size_ms == 60_000
            })
            .map(|w| w.district)
    };
    assert_eq!(district_of("rg-1", T0), Some(District::HaiChau));
    assert_eq!(district_of("rg-1", T0 + 120_000), Some(District::CamLe));
    // Unknown, the stranger is windowed under its topic's district; registered, under its own.
    assert_eq!(district_of("stranger", T0), Some(District::HoaVang));
    assert_eq!(
        district_of("stranger", T0 + 120_000),
        Some(District::SonTra)
    );
    let unknown: Vec<(&str, District)> = emitted
        .unknown
        .iter()
        .map(|(id, _, district, _)| (id.as_str(), *district))
        .collect();
    assert_eq!(unknown, [("stranger", District::HoaVang)]);
    // Every reading goes out once for the rules on readings, registered or not.
    let mut for_rules = emitted.observed.clone();
    for_rules.sort();
    assert_eq!(for_rules, ["rg-1", "rg-1", "rg-1", "stranger", "stranger"]);
    assert_eq!(
        metrics
            .unknown_device_readings
            .with_label_values(&["sensor"])
            .get(),
        1
    );

    // Health of the first 5-minute window: every registered device, the silent one never seen.
    let kpis = &emitted.kpis;
    let health = |id: &str| {
        kpis.iter().find_map(|k| match k {
            Kpi::Health(h) if h.entity_id == id && h.window_start_ms == T0 => Some(h.clone()),
            _ => None,
        })
    };
    let rg1 = health("rg-1").expect("health of rg-1");
    assert_eq!(rg1.readings, 2);
    assert_eq!(rg1.district, Some(District::CamLe));
    assert_eq!(health("rg-silent").unwrap().offline, 1);
    // Registered during the window, the stranger has both its readings counted.
    assert_eq!(health("stranger").unwrap().readings, 2);
    let city = kpis
        .iter()
        .find_map(|k| match k {
            Kpi::Health(h) if h.scope == Scope::City && h.window_start_ms == T0 => Some(h.clone()),
            _ => None,
        })
        .expect("city health");
    assert_eq!((city.devices, city.online, city.offline), (3, 2, 1));
    // Rain: two readings of 2 mm in rg-1's first window.
    let rain = kpis
        .iter()
        .find_map(|k| match k {
            Kpi::Hydrology(h) if h.gauge_id == "rg-1" && h.window_start_ms == T0 => Some(h.clone()),
            _ => None,
        })
        .expect("rain of rg-1");
    assert_eq!(rain.rain_mm, Some(4.0));
    assert_eq!(rain.rain_1h_mm, Some(4.0));
}
