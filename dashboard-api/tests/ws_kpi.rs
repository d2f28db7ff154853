//! KPI and alert channels on the live WebSocket feed, and the KPI history kept in memory
//! without ClickHouse, over a real socket.

mod common;

use std::time::Duration;

use common::{
    expect_snapshot, next_json, next_json_within, result, send_json, window_count, Server,
};
use ioc_dashboard_api::HttpConfig;
use ioc_schemas::{
    Alert, AlertEvent, AlertState, AqiBand, AqiKpi, AqiPeriod, Category, Congestion, Department,
    District, Kpi, Medium, Scope, Severity, TrafficKpi, Transition, WaterKpi,
};
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(300);

/// An hourly AQI row; `aqi` distinguishes rows.
fn air(station: &str, district: District, aqi: u32) -> Kpi {
    Kpi::Air(AqiKpi {
        station_id: station.to_owned(),
        district,
        period: AqiPeriod::Hour,
        window_start_ms: 1_795_827_600_000,
        window_size_ms: 3_600_000,
        pm25: Some(30.0),
        pm10: Some(50.0),
        o3: None,
        no2: None,
        so2: None,
        co: None,
        o3_8h: None,
        aqi_pm25: Some(aqi),
        aqi_pm10: Some(40),
        aqi_o3: None,
        aqi_no2: None,
        aqi_so2: None,
        aqi_co: None,
        aqi: Some(aqi),
        dominant: Some("pm25".to_owned()),
        band: Some(AqiBand::of(aqi)),
        colour: Some(AqiBand::of(aqi).colour().to_owned()),
        advice: None,
        coverage: 12,
    })
}

fn traffic(district: District) -> Kpi {
    Kpi::Traffic(TrafficKpi {
        scope: Scope::District,
        entity_id: district.slug().to_owned(),
        district,
        window_start_ms: 1_795_827_600_000,
        window_size_ms: 300_000,
        junctions: 12,
        volume_veh_h: 5400.0,
        occupancy_pct: 18.0,
        mean_speed_kmh: 31.0,
        queue_m: 45.0,
        level: Congestion::C,
        availability_pct: 99.5,
        free_flow_kmh: None,
        worst_level: None,
        covered_ms: None,
    })
}

/// A station's water parameters are separate rows: the snapshot holds each one.
#[tokio::test]
async fn the_snapshot_keeps_every_water_parameter_of_a_station() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig::default()).await?;
    let water = |parameter: &str, value: f64| {
        Kpi::Water(WaterKpi {
            station_id: "wq-han".to_owned(),
            district: District::HaiChau,
            medium: Medium::RiverWater,
            window_start_ms: 1_795_827_600_000,
            window_size_ms: 300_000,
            parameter: parameter.to_owned(),
            value,
            limit_min: None,
            limit_max: Some(1.0),
            standard: "QCVN 08-MT:2015 B1".to_owned(),
            exceeded: value > 1.0,
        })
    };
    server.state.feed().publish_kpi(water("nh4", 1.2));
    server.state.feed().publish_kpi(water("po4", 0.1));
    let mut ws = server.ws().await?;
    send_json(
        &mut ws,
        json!({"type": "subscribe", "channels": ["kpi.water"]}),
    )
    .await?;
    next_json(&mut ws).await?;
    let snapshot = expect_snapshot(&mut ws).await?;
    let mut parameters: Vec<&str> = snapshot["kpis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["parameter"].as_str().unwrap())
        .collect();
    parameters.sort_unstable();
    assert_eq!(parameters, ["nh4", "po4"], "{snapshot}");
    server.shutdown().await
}

