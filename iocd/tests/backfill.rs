//! `iocd backfill` against the real ClickHouse: windows recomputed from the raw readings,
//! late ones included, supersede the live versions.

mod common;

use std::process::Command;

use common::*;
use ioc_schemas::{District, IngestedReading, Transport, WindowResult};
use ioc_store::{ClickHouseConfig, ReadingRow, Store, StoreMetrics, WindowRow};

const MINUTE: u64 = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_counts_late_readings_and_supersedes_live_windows() {
    let run = run_id("backfill");
    let database = format!("ioc_test_{run}");
    let base = 1_795_827_600_000; // a 5-minute boundary
    let config = ClickHouseConfig {
        database: database.clone(),
        batch_max_wait_ms: 20,
        // Fixed event times: nothing may age out mid-test.
        retention: ioc_store::RetentionConfig {
            enabled: false,
            ..Default::default()
        },
        ..ClickHouseConfig::default()
    };
    let store = Store::connect(
        config,
        StoreMetrics::new(&prometheus::Registry::new()).unwrap(),
    )
    .await
    .unwrap();
    let (writers, tasks) = store.writers();
    // The live run stored three readings on time and one late (30 s into the first minute).
    for (seq, offset_s, late) in [(0, 5, false), (1, 20, false), (2, 70, false), (3, 30, true)] {
        let reading = IngestedReading {
            reading: gauge_reading(&run, 1, seq, base + offset_s * 1000),
            district: District::CamLe,
            transport: Transport::Kafka,
            source: "ioc.sensor/0@1".into(),
            received_at_ms: base + 100_000,
            payload: String::new(),
        };
        let mut row = ReadingRow::new(&reading, late);
        row.payload = serde_json::to_string(&reading.reading).unwrap();
        writers.readings.send(row, None).await.unwrap();
    }
    // ... and its final window for the first minute, without the late reading.
    let live = WindowResult {
        kind: ioc_schemas::Kind::Sensor,
        district: District::CamLe,
        device_id: "gauge-001".into(),
        metric: "water_level_m".into(),
        window_start_ms: base,
        window_size_ms: MINUTE,
        count: 2,
        sum: 0.0,
        min: 0.0,
        max: 0.0,
        mean: 0.0,
        emitted_at_ms: base + 100_000,
        version: ioc_dataflow::result_version(2, true),
        is_final: true,
    };
    writers
        .windows
        .send(WindowRow::from(&live), None)
        .await
        .unwrap();
    drop(writers);
    tasks.join().await.unwrap();

    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("iocd.toml");
    std::fs::write(
        &config_path,
        format!("[clickhouse]\ndatabase = \"{database}\"\nbatch_max_wait_ms = 20\n"),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_iocd"))
        .args(["backfill", "--config"])
        .arg(&config_path)
        .args(["--from", &base.to_string(), "--to", "2026-11-28T01:05:00Z"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("backfill [########################################] 100% 4/4 readings"),
        "{stderr}"
    );

    let client = clickhouse("http://127.0.0.1:8123", &database);
    let windows: Vec<(u64, u64, u64, u32, u8)> = client
        .query("SELECT window_size_ms, window_start_ms, count, version, is_final FROM window_results FINAL ORDER BY window_size_ms, window_start_ms")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        windows,
        vec![
            // The late reading now counts: version 7 supersedes the live version 5.
            (MINUTE, base, 3, 7, 1),
            (MINUTE, base + MINUTE, 1, 3, 1),
            (5 * MINUTE, base, 4, 9, 1),
        ]
    );

    drop_database(&database).await;
    let _ = std::fs::remove_dir_all(&dir);
}
