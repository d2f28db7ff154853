//! Against the real ClickHouse on 127.0.0.1:8123 (`.ci/servers.sh start`). Every test uses
//! its own database and drops it at the end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use ioc_schemas::{
    Ack, Approach, Body, CameraEventBody, CameraEventType, ControlMode, DeadLetter, District,
    EnvironmentBody, EventTime, IngestedReading, Medium, Reading, RejectCode, Rejection,
    SensorBody, SignalState, TrafficSignalBody, Transport, WindowResult,
};
use ioc_store::{
    is_retryable_clickhouse, migrate, ClickHouseConfig, DeadLetterRow, ReadingRow, Store,
    StoreError, StoreMetrics, WindowRow,
};
use prometheus::Registry;
use serde::Deserialize;

const T0: u64 = 1_795_827_600_250; // 2026-11-28T01:00:00.250Z

static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// A config for a database no other test uses, with quick batches and retries.
fn test_config(test: &str) -> ClickHouseConfig {
    let n = NEXT_DB.fetch_add(1, Ordering::Relaxed);
    ClickHouseConfig {
        database: format!("ioc_test_store_{}_{n}_{test}", std::process::id()),
        batch_max_wait_ms: 50,
        retry_initial_ms: 20,
        retry_max_ms: 200,
        ..ClickHouseConfig::default()
    }
}

async fn drop_database(cfg: &ClickHouseConfig) -> Result<()> {
    clickhouse::Client::default()
        .with_url(cfg.url.clone())
        .with_validation(false)
        .query(&format!("DROP DATABASE IF EXISTS {}", cfg.database))
        .execute()
        .await?;
    Ok(())
}