/// Without ClickHouse, `/api/v1/kpis/{family}` answers the rows published since start-up,
/// newest version per row, filtered like the stored history, and says where they come from.
#[tokio::test]
async fn without_clickhouse_the_history_comes_from_memory_and_says_so() -> anyhow::Result<()> {
    let config = HttpConfig {
        history_memory_rows: 3,
        ..HttpConfig::default()
    };
    let server = Server::start(config).await?;
    let feed = server.state.feed().clone();
    let hour = 3_600_000;
    let at = |kpi: Kpi, start: u64| match kpi {
        Kpi::Air(mut a) => {
            a.window_start_ms = start;
            Kpi::Air(a)
        }
        other => other,
    };
    let t0 = 1_795_827_600_000;
    feed.publish_kpi(at(air("aq-1", District::CamLe, 40), t0));
    feed.publish_kpi(at(air("aq-2", District::HaiChau, 60), t0));
    // A newer version of the first row replaces it.
    feed.publish_kpi(at(air("aq-1", District::CamLe, 45), t0));
    feed.publish_kpi(at(air("aq-1", District::CamLe, 80), t0 + hour));
    feed.publish_kpi(traffic(District::HaiChau));

    let path = format!("/api/v1/kpis/air?from={t0}&to={}", t0 + 2 * hour);
    let answer = common::http_get(server.addr, &path).await?.json()?;
    assert_eq!(answer["source"], "memory", "{answer}");
    assert!(answer["note"].as_str().unwrap().contains("at most 3"));
    let rows: Vec<(String, u64)> = answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["station_id"].as_str().unwrap().to_owned(),
                r["aqi"].as_u64().unwrap(),
            )
        })
        .collect();
    let expect = |rows: &[(&str, u64)]| -> Vec<(String, u64)> {
        rows.iter().map(|(s, a)| ((*s).to_owned(), *a)).collect()
    };
    assert_eq!(rows, expect(&[("aq-1", 45), ("aq-2", 60), ("aq-1", 80)]));
    assert_eq!(answer["rows"][0]["family"], "air");

    let path = format!(
        "/api/v1/kpis/air?from={t0}&to={}&entity=aq-1&limit=1",
        t0 + 2 * hour
    );
    let answer = common::http_get(server.addr, &path).await?.json()?;
    assert_eq!(
        (answer["count"].as_u64(), &answer["truncated"]),
        (Some(1), &json!(true))
    );
    let path = format!(
        "/api/v1/kpis/air?from={t0}&to={}&district=cam_le",
        t0 + hour
    );
    assert_eq!(
        common::http_get(server.addr, &path).await?.json()?["count"],
        1
    );

    // A fourth air row evicts the oldest window's first row.
    feed.publish_kpi(at(air("aq-3", District::SonTra, 50), t0 + 2 * hour));
    let path = format!("/api/v1/kpis/air?from={t0}&to={}", t0 + 3 * hour);
    let answer = common::http_get(server.addr, &path).await?.json()?;
    assert_eq!(answer["count"], 3, "{answer}");
    assert_eq!(answer["rows"][0]["station_id"], "aq-2");
    let metrics = common::http_get(server.addr, "/metrics").await?.body;
    assert!(
        metrics.contains("ioc_api_history_memory_evicted_total 1"),
        "{metrics}"
    );

    // Traffic rows are their own family, with scope.
    let path = format!(
        "/api/v1/kpis/traffic?from={t0}&to={}&scope=district",
        t0 + hour
    );
    assert_eq!(
        common::http_get(server.addr, &path).await?.json()?["count"],
        1
    );
    server.shutdown().await
}

fn aqi_of(message: &Value) -> u64 {
    assert_eq!(message["type"], "kpi", "{message}");
    assert_eq!(message["family"], "air", "{message}");
    message["kpi"]["aqi"]
        .as_u64()
        .unwrap_or_else(|| panic!("no aqi in {message}"))
}

