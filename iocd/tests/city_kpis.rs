//! A scripted city scenario through the real mosquitto (127.0.0.1:1883) into ClickHouse
//! (127.0.0.1:8123): a junction faults for 10 minutes, an air station's PM2.5 climbs through
//! the Moderate, Poor and Bad bands, a rain gauge falls silent, and a stray device reports.
//! The KPI rows in ClickHouse, the KPI channel of the WebSocket, the device API and the
//! The KPI queries of docs/data-model.md are checked against figures worked out by hand.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ioc_schemas::{
    fleet_json, Approach, AqiBand, Body, ControlMode, Department, Device, District,
    EnvironmentBody, EventTime, Kind, Medium, Reading, SensorBody, SignalState, TrafficSignalBody,
};
use iocd::Config;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;

fn device(
    id: &str,
    kind: Kind,
    district: District,
    department: Department,
    interval_s: u32,
) -> Device {
    Device {
        id: id.into(),
        kind,
        name: format!("Thiết bị thử {id}"),
        district,
        lat: 16.05,
        lon: 108.2,
        department,
        expected_interval_s: interval_s,
        free_flow_kmh: None,
        water_class: None,
        flood_alarm_m: None,
    }
}

fn junction(run: &str, id: &str, t: u64, faulted: bool) -> Reading {
    let approach = |name: &str| Approach {
        approach: name.into(),
        vehicles: 10,
        occupancy_pct: 20.0,
        mean_speed_kmh: 40.0,
        queue_length_m: 12.0,
    };
    Reading {
        message_id: format!("{run}-{id}-{t}"),
        device_id: id.into(),
        event_time: EventTime(t),
        body: Body::TrafficSignal(TrafficSignalBody {
            junction_id: id.into(),
            state: if faulted {
                SignalState::Flashing
            } else {
                SignalState::Green
            },
            mode: ControlMode::Fixed,
            fault_code: faulted.then(|| "controller_fault".to_owned()),
            approaches: vec![approach("north"), approach("south")],
        }),
    }
}

fn air(run: &str, id: &str, t: u64, pm25: f64) -> Reading {
    Reading {
        message_id: format!("{run}-{id}-{t}"),
        device_id: id.into(),
        event_time: EventTime(t),
        body: Body::Environment(EnvironmentBody {
            units: Default::default(),
            station_id: id.into(),
            medium: Medium::Air,
            measurements: BTreeMap::from([("pm25".to_owned(), pm25), ("no2".to_owned(), 40.0)]),
        }),
    }
}