fn metric(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    use prometheus::proto::MetricType;
    let mut total = 0.0;
    for family in registry.gather().iter().filter(|f| f.name() == name) {
        for m in family.get_metric() {
            let matches = labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            });
            if !matches {
                continue;
            }
            total += match family.get_field_type() {
                MetricType::COUNTER => m.get_counter().get_value(),
                MetricType::GAUGE => m.get_gauge().get_value(),
                // Histograms: how many observations.
                _ => m.get_histogram().get_sample_count() as f64,
            };
        }
    }
    total
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !done() {
        ensure!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

fn ingested(
    message_id: &str,
    device_id: &str,
    district: District,
    body: Body,
    event_ms: u64,
) -> IngestedReading {
    let reading = Reading {
        message_id: message_id.into(),
        device_id: device_id.into(),
        event_time: EventTime(event_ms),
        body,
    };
    let payload = serde_json::to_string(&reading).expect("a reading serialises");
    IngestedReading {
        source: format!(
            "ioc/v1/{}/{}/{device_id}",
            reading.kind().as_str(),
            district.slug()
        ),
        reading,
        district,
        transport: Transport::Mqtt,
        received_at_ms: event_ms + 120,
        payload,
    }
}

fn one_of_each_kind() -> Vec<IngestedReading> {
    let mut measurements = BTreeMap::new();
    measurements.insert("pm25".to_owned(), 31.5);
    measurements.insert("no2".to_owned(), 12.0);
    let mut camera = ingested(
        "m-cam",
        "cam-son_tra-7",
        District::SonTra,
        Body::CameraEvent(CameraEventBody {
            camera_id: "cam-son_tra-7".into(),
            event_type: CameraEventType::RedLightViolation,
            confidence: 0.93,
            plate: Some("43A-123.45".into()),
            lane: Some(2),
            count: None,
            media_url: None,
        }),
        T0 + 2,
    );
    camera.transport = Transport::Kafka;
    camera.source = "ioc.readings/3".into();
    let mut sensor = ingested(
        "m-sensor",
        "rain-hai_chau-1",
        District::HaiChau,
        Body::Sensor(SensorBody {
            metric: "temperature_c".into(),
            value: 29.5,
            unit: "°C".into(),
        }),
        T0,
    );
    // The payload is stored exactly as received, Vietnamese and all.
    sensor.payload =
        r#"{"message_id":"m-sensor","note":"Cầu Rồng, quận Sơn Trà — Đà Nẵng","unit":"°C"}"#
            .to_owned();
    vec![
        sensor,
        ingested(
            "m-traffic",
            "tl-thanh_khe-3",
            District::ThanhKhe,
            Body::TrafficSignal(TrafficSignalBody {
                junction_id: "thanh_khe-3".into(),
                state: SignalState::Green,
                mode: ControlMode::Adaptive,
                fault_code: None,
                approaches: vec![Approach {
                    approach: "north".into(),
                    vehicles: 12,
                    occupancy_pct: 20.0,
                    mean_speed_kmh: 31.0,
                    queue_length_m: 15.0,
                }],
            }),
            T0 + 1,
        ),
        camera,
        ingested(
            "m-env",
            "aq-hoa_vang-1",
            District::HoaVang,
            Body::Environment(EnvironmentBody {
                units: Default::default(),
                station_id: "aq-hoa_vang-1".into(),
                medium: Medium::Air,
                measurements,
            }),
            T0 + 3,
        ),
    ]
}

fn window(device_id: &str, emitted_at_ms: u64) -> WindowResult {
    WindowResult {
        kind: ioc_schemas::Kind::TrafficSignal,
        district: District::NguHanhSon,
        device_id: device_id.into(),
        metric: "vehicles".into(),
        window_start_ms: 1_795_827_600_000,
        window_size_ms: 60_000,
        count: 4,
        sum: 50.0,
        min: 8.0,
        max: 17.5,
        mean: 12.5,
        emitted_at_ms,
        version: 3,
        is_final: true,
    }
}

/// An ack that records its index.
fn recording_ack(log: &Arc<Mutex<Vec<usize>>>, i: usize) -> Ack {
    let log = Arc::clone(log);
    Ack::new(move || log.lock().expect("ack log").push(i))
}

#[derive(Debug, PartialEq, clickhouse::Row, Deserialize)]
struct EnumNames {
    kind: String,
    district: String,
    transport: String,
    event_time_s: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_create_the_tables_and_are_idempotent() -> Result<()> {
    let cfg = test_config("migrate");
    let first = migrate(&cfg).await?;
    assert_eq!(first.applied, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert!(first.already_applied.is_empty());

    let client = cfg.client();
    let tables: Vec<(String, String)> = client
        .query("SELECT name, engine FROM system.tables WHERE database = ? ORDER BY name")
        .bind(cfg.database.as_str())
        .fetch_all()
        .await?;
    let expected = [
        ("alert_events", "ReplacingMergeTree"),
        ("dead_letters", "MergeTree"),
        ("devices", "ReplacingMergeTree"),
        ("devices_now", "View"),
        ("final_windows", "View"),
        ("kpi_aqi", "ReplacingMergeTree"),
        ("kpi_bridge", "ReplacingMergeTree"),
        ("kpi_camera", "ReplacingMergeTree"),
        ("kpi_health", "ReplacingMergeTree"),
        ("kpi_hydrology", "ReplacingMergeTree"),
        ("kpi_traffic", "ReplacingMergeTree"),
        ("kpi_water", "ReplacingMergeTree"),
        ("late_readings", "ReplacingMergeTree"),
        ("latest_kpi_aqi", "View"),
        ("latest_kpi_bridge", "View"),
        ("latest_kpi_camera", "View"),
        ("latest_kpi_health", "View"),
        ("latest_kpi_hydrology", "View"),
        ("latest_kpi_traffic", "View"),
        ("latest_kpi_water", "View"),
        ("open_alerts", "View"),
        ("readings", "ReplacingMergeTree"),
        ("readings_named", "View"),
        ("schema_migrations", "MergeTree"),
        ("webhook_attempts", "MergeTree"),
        ("window_results", "ReplacingMergeTree"),
    ];
    let tables: Vec<(&str, &str)> = tables
        .iter()
        .map(|(n, e)| (n.as_str(), e.as_str()))
        .collect();
    assert_eq!(tables, expected);

    let second = migrate(&cfg).await?;
    assert!(second.applied.is_empty(), "{second:?}");
    assert_eq!(
        second.already_applied,
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    );
    let recorded: u64 = client
        .query("SELECT count() FROM schema_migrations")
        .fetch_one()
        .await?;
    assert_eq!(
        recorded, 12,
        "one row per migration, none added by the second run"
    );
    // Migration 12 made the newest-row views again, so they show the column it added.
    let shown: u64 = client
        .query(
            "SELECT count() FROM system.columns WHERE database = ? AND name = 'covered_ms' \
             AND table IN ('latest_kpi_traffic', 'latest_kpi_camera')",
        )
        .bind(cfg.database.as_str())
        .fetch_one()
        .await?;
    assert_eq!(
        shown, 2,
        "latest_kpi_traffic and latest_kpi_camera show covered_ms"
    );

    let bad = ClickHouseConfig {
        database: "ioc; DROP DATABASE ioc".into(),
        ..cfg.clone()
    };
    let e = migrate(&bad)
        .await
        .expect_err("an injected name is refused");
    assert!(matches!(e, StoreError::InvalidDatabaseName(_)), "{e}");
    assert!(!e.is_retryable());

    drop_database(&cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_every_table_round_trip() -> Result<()> {
    let cfg = test_config("round_trip");
    let registry = Registry::new();
    let store = Store::connect(cfg.clone(), StoreMetrics::new(&registry)?).await?;
    assert_eq!(
        store.migration_report().map(|r| r.applied.clone()),
        Some(vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
    );
    let (writers, tasks) = store.writers();

    let readings = one_of_each_kind();
    let mut expected_readings = Vec::new();
    for (i, r) in readings.iter().enumerate() {
        let row = ReadingRow::new(r, i == 2);
        expected_readings.push(row.clone());
        writers.readings.send(row, None).await?;
    }
    let w = WindowRow::from(&window("tl-ngu_hanh_son-1", T0 + 60_000));
    writers.windows.send(w.clone(), None).await?;

    let letters = [
        DeadLetter::new(
            T0,
            Transport::Mqtt,
            "ioc/v1/sensor/hai_chau/x".into(),
            &[0xff, 0xfe, b'{', 0x00, 0xc3, b'"'],
            Rejection::new(RejectCode::InvalidUtf8, "byte 0 is not valid utf-8"),
        ),
        DeadLetter::new(
            T0 + 1,
            Transport::Kafka,
            "ioc.readings/0".into(),
            "{\"ghi_chú\": \"Ngũ Hành Sơn\"".repeat(100).as_bytes(),
            Rejection::new(RejectCode::PayloadTooLarge, "payload is 2 MiB"),
        ),
    ];
    let expected_letters: Vec<DeadLetterRow> = letters.iter().map(DeadLetterRow::from).collect();
    // Dead letters go through the blocking API, as from a non-async thread.
    let dl = writers.dead_letters.clone();
    let rows = expected_letters.clone();
    tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        for row in rows {
            dl.blocking_send(row, None)?;
        }
        Ok(())
    })
    .await??;

    // Closing the writers flushes what they hold.
    drop(writers);
    tasks.join().await?;

    let client = store.client();
    let mut got: Vec<ReadingRow> = client
        .query("SELECT ?fields FROM readings FINAL ORDER BY message_id")
        .fetch_all()
        .await?;
    expected_readings.sort_by(|a, b| a.message_id.cmp(&b.message_id));
    got.sort_by(|a, b| a.message_id.cmp(&b.message_id));
    assert_eq!(got, expected_readings);
    let sensor = got
        .iter()
        .find(|r| r.message_id == "m-sensor")
        .context("sensor row")?;
    assert!(sensor.payload.contains("Cầu Rồng, quận Sơn Trà — Đà Nẵng"));

    // The Enum8 numbers name the right values on the server side.
    let names: Vec<EnumNames> = client
        .query(
            "SELECT toString(kind), toString(district), toString(transport), \
             toUInt32(toUnixTimestamp(event_time)) FROM readings ORDER BY event_time_ms",
        )
        .fetch_all()
        .await?;
    let expected_names: Vec<EnumNames> = readings
        .iter()
        .map(|r| EnumNames {
            kind: r.reading.kind().as_str().to_owned(),
            district: r.district.slug().to_owned(),
            transport: r.transport.as_str().to_owned(),
            event_time_s: (r.reading.event_time.0 / 1000) as u32,
        })
        .collect();
    assert_eq!(names, expected_names);

    let windows: Vec<WindowRow> = client
        .query("SELECT ?fields FROM window_results FINAL")
        .fetch_all()
        .await?;
    assert_eq!(windows, vec![w]);
    let (kind, district): (String, String) = client
        .query("SELECT toString(kind), toString(district) FROM window_results")
        .fetch_one()
        .await?;
    assert_eq!(
        (kind.as_str(), district.as_str()),
        ("traffic_signal", "ngu_hanh_son")
    );

    let got_letters: Vec<DeadLetterRow> = client
        .query("SELECT ?fields FROM dead_letters ORDER BY received_at_ms")
        .fetch_all()
        .await?;
    assert_eq!(got_letters, expected_letters);
    let codes: Vec<(String, String)> = client
        .query("SELECT toString(code), hex(payload) FROM dead_letters ORDER BY received_at_ms")
        .fetch_all()
        .await?;
    assert_eq!(
        codes[0],
        ("invalid_utf8".to_owned(), "FFFE7B00C322".to_owned())
    );
    assert_eq!(codes[1].0, "payload_too_large");

    assert_eq!(
        metric(
            &registry,
            "ioc_store_rows_written_total",
            &[("table", "readings")]
        ),
        4.0
    );
    assert_eq!(
        metric(
            &registry,
            "ioc_store_rows_written_total",
            &[("table", "dead_letters")]
        ),
        2.0
    );
    assert_eq!(metric(&registry, "ioc_store_queue_rows", &[]), 0.0);
    assert!(
        metric(
            &registry,
            "ioc_store_batch_seconds",
            &[("table", "window_results")]
        ) >= 1.0
    );
    assert_eq!(
        metric(&registry, "ioc_store_batch_failures_total", &[]),
        0.0
    );

    drop_database(&cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_reading_or_window_counts_once_with_final() -> Result<()> {
    let cfg = test_config("replay");
    let registry = Registry::new();
    let store = Store::connect(cfg.clone(), StoreMetrics::new(&registry)?).await?;
    let (writers, tasks) = store.writers();

    let original = one_of_each_kind().swap_remove(1);
    let mut replay = original.clone();
    replay.received_at_ms += 60_000; // redelivered a minute later
    let mut other = original.clone();
    other.reading.message_id = "m-traffic-2".into();

    // Separate inserts, so the copies land in separate parts as a real replay would.
    writers
        .readings
        .send(ReadingRow::new(&original, false), None)
        .await?;
    writers
        .windows
        .send(WindowRow::from(&window("tl-1", T0)), None)
        .await?;
    wait_until("the first insert", Duration::from_secs(10), || {
        metric(&registry, "ioc_store_rows_written_total", &[]) >= 2.0
    })
    .await?;
    writers
        .readings
        .send(ReadingRow::new(&replay, false), None)
        .await?;
    writers
        .readings
        .send(ReadingRow::new(&other, false), None)
        .await?;
    writers
        .windows
        .send(WindowRow::from(&window("tl-1", T0 + 5)), None)
        .await?;
    drop(writers);
    tasks.join().await?;

    let client = store.client();
    let final_count: u64 = client
        .query("SELECT count() FROM readings FINAL")
        .fetch_one()
        .await?;
    assert_eq!(
        final_count, 2,
        "the replay collapses, the other message stays"
    );
    let kept: u64 = client
        .query("SELECT received_at_ms FROM readings FINAL WHERE message_id = ?")
        .bind(original.reading.message_id.as_str())
        .fetch_one()
        .await?;
    assert_eq!(kept, replay.received_at_ms, "the latest copy wins");
    let windows: u64 = client
        .query("SELECT count() FROM window_results FINAL")
        .fetch_one()
        .await?;
    assert_eq!(windows, 1);
    // The analysts' views (migration 10) hide FINAL and the versions.
    let final_windows: u64 = client
        .query("SELECT count() FROM final_windows")
        .fetch_one()
        .await?;
    assert_eq!(final_windows, 1);
    let named: Vec<(String, String)> = client
        .query("SELECT message_id, device_name FROM readings_named ORDER BY message_id")
        .fetch_all()
        .await?;
    let ids: Vec<&str> = named.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, [original.reading.message_id.as_str(), "m-traffic-2"]);
    assert!(
        named.iter().all(|(_, name)| name.is_empty()),
        "no registry here: {named:?}"
    );

    drop_database(&cfg).await
}

/// A window's provisional row and its final one in the same batch: only the final one is
/// inserted (the table would keep only it anyway), both acknowledgements fire, and the row
/// left out is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_replaced_within_its_batch_is_not_inserted() -> Result<()> {
    let cfg = ClickHouseConfig {
        // One batch for both rows, however the writer's task is scheduled.
        batch_max_wait_ms: 2_000,
        ..test_config("replaced")
    };
    let registry = Registry::new();
    let store = Store::connect(cfg.clone(), StoreMetrics::new(&registry)?).await?;
    let (writers, tasks) = store.writers();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut provisional = window("tl-1", T0);
    provisional.is_final = false;
    provisional.version = 2;
    let last = window("tl-1", T0 + 10_000);
    for (i, w) in [&provisional, &last].into_iter().enumerate() {
        writers
            .windows
            .send(WindowRow::from(w), Some(recording_ack(&acked, i)))
            .await?;
    }
    drop(writers);
    tasks.join().await?;

    // Without FINAL: what was inserted, not what the merge keeps.
    let stored: Vec<(u32, u8)> = store
        .client()
        .query("SELECT version, is_final FROM window_results")
        .fetch_all()
        .await?;
    assert_eq!(stored, [(last.version, 1)]);
    assert_eq!(*acked.lock().expect("ack log"), [0, 1]);
    let table = [("table", "window_results")];
    assert_eq!(
        metric(&registry, "ioc_store_rows_replaced_total", &table),
        1.0
    );
    assert_eq!(
        metric(&registry, "ioc_store_rows_written_total", &table),
        1.0
    );
    assert_eq!(metric(&registry, "ioc_store_queue_rows", &table), 0.0);
    drop_database(&cfg).await
}

/// With a batch wait far longer than the test, a batch of 1,000 rows is inserted once its
/// input goes quiet; one row fewer is not, since a trickle must not make more inserts. The
/// small batch right after a large one (the end of a burst) goes early too, but not the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_goes_in_once_its_input_goes_quiet() -> Result<()> {
    let cfg = ClickHouseConfig {
        batch_max_wait_ms: 600_000,
        batch_quiet_ms: 50,
        ..test_config("quiet")
    };
    let registry = Registry::new();
    let store = Store::connect(cfg.clone(), StoreMetrics::new(&registry)?).await?;
    let (writers, tasks) = store.writers();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let written = || metric(&registry, "ioc_store_rows_written_total", &[]);
    let send = |device: String, i: usize| {
        let row = WindowRow::from(&window(&device, T0 + i as u64));
        let ack = recording_ack(&acked, i);
        let windows = writers.windows.clone();
        async move { windows.send(row, Some(ack)).await }
    };
    for i in 0..999 {
        send(format!("tl-{i}"), i).await?;
    }
    // Ten quiet periods pass: 999 rows wait for the batch's wait, not for quiet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(written(), 0.0, "999 rows are not inserted early");
    send("tl-999".to_owned(), 999).await?;
    wait_until("the quiet batch", Duration::from_secs(20), || {
        written() >= 1_000.0
    })
    .await?;
    assert_eq!(acked.lock().expect("acks").len(), 1_000);
    for i in 1_000..1_005 {
        send(format!("tl-{i}"), i).await?;
    }
    wait_until("the remainder", Duration::from_secs(20), || {
        written() >= 1_005.0
    })
    .await?;
    send("tl-1005".to_owned(), 1_005).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(written(), 1_005.0, "a trickle after the remainder waits");
    drop(writers);
    tasks.join().await?;
    let stored: u64 = store
        .client()
        .query("SELECT count() FROM window_results")
        .fetch_one()
        .await?;
    assert_eq!(stored, 1_006, "the rest goes in when the writer stops");
    assert_eq!(acked.lock().expect("acks").len(), 1_006);
    drop_database(&cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_fire_in_order_only_after_the_insert_succeeded() -> Result<()> {
    let cfg = test_config("acks");
    let registry = Registry::new();
    let store = Store::connect(cfg.clone(), StoreMetrics::new(&registry)?).await?;
    let client = store.client().clone();
    let db = &cfg.database;
    // With the table gone every insert fails permanently (unknown table).
    client
        .query(&format!("RENAME TABLE {db}.readings TO {db}.readings_away"))
        .execute()
        .await?;

    let (writers, tasks) = store.writers();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut rows = Vec::new();
    for (i, r) in one_of_each_kind().iter().enumerate() {
        rows.push(ReadingRow::new(r, false));
        writers
            .readings
            .send(ReadingRow::new(r, false), Some(recording_ack(&acked, i)))
            .await?;
    }
    let failures = |kind: &str| {
        metric(
            &registry,
            "ioc_store_batch_failures_total",
            &[("table", "readings"), ("kind", kind)],
        )
    };
    wait_until("permanent failures", Duration::from_secs(10), || {
        failures("permanent") >= 2.0
    })
    .await?;
    assert!(
        acked.lock().expect("acks").is_empty(),
        "no ack before the insert succeeds"
    );
    assert_eq!(
        metric(&registry, "ioc_store_queue_rows", &[("table", "readings")]),
        4.0
    );
    assert_eq!(failures("retryable"), 0.0);

    // Fixing the schema lets the kept batch through; nothing was dropped.
    client
        .query(&format!("RENAME TABLE {db}.readings_away TO {db}.readings"))
        .execute()
        .await?;
    wait_until("the acks", Duration::from_secs(10), || {
        acked.lock().expect("acks").len() == 4
    })
    .await?;
    assert_eq!(*acked.lock().expect("acks"), vec![0, 1, 2, 3]);
    let stored: u64 = client
        .query("SELECT count() FROM readings")
        .fetch_one()
        .await?;
    assert_eq!(stored, 4, "acked rows are in ClickHouse");
    assert_eq!(
        metric(
            &registry,
            "ioc_store_rows_written_total",
            &[("table", "readings")]
        ),
        4.0
    );
    assert_eq!(
        metric(&registry, "ioc_store_queue_rows", &[("table", "readings")]),
        0.0
    );

    drop(writers);
    tasks.join().await?;
    drop_database(&cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_applies_backpressure_and_acks_nothing() -> Result<()> {
    let cfg = ClickHouseConfig {
        url: "http://127.0.0.1:1".into(),
        channel_capacity: 10,
        batch_max_rows: 5,
        retry_initial_ms: 10,
        retry_max_ms: 100,
        ..test_config("unreachable")
    };
    let registry = Registry::new();
    let metrics = StoreMetrics::new(&registry)?;

    let e = Store::connect(cfg.clone(), metrics.clone())
        .await
        .expect_err("nothing listens on port 1");
    assert!(e.is_retryable(), "connection refused is retryable: {e}");

    let store = Store::new(cfg, metrics)?;
    let (writers, _tasks) = store.writers();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (writers, acked, sent) = (writers.clone(), Arc::clone(&acked), Arc::clone(&sent));
        let reading = one_of_each_kind().swap_remove(0);
        tokio::spawn(async move {
            for i in 0..20 {
                let mut r = reading.clone();
                r.reading.message_id = format!("m{i}");
                let row = ReadingRow::new(&r, false);
                if writers
                    .readings
                    .send(row, Some(recording_ack(&acked, i)))
                    .await
                    .is_err()
                {
                    return;
                }
                sent.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let done = sent.load(Ordering::SeqCst);
    // One batch of 5 held for retry plus 10 queued; the 16th send waits.
    assert!((10..=15).contains(&done), "{done} sends completed");
    assert!(!sender.is_finished(), "the 20th send is still waiting");
    assert!(acked.lock().expect("acks").is_empty());
    let retryable = metric(
        &registry,
        "ioc_store_batch_failures_total",
        &[("table", "readings"), ("kind", "retryable")],
    );
    assert!(retryable >= 3.0, "{retryable} failures counted");
    assert!(metric(&registry, "ioc_store_queue_rows", &[("table", "readings")]) >= 15.0);
    assert_eq!(metric(&registry, "ioc_store_rows_written_total", &[]), 0.0);
    sender.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sql_errors_are_classified_permanent() -> Result<()> {
    let cfg = test_config("sql_errors");
    migrate(&cfg).await?;
    let client = cfg.client();
    let e = client
        .query("SELECT x FROM no_such_table")
        .execute()
        .await
        .expect_err("unknown table");
    assert!(!is_retryable_clickhouse(&e), "{e}");
    let e = client
        .query("SELEC 1")
        .execute()
        .await
        .expect_err("syntax error");
    assert!(!is_retryable_clickhouse(&e), "{e}");
    drop_database(&cfg).await
}

/// An alert event and a webhook attempt go through their writers and read back by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_events_and_webhook_attempts_are_stored() -> Result<()> {
    use ioc_schemas::{
        Alert, AlertEvent, AlertState, Category, Department, District, Severity, Transition,
    };
    let cfg = test_config("alerts");
    let registry = Registry::new();
    let store = Store::connect(cfg.clone(), StoreMetrics::new(&registry)?).await?;
    let (writers, tasks) = store.writers();
    let alert = Alert {
        id: "aqi-bad:aq-cam_le:1795824000000".into(),
        rule_id: "aqi-bad".into(),
        entity_id: "aq-cam_le".into(),
        district: Some(District::CamLe),
        department: Department::Environment,
        category: Category::AirQuality,
        severity: Severity::Major,
        state: AlertState::Acknowledged,
        message: "VN_AQI 174 (Xấu) at Cẩm Lệ".into(),
        value: Some(174.0),
        opened_ms: 1_795_824_000_000,
        breach_event_ms: 1_795_823_990_000,
        updated_ms: 1_795_824_060_000,
        breaches: 2,
        escalations: 0,
        acknowledged: Some(("operator-1".into(), 1_795_824_060_000)),
        resolved: None,
        comments: Vec::new(),
        suppressed: false,
    };
    let event = AlertEvent {
        event_id: format!("{}:3", alert.id),
        alert,
        transition: Transition::Acknowledged,
        at_ms: 1_795_824_060_000,
        actor: "operator-1".into(),
        notify: false,
    };
    writers
        .alert_events
        .send(ioc_store::AlertEventRow::from(&event), None)
        .await?;
    writers
        .webhook_attempts
        .send(
            ioc_store::WebhookAttemptRow {
                delivery_id: "d1".into(),
                webhook_id: "msg_1".into(),
                subscription_id: "env".into(),
                department: ioc_store::department_code(Department::Environment),
                url: "http://127.0.0.1:9/hook".into(),
                attempt: 1,
                at: 1_795_824_060,
                at_ms: 1_795_824_060_000,
                status: Some(503),
                latency_ms: 12,
                error: Some("503 service unavailable".into()),
                outcome: "retry".into(),
            },
            None,
        )
        .await?;
    drop(writers);
    tasks.join().await?;
    let client = cfg.client();
    let (transition, severity, state, category, district): (String, String, String, String, String) =
        client
            .query("SELECT toString(transition), toString(severity), toString(state), toString(category), toString(assumeNotNull(district)) FROM alert_events FINAL")
            .fetch_one()
            .await?;
    assert_eq!(
        (
            transition.as_str(),
            severity.as_str(),
            state.as_str(),
            category.as_str(),
            district.as_str()
        ),
        (
            "acknowledged",
            "major",
            "acknowledged",
            "air_quality",
            "cam_le"
        )
    );
    let (outcome, status): (String, Option<u16>) = client
        .query("SELECT outcome, status FROM webhook_attempts")
        .fetch_one()
        .await?;
    assert_eq!((outcome.as_str(), status), ("retry", Some(503)));
    let open: Vec<(String, String, String)> = client
        .query("SELECT alert_id, toString(state), toString(last_transition) FROM open_alerts")
        .fetch_all()
        .await?;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        (open[0].1.as_str(), open[0].2.as_str()),
        ("acknowledged", "acknowledged")
    );
    drop_database(&cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_the_partitions_past_their_limit_and_keeps_the_rest() -> Result<()> {
    let mut cfg = test_config("retention");
    cfg.retention.readings_days = 90;
    cfg.retention.kpi_days = 30;
    cfg.retention.dead_letters_days = 0; // for ever
    let registry = Registry::new();
    let store = Store::connect(cfg.clone(), StoreMetrics::new(&registry)?).await?;
    let client = store.client().clone();
    let now_ms: u64 = client
        .query("SELECT toUInt64(now()) * 1000")
        .fetch_one()
        .await?;
    let day = 86_400_000;
    // Readings 200 days ago, 89 days ago and now; a KPI row 3 months ago and one now; a dead
    // letter a year ago.
    for (id, at) in [
        ("old", now_ms - 200 * day),
        ("kept", now_ms - 89 * day),
        ("new", now_ms),
    ] {
        client
            .query(&format!(
                "INSERT INTO readings (message_id, device_id, kind, district, event_time, \
                 event_time_ms, received_at, received_at_ms, transport, source, late, payload) \
                 VALUES ('{id}', 'rain-1', 'sensor', 'hai_chau', toDateTime({s}), {at}, \
                 toDateTime({s}), {at}, 'mqtt', 'test', 0, '{{}}')",
                s = at / 1000
            ))
            .execute()
            .await?;
    }
    for at in [now_ms - 95 * day, now_ms] {
        client
            .query(&format!(
                "INSERT INTO kpi_bridge (device_id, district, window_start, window_start_ms, \
                 window_end, window_size_ms) VALUES ('bridge-1', 'son_tra', toDateTime({s}), \
                 {at}, toDateTime({s} + 300), 300000)",
                s = at / 1000
            ))
            .execute()
            .await?;
    }
    client
        .query(&format!(
            "INSERT INTO dead_letters (received_at, received_at_ms, transport, source, code, \
             reason, payload) VALUES (toDateTime({s}), {at}, 'mqtt', 'x', 'malformed_json', \
             'not json', '{{')",
            at = now_ms - 365 * day,
            s = (now_ms - 365 * day) / 1000
        ))
        .execute()
        .await?;

    let dropped = store.enforce_retention(now_ms).await?;
    let tables: Vec<&str> = dropped.iter().map(|d| d.table).collect();
    assert_eq!(tables, ["readings", "kpi_bridge"], "{dropped:?}");
    let readings: Vec<String> = client
        .query("SELECT message_id FROM readings ORDER BY event_time_ms")
        .fetch_all()
        .await?;
    assert_eq!(readings, ["kept", "new"]);
    let bridge_rows: u64 = client
        .query("SELECT count() FROM kpi_bridge")
        .fetch_one()
        .await?;
    assert_eq!(
        bridge_rows, 1,
        "the month 95 days back is past 30 days; this month is kept"
    );
    let dead: u64 = client
        .query("SELECT count() FROM dead_letters")
        .fetch_one()
        .await?;
    assert_eq!(dead, 1, "a limit of 0 keeps for ever");
    assert_eq!(
        metric(
            &registry,
            "ioc_store_retention_partitions_dropped_total",
            &[("table", "readings")]
        ),
        1.0
    );
    // Nothing more to drop the second time.
    assert!(store.enforce_retention(now_ms).await?.is_empty());
    drop_database(&cfg).await
}