#[tokio::test]
async fn a_kpi_client_gets_its_family_and_district_and_a_default_client_only_windows(
) -> anyhow::Result<()> {
    let server = Server::start(HttpConfig::default()).await?;
    let feed = server.state.feed().clone();

    let mut kpi_client = server.ws().await?;
    send_json(
        &mut kpi_client,
        json!({"type": "subscribe", "channels": ["kpi.air"], "districts": ["son_tra"]}),
    )
    .await?;
    let ack = next_json(&mut kpi_client).await?;
    assert_eq!(
        ack,
        json!({"type": "subscribed", "filter": {"channels": ["kpi.air"], "kinds": [],
            "districts": ["son_tra"], "devices": [], "metrics": []}})
    );
    expect_snapshot(&mut kpi_client).await?;
    let mut default_client = server.ws().await?;
    send_json(&mut default_client, json!({"type": "subscribe"})).await?;
    assert_eq!(
        next_json(&mut default_client).await?["filter"]["channels"],
        json!(["windows"])
    );
    expect_snapshot(&mut default_client).await?;
    // Each holds only the receiver its channels need.
    assert_eq!(feed.subscriber_count(), 1);
    assert_eq!(feed.kpi_subscriber_count(), 1);

    feed.publish(result(District::SonTra, "tsc-son_tra-001", 1));
    feed.publish_kpi(air("aq-son_tra-01", District::SonTra, 61));
    feed.publish_kpi(air("aq-cam_le-01", District::CamLe, 62));
    feed.publish_kpi(traffic(District::SonTra));
    feed.publish_kpi(air("aq-son_tra-02", District::SonTra, 63));
    feed.publish(result(District::SonTra, "tsc-son_tra-001", 2));

    let first = next_json(&mut kpi_client).await?;
    assert_eq!(aqi_of(&first), 61);
    assert_eq!(first["kpi"]["station_id"], "aq-son_tra-01");
    assert_eq!(first["kpi"]["district"], "son_tra");
    assert_eq!(first["kpi"]["band"], "moderate");
    assert_eq!(aqi_of(&next_json(&mut kpi_client).await?), 63);
    assert_eq!(next_json_within(&mut kpi_client, QUIET).await?, None);

    assert_eq!(window_count(&next_json(&mut default_client).await?), 1);
    assert_eq!(window_count(&next_json(&mut default_client).await?), 2);
    assert_eq!(next_json_within(&mut default_client, QUIET).await?, None);

    let metrics = &server.state.metrics().ws_kpi_updates;
    assert_eq!(metrics.with_label_values(&["air"]).get(), 3);
    assert_eq!(metrics.with_label_values(&["traffic"]).get(), 1);
    assert_eq!(server.state.metrics().ws_updates.get(), 2);
    server.shutdown().await
}

#[tokio::test]
async fn channels_mix_change_and_are_checked() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig::default()).await?;
    let feed = server.state.feed().clone();
    let mut ws = server.ws().await?;

    send_json(
        &mut ws,
        json!({"type": "subscribe", "channels": ["kpi.noise"]}),
    )
    .await?;
    let err = next_json(&mut ws).await?;
    assert_eq!(err["type"], "error");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(message.contains("unknown channel `kpi.noise`"), "{message}");
    assert!(message.contains("kpi.air"), "{message}");
    send_json(&mut ws, json!({"type": "subscribe", "channels": []})).await?;
    assert!(next_json(&mut ws).await?["message"]
        .as_str()
        .unwrap_or_default()
        .contains("at least one channel"));
    assert_eq!(feed.subscriber_count() + feed.kpi_subscriber_count(), 0);

    // Windows and traffic KPIs of one entity.
    send_json(
        &mut ws,
        json!({"type": "subscribe", "channels": ["windows", "kpi.traffic"], "devices": ["hai_chau", "tsc-hai_chau-001"]}),
    )
    .await?;
    next_json(&mut ws).await?;
    expect_snapshot(&mut ws).await?;
    feed.publish_kpi(traffic(District::SonTra));
    feed.publish_kpi(traffic(District::HaiChau));
    let kpi = next_json(&mut ws).await?;
    assert_eq!(kpi["type"], "kpi");
    assert_eq!(kpi["family"], "traffic");
    assert_eq!(kpi["kpi"]["entity_id"], "hai_chau");
    feed.publish(result(District::HaiChau, "tsc-hai_chau-002", 7));
    feed.publish(result(District::HaiChau, "tsc-hai_chau-001", 8));
    assert_eq!(window_count(&next_json(&mut ws).await?), 8);

    // Down to windows only: the KPI receiver goes, the window one stays.
    send_json(&mut ws, json!({"type": "subscribe"})).await?;
    next_json(&mut ws).await?;
    expect_snapshot(&mut ws).await?;
    assert_eq!(feed.kpi_subscriber_count(), 0);
    assert_eq!(feed.subscriber_count(), 1);
    feed.publish_kpi(traffic(District::HaiChau));
    feed.publish(result(District::CamLe, "x", 9));
    assert_eq!(window_count(&next_json(&mut ws).await?), 9);
    assert_eq!(next_json_within(&mut ws, QUIET).await?, None);
    server.shutdown().await
}