fn sensor(run: &str, id: &str, t: u64, metric: &str, value: f64) -> Reading {
    Reading {
        message_id: format!("{run}-{id}-{t}"),
        device_id: id.into(),
        event_time: EventTime(t),
        body: Body::Sensor(SensorBody {
            metric: metric.into(),
            value,
            unit: "mm".into(),
        }),
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct TrafficRow {
    window_start_ms: u64,
    availability_pct: f64,
    level: String,
    volume_veh_h: f64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct AqiRow {
    window_start_ms: u64,
    aqi: Option<u32>,
    /// The `Enum8` code: 1 good … 6 hazardous (18.16 cannot `toString` a null enum).
    band: Option<i8>,
    pm25: Option<f64>,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct HealthRow {
    window_start_ms: u64,
    readings: u64,
    status: Option<String>,
    completeness_pct: f64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_city_scenario_produces_the_kpis() {
    let run = common::run_id("kpis");
    let database = format!("ioc_test_{run}");
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let tsc = format!("tsc-{run}");
    let aq = format!("aq-{run}");
    let rain = format!("rain-{run}");
    let stray = format!("stray-{run}");
    let fleet = [
        device(
            &tsc,
            Kind::TrafficSignal,
            District::ThanhKhe,
            Department::Transport,
            30,
        ),
        device(
            &aq,
            Kind::Environment,
            District::CamLe,
            Department::Environment,
            300,
        ),
        device(
            &rain,
            Kind::Sensor,
            District::HoaVang,
            Department::DisasterPrevention,
            60,
        ),
    ];
    let fleet_path = dir.join("fleet.json");
    std::fs::write(&fleet_path, fleet_json(&fleet)).unwrap();

    // A past, whole-hour base time, so every window is deterministic.
    let now = ioc_dataflow::Clock::now_ms(&ioc_dataflow::SystemClock);
    let base = now - now % HOUR - 5 * HOUR;
    let topic = |kind: &str, district: &str, id: &str| format!("ioc/v1/{kind}/{district}/{id}");
    let topics = [
        topic("traffic_signal", "thanh_khe", &tsc),
        topic("environment", "cam_le", &aq),
        topic("sensor", "hoa_vang", &rain),
        topic("sensor", "son_tra", &stray),
    ];

    let mut config = Config::default();
    config.alerts.state_dir = common::state_dir(&run).into();
    config.mqtt.client_id = format!("iocd-{run}");
    config.mqtt.topics = topics.to_vec();
    config.dataflow.allowed_lateness_ms = 10_000;
    // Past event times: keep the wall clock from driving time.
    config.dataflow.idle_timeout_ms = 3_600_000;
    config.registry.path = Some(fleet_path);
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
    let pipeline = common::Pipeline::start(config).await;
    let addr = pipeline.addr;

    // The registry file is what the API lists.
    let (status, devices) = common::http(addr, "GET", "/api/v1/devices", "").await;
    assert_eq!(status, 200);
    assert_eq!(devices["count"], 3, "{devices}");

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    let subscribe = serde_json::json!({"type": "subscribe", "channels": ["kpi.air"]});
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        subscribe.to_string(),
    ))
    .await
    .unwrap();
    let pushed_air = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let reader = tokio::spawn({
        let pushed = std::sync::Arc::clone(&pushed_air);
        async move {
            while let Some(Ok(message)) = ws.next().await {
                let Ok(text) = message.into_text() else {
                    continue;
                };
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                if value["type"] == "kpi" {
                    pushed.lock().unwrap().push(value);
                }
            }
        }
    });

    // The scenario, in event-time order:
    // - the junction reports every 30 s for an hour, flashing with a fault from 0:20 to 0:30;
    // - the air station reports every 5 minutes for 4 hours, PM2.5 20, 40, 100 then 150 µg/m³;
    // - the rain gauge reports 1 mm a minute for 30 minutes, then falls silent;
    // - a stray, unregistered sensor reports once.
    let json = |r: &Reading| serde_json::to_vec(r).unwrap();
    let mut events: Vec<(u64, String, Vec<u8>)> = Vec::new();
    for i in 0..120u64 {
        let t = base + i * 30_000;
        let faulted = (20 * MINUTE..30 * MINUTE).contains(&(t - base));
        events.push((
            t,
            topics[0].clone(),
            json(&junction(&run, &tsc, t, faulted)),
        ));
    }
    for i in 0..48u64 {
        let t = base + i * 5 * MINUTE + 1_000;
        let pm25 = [20.0, 40.0, 100.0, 150.0][(i / 12) as usize];
        events.push((t, topics[1].clone(), json(&air(&run, &aq, t, pm25))));
    }
    for i in 0..30u64 {
        let t = base + i * MINUTE + 2_000;
        events.push((
            t,
            topics[2].clone(),
            json(&sensor(&run, &rain, t, "rainfall_mm", 1.0)),
        ));
    }
    events.push((
        base + 3_000,
        topics[3].clone(),
        json(&sensor(&run, &stray, base + 3_000, "rainfall_mm", 0.5)),
    ));
    // Far enough ahead to close every window and hour above.
    events.push((
        base + 4 * HOUR + 20 * MINUTE,
        topics[2].clone(),
        json(&sensor(
            &run,
            &rain,
            base + 4 * HOUR + 20 * MINUTE,
            "rainfall_mm",
            0.0,
        )),
    ));
    events.sort_by_key(|(t, ..)| *t);
    common::publish_all(
        &format!("pub-{run}"),
        events
            .into_iter()
            .map(|(_, topic, payload)| (topic, payload))
            .collect(),
    )
    .await;

    let client = common::clickhouse("http://127.0.0.1:8123", &database);
    common::wait_until("the hourly AQI of hour 3", Duration::from_secs(60), || {
        let client = client.clone();
        let aq = aq.clone();
        async move {
            client
                .query("SELECT count() FROM kpi_aqi FINAL WHERE station_id = ? AND period = 'hour'")
                .bind(aq.as_str())
                .fetch_one::<u64>()
                .await
                .unwrap_or(0)
                >= 4
        }
    })
    .await;
    // Rows are batched per table: give the others a moment to land too.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Junction: 20 vehicles every 30 s is 2 400 veh/h; 40 km/h of 50 is 80 %: level B. The two
    // 5-minute windows of the fault have no availability; the others full.
    let traffic: Vec<TrafficRow> = client
        .query("SELECT window_start_ms, availability_pct, toString(level) AS level, volume_veh_h FROM kpi_traffic FINAL WHERE scope = 'device' AND entity_id = ? ORDER BY window_start_ms")
        .bind(tsc.as_str())
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(traffic.len(), 12, "{traffic:?}");
    for row in &traffic {
        let minute = (row.window_start_ms - base) / MINUTE;
        let expected = if minute == 20 || minute == 25 {
            0.0
        } else {
            100.0
        };
        assert_eq!(row.availability_pct, expected, "{row:?}");
        assert_eq!(row.level, "B", "{row:?}");
        assert_eq!(row.volume_veh_h, 2400.0, "{row:?}");
    }
    let district_rows: u64 = client
        .query("SELECT count() FROM kpi_traffic FINAL WHERE scope = 'district' AND entity_id = 'thanh_khe' AND window_start_ms >= ? AND window_start_ms < ?")
        .bind(base)
        .bind(base + HOUR)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(district_rows, 12);

    // Air: the hourly NowCast (worked in the dataflow's unit tests) climbs 33.3 → 71.4 → 113.3
    // µg/m³: AQI 67 (Moderate), 136 (Poor), 174 (Bad). Hour 0 alone makes no NowCast: no AQI.
    let aqi: Vec<AqiRow> = client
        .query("SELECT window_start_ms, aqi, band, pm25 FROM kpi_aqi FINAL WHERE station_id = ? AND period = 'hour' ORDER BY window_start_ms")
        .bind(aq.as_str())
        .fetch_all()
        .await
        .unwrap();
    let got: Vec<(u64, Option<u32>, Option<String>)> = aqi
        .iter()
        .map(|r| {
            let band = r
                .band
                .and_then(|code| AqiBand::ALL.get(usize::try_from(code - 1).ok()?))
                .map(|b| b.as_str().to_owned());
            ((r.window_start_ms - base) / HOUR, r.aqi, band)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (0, None, None),
            (1, Some(67), Some("moderate".into())),
            (2, Some(136), Some("poor".into())),
            (3, Some(174), Some("bad".into())),
        ],
        "{aqi:?}"
    );
    assert!((aqi[1].pm25.unwrap() - 100.0 / 3.0).abs() < 1e-6);

    // The same history through the API, read from ClickHouse.
    let path = format!(
        "/api/v1/kpis/air?entity={aq}&from={base}&to={}&limit=100",
        base + 4 * HOUR
    );
    let (status, history) = common::http(addr, "GET", &path, "").await;
    assert_eq!(status, 200, "{history}");
    let from_api: Vec<(u64, serde_json::Value, serde_json::Value)> = history["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["period"] == "hour")
        .map(|r| {
            let start = r["window_start_ms"].as_u64().unwrap();
            ((start - base) / HOUR, r["aqi"].clone(), r["band"].clone())
        })
        .collect();
    use serde_json::{json, Value::Null};
    assert_eq!(
        from_api,
        vec![
            (0, Null, Null),
            (1, json!(67), json!("moderate")),
            (2, json!(136), json!("poor")),
            (3, json!(174), json!("bad")),
        ],
        "{history}"
    );
    assert_eq!(history["truncated"], false);
    assert_eq!(history["source"], "clickhouse");
    let path = format!("/api/v1/kpis/air?entity={aq}&from={base}&to={base}");
    let (status, refused) = common::http(addr, "GET", &path, "").await;
    assert_eq!((status, &refused["error"]["field"]), (400, &json!("from")));

    // The same rows were pushed on the kpi.air channel.
    let pushed_bands: Vec<String> = pushed_air
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m["kpi"]["period"] == "hour")
        .filter_map(|m| m["kpi"]["band"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(pushed_bands, ["moderate", "poor", "bad"]);

    // Rain: 30 mm in the gauge's 30 minutes; then silent: offline 3 minutes after 0:29:02.
    let rain_1h: Option<f64> = client
        .query(
            "SELECT rain_1h_mm FROM kpi_hydrology FINAL WHERE gauge_id = ? AND window_start_ms = ?",
        )
        .bind(rain.as_str())
        .bind(base + 25 * MINUTE)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(rain_1h, Some(30.0));
    let health: Vec<HealthRow> = client
        .query("SELECT window_start_ms, readings, toString(status) AS status, completeness_pct FROM kpi_health FINAL WHERE scope = 'device' AND entity_id = ? AND window_start_ms >= ? AND window_start_ms < ? ORDER BY window_start_ms")
        .bind(rain.as_str())
        .bind(base)
        .bind(base + HOUR)
        .fetch_all()
        .await
        .unwrap();
    let by_minute: BTreeMap<u64, &HealthRow> = health
        .iter()
        .map(|h| ((h.window_start_ms - base) / MINUTE, h))
        .collect();
    assert_eq!(by_minute[&25].readings, 5);
    assert_eq!(by_minute[&25].completeness_pct, 100.0);
    assert_eq!(by_minute[&25].status.as_deref(), Some("online"));
    assert_eq!(by_minute[&30].status.as_deref(), Some("offline"));
    assert_eq!(by_minute[&30].completeness_pct, 0.0);
    assert_eq!(by_minute[&55].status.as_deref(), Some("offline"));
    // Per district and per department too.
    let offline_in_hoa_vang: u32 = client
        .query("SELECT offline FROM kpi_health FINAL WHERE scope = 'district' AND entity_id = 'hoa_vang' AND window_start_ms = ?")
        .bind(base + 40 * MINUTE)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(offline_in_hoa_vang, 1);

    // The stray device is stored, counted and listed, never lost.
    let stored_stray: u64 = client
        .query("SELECT count() FROM readings FINAL WHERE device_id = ?")
        .bind(stray.as_str())
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(stored_stray, 1);
    let (_, unknown) = common::http(addr, "GET", "/api/v1/devices/unknown", "").await;
    assert_eq!(unknown["devices"][0]["id"], stray.as_str(), "{unknown}");
    let (_, metrics) = {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        (0, text)
    };
    assert!(
        metrics.contains("ioc_dataflow_unknown_device_readings_total{kind=\"sensor\"} 1"),
        "{metrics}"
    );

    // Registering it through the API stores it and takes it off the unknown list.
    let body = serde_json::to_string(&device(
        &stray,
        Kind::Sensor,
        District::SonTra,
        Department::DisasterPrevention,
        60,
    ))
    .unwrap();
    let (status, _) = common::http(addr, "POST", "/api/v1/devices", &body).await;
    assert_eq!(status, 201);
    let (_, unknown) = common::http(addr, "GET", "/api/v1/devices/unknown", "").await;
    assert_eq!(unknown["count"], 0, "{unknown}");
    let registered: u64 = client
        .query("SELECT count() FROM devices FINAL WHERE id = ? AND deleted = 0")
        .bind(stray.as_str())
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(registered, 1);

    // The KPI queries of docs/data-model.md run here; those over the last day find this scenario's rows.
    let readme = include_str!("../../docs/data-model.md");
    let block = readme
        .split("```sql")
        .nth(2)
        .and_then(|b| b.split("```").next())
        .expect("docs/data-model.md has a second sql block, the KPI queries");
    // docs/data-model.md shows exactly the queries the store's own test checks row by row.
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(
        squash(block),
        squash(ioc_store::ANALYST_QUERIES_SQL),
        "docs/data-model.md and store/sql/analyst_queries.sql differ"
    );
    let queries: Vec<String> = block
        .split(';')
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(|q| q.replace("ioc.", &format!("{database}.")))
        .collect();
    assert!(queries.len() >= 5, "{queries:?}");
    let mut rows = Vec::new();
    for q in &queries {
        let n: u64 = client
            .query(&format!("SELECT count() FROM ({q})"))
            .fetch_one()
            .await
            .unwrap_or_else(|e| panic!("data-model query fails: {e}\n{q}"));
        rows.push(n);
    }
    // Hourly AQI of the last day: this station's 4 hours. Offline devices by department: the
    // silent gauge's department at least.
    assert_eq!(rows[0], 4, "{rows:?}");
    assert!(rows[3] >= 1, "{rows:?}");

    pipeline.stop().await;
    reader.abort();
    common::drop_database(&database).await;
    std::fs::remove_dir_all(&dir).unwrap();
}
