//! KPIs with long horizons survive a restart: an air station's hourly AQI (a NowCast over 12
//! hours) and a gauge's 24-hour rain come out after iocd stops and starts again mid-scenario
//! exactly as in an uninterrupted run, from the windows stored before the stop.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use ioc_schemas::{Body, EnvironmentBody, EventTime, Medium, Reading, SensorBody};
use iocd::Config;

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;

fn air(run: &str, id: &str, t: u64, pm25: f64) -> Reading {
    Reading {
        message_id: format!("{run}-{id}-{t}"),
        device_id: id.into(),
        event_time: EventTime(t),
        body: Body::Environment(EnvironmentBody {
            units: Default::default(),
            station_id: id.into(),
            medium: Medium::Air,
            measurements: BTreeMap::from([("pm25".to_owned(), pm25)]),
        }),
    }
}

fn rain(run: &str, id: &str, t: u64) -> Reading {
    Reading {
        message_id: format!("{run}-{id}-{t}"),
        device_id: id.into(),
        event_time: EventTime(t),
        body: Body::Sensor(SensorBody {
            metric: "rainfall_mm".into(),
            value: 1.0,
            unit: "mm".into(),
        }),
    }
}

/// Runs the pipeline over `events` and stops it once `done` holds in ClickHouse.
async fn run_pipeline(config: Config, run: &str, events: Vec<(String, Vec<u8>)>, wait_for: &str) {
    let database = config.clickhouse.as_ref().unwrap().database.clone();
    let pipeline = common::Pipeline::start(config).await;
    common::publish_all(&format!("pub-{run}"), events).await;
    let client = common::clickhouse("http://127.0.0.1:8123", &database);
    common::wait_until(wait_for, Duration::from_secs(60), || {
        let client = client.clone();
        async move { client.query(wait_for).fetch_one::<u64>().await.unwrap_or(0) > 0 }
    })
    .await;
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hourly_aqi_and_rain_accumulations_survive_a_restart() {
    let run = common::run_id("kpirestart");
    let database = format!("ioc_test_{run}");
    let aq = format!("aq-{run}");
    let gauge = format!("rain-{run}");
    let topics = [
        format!("ioc/v1/environment/cam_le/{aq}"),
        format!("ioc/v1/sensor/hoa_vang/{gauge}"),
    ];
    let now = ioc_dataflow::Clock::now_ms(&ioc_dataflow::SystemClock);
    let base = now - now % HOUR - 5 * HOUR;

    // PM2.5 20, 40, 100, 150 µg/m³ in hours 0–3, every 5 minutes; the gauge 1 mm a minute.
    let json = |r: &Reading| serde_json::to_vec(r).unwrap();
    let mut events: Vec<(u64, String, Vec<u8>)> = Vec::new();
    for i in 0..48u64 {
        let t = base + i * 5 * MINUTE + 1_000;
        let pm25 = [20.0, 40.0, 100.0, 150.0][(i / 12) as usize];
        events.push((t, topics[0].clone(), json(&air(&run, &aq, t, pm25))));
    }
    for i in 0..(4 * 60u64) {
        let t = base + i * MINUTE + 2_000;
        events.push((t, topics[1].clone(), json(&rain(&run, &gauge, t))));
    }
    let closer = base + 4 * HOUR + 20 * MINUTE;
    events.push((
        closer,
        topics[0].clone(),
        json(&air(&run, &aq, closer, 150.0)),
    ));
    events.sort_by_key(|(t, ..)| *t);
    // The stop comes 2 h 20 min in, mid-hour.
    let stop_at = base + 2 * HOUR + 20 * MINUTE;
    let (before, after): (Vec<_>, Vec<_>) = events.into_iter().partition(|(t, ..)| *t < stop_at);
    let strip = |v: Vec<(u64, String, Vec<u8>)>| -> Vec<(String, Vec<u8>)> {
        v.into_iter()
            .map(|(_, topic, payload)| (topic, payload))
            .collect()
    };

    let config = || {
        let mut config = Config::default();
        config.alerts.state_dir = common::state_dir(&run).into();
        config.mqtt.client_id = format!("iocd-{run}");
        config.mqtt.topics = topics.to_vec();
        config.dataflow.allowed_lateness_ms = 10_000;
        config.dataflow.idle_timeout_ms = 3_600_000;
        config.clickhouse = Some(ioc_store::ClickHouseConfig {
            database: database.clone(),
            batch_max_wait_ms: 50,
            // Fixed event times: nothing may age out mid-test.
            retention: ioc_store::RetentionConfig {
                enabled: false,
                ..Default::default()
            },
            ..Default::default()
        });
        config
    };
    let aqi_of_hour = |h: u64| {
        format!(
            "SELECT count() FROM kpi_aqi FINAL WHERE station_id = '{aq}' AND period = 'hour' AND window_start_ms = {}",
            base + h * HOUR
        )
    };
    run_pipeline(config(), &run, strip(before), &aqi_of_hour(1)).await;
    run_pipeline(config(), &run, strip(after), &aqi_of_hour(3)).await;

    let client = common::clickhouse("http://127.0.0.1:8123", &database);
    let aqi: Vec<(u64, Option<u32>, u32)> = client
        .query("SELECT window_start_ms, aqi, coverage FROM kpi_aqi FINAL WHERE station_id = ? AND period = 'hour' ORDER BY window_start_ms")
        .bind(aq.as_str())
        .fetch_all()
        .await
        .unwrap();
    let got: Vec<(u64, Option<u32>, u32)> = aqi
        .into_iter()
        .map(|(start, aqi, coverage)| ((start - base) / HOUR, aqi, coverage))
        .collect();
    // As uninterrupted (see city_kpis.rs): Moderate 67, Poor 136, Bad 174, every hour whole.
    assert_eq!(
        got,
        vec![
            (0, None, 12),
            (1, Some(67), 12),
            (2, Some(136), 12),
            (3, Some(174), 12)
        ]
    );
    // 3 h 25 min of 1 mm a minute: the 3-hour sum of the window ending at 3:25 is 180 mm.
    let rain_3h: Option<f64> = client
        .query(
            "SELECT rain_3h_mm FROM kpi_hydrology FINAL WHERE gauge_id = ? AND window_start_ms = ?",
        )
        .bind(gauge.as_str())
        .bind(base + 3 * HOUR + 20 * MINUTE)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(rain_3h, Some(180.0));
    common::drop_database(&database).await;
}