// One thread: the publishes run before the connection's task can take any, so the client
// lags deterministically on the KPI feed (capacity 4: 26 of 30 skipped by the broadcast, the
// other 4 superseded by the snapshot that follows).
#[tokio::test(flavor = "current_thread")]
async fn a_client_lagging_on_kpis_is_told() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig {
        broadcast_capacity: 4,
        ws_buffer: 2,
        ..HttpConfig::default()
    })
    .await?;
    let feed = server.state.feed().clone();
    let mut ws = server.ws().await?;
    send_json(
        &mut ws,
        json!({"type": "subscribe", "channels": ["kpi.air"]}),
    )
    .await?;
    next_json(&mut ws).await?;
    expect_snapshot(&mut ws).await?;
    for aqi in 1..=30 {
        feed.publish_kpi(air("aq-son_tra-01", District::SonTra, aqi));
    }
    let lagged = next_json(&mut ws).await?;
    assert_eq!(
        lagged,
        json!({"type": "lagged", "feed": "kpi", "skipped": 30})
    );
    let snapshot = expect_snapshot(&mut ws).await?;
    let kpis = snapshot["kpis"].as_array().cloned().unwrap_or_default();
    assert_eq!(kpis.len(), 1, "{snapshot}");
    assert_eq!(kpis[0]["aqi"], 30, "the newest is kept");
    assert_eq!(server.state.metrics().ws_lagged.get(), 30);
    server.shutdown().await
}

fn alert_event(entity: &str, district: District, transition: Transition) -> AlertEvent {
    let alert = Alert {
        id: format!("crowd:{entity}:1"),
        rule_id: "crowd".into(),
        entity_id: entity.into(),
        district: Some(district),
        department: Department::Police,
        category: Category::PublicSafety,
        severity: Severity::Major,
        state: AlertState::Active,
        message: "crowd gathering".into(),
        value: Some(1.0),
        opened_ms: 1,
        breach_event_ms: 1,
        updated_ms: 1,
        breaches: 1,
        escalations: 0,
        acknowledged: None,
        resolved: None,
        comments: Vec::new(),
        suppressed: false,
    };
    AlertEvent {
        event_id: format!("{}:1", alert.id),
        alert,
        transition,
        at_ms: 1,
        actor: "system".into(),
        notify: true,
    }
}

#[tokio::test]
async fn an_alerts_client_gets_its_districts_alert_events_only() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig::default()).await?;
    let feed = server.state.feed().clone();
    let mut client = server.ws().await?;
    send_json(
        &mut client,
        json!({"type": "subscribe", "channels": ["alerts"], "districts": ["hai_chau"]}),
    )
    .await?;
    next_json(&mut client).await?;
    expect_snapshot(&mut client).await?;
    feed.publish_alert(alert_event(
        "cam-son_tra-001",
        District::SonTra,
        Transition::Opened,
    ));
    feed.publish_alert(alert_event(
        "cam-hai_chau-001",
        District::HaiChau,
        Transition::Opened,
    ));
    feed.publish_kpi(traffic(District::HaiChau));
    let message = next_json(&mut client).await?;
    assert_eq!(message["type"], "alert", "{message}");
    assert_eq!(message["event"]["transition"], "opened");
    assert_eq!(message["event"]["alert"]["entity_id"], "cam-hai_chau-001");
    assert_eq!(next_json_within(&mut client, QUIET).await?, None);
    server.shutdown().await
}
