//! Alerts end to end, against the real mosquitto and ClickHouse and a real webhook receiver (an
//! axum server on port 0): a bridge's wind breaks the default rule, the construction
//! department's subscription receives a signed notification, an operator acknowledges the
//! alert through the API, a rule added through the API takes effect at once, every transition
//! is in ClickHouse, and after a restart the acknowledgement, the added rule and the open alert
//! are still there — a new breach updates it rather than opening a duplicate.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use ioc_alerts::webhooks::SubscriptionSpec;
use ioc_schemas::{
    fleet_json, Body, Department, Device, District, EventTime, Kind, Reading, SensorBody,
};
use iocd::Config;

/// One webhook request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    body: serde_json::Value,
}

/// A receiver that records every request whose signature verifies, and counts the others.
async fn receiver(secret: String) -> (String, Arc<Mutex<Vec<Received>>>, Arc<Mutex<u32>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let bad = Arc::new(Mutex::new(0u32));
    let (got_in, bad_in) = (Arc::clone(&got), Arc::clone(&bad));
    let app = axum::Router::new().route(
        "/hooks/construction",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (got, bad, secret) = (Arc::clone(&got_in), Arc::clone(&bad_in), secret.clone());
            async move {
                if !common::webhooks::signature_ok(&secret, &headers, &body) {
                    *bad.lock().unwrap() += 1;
                    return StatusCode::UNAUTHORIZED;
                }
                got.lock().unwrap().push(Received {
                    id: headers["webhook-id"].to_str().unwrap().to_owned(),
                    body: serde_json::from_slice(&body).unwrap(),
                });
                StatusCode::NO_CONTENT
            }
        }),
    );
    let url = common::webhooks::serve_construction_hooks(app).await;
    (url, got, bad)
}

/// The next WebSocket message of type `kind`, within 10 s.
async fn next_of_type<S>(ws: &mut S, kind: &str) -> serde_json::Value
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let message = ws.next().await.unwrap().unwrap();
            let Ok(text) = message.into_text() else {
                continue;
            };
            let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if value["type"] == kind {
                return value;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} on the websocket"))
}

fn sensor(run: &str, device: &str, t: u64, metric: &str, value: f64) -> Vec<u8> {
    serde_json::to_vec(&Reading {
        message_id: format!("{run}-{device}-{t}"),
        device_id: device.into(),
        event_time: EventTime(t),
        body: Body::Sensor(SensorBody {
            metric: metric.into(),
            value,
            unit: "m/s".into(),
        }),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_is_notified_acknowledged_stored_and_survives_a_restart() {
    let run = common::run_id("alerts");
    let database = format!("ioc_test_{run}");
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let bridge = format!("bridge-{run}");
    let gauge = format!("rain-{run}");
    let device = |id: &str, department| Device {
        id: id.into(),
        kind: Kind::Sensor,
        name: format!("Thiết bị thử {id}"),
        district: District::HaiChau,
        lat: 16.06,
        lon: 108.22,
        department,
        expected_interval_s: 60,
        free_flow_kmh: None,
        water_class: None,
        flood_alarm_m: None,
    };
    let fleet = dir.join("fleet.json");
    std::fs::write(
        &fleet,
        fleet_json(&[
            device(&bridge, Department::Construction),
            device(&gauge, Department::DisasterPrevention),
        ]),
    )
    .unwrap();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    );
    let (url, received, bad_signatures) = receiver(secret.clone()).await;
    let bridge_topic = format!("ioc/v1/sensor/hai_chau/{bridge}");
    let gauge_topic = format!("ioc/v1/sensor/hai_chau/{gauge}");

    let config = || {
        let mut config = Config::default();
        config.mqtt.client_id = format!("iocd-{run}");
        config.mqtt.topics = vec![bridge_topic.clone(), gauge_topic.clone()];
        config.registry.path = Some(fleet.clone());
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
        config.alerts.state_dir = dir.join("state");
        config.alerts.webhooks.allow_private_urls = true;
        config.alerts.webhooks.subscriptions = vec![SubscriptionSpec {
            id: "construction".into(),
            department: Department::Construction,
            url: url.clone(),
            secret: Some(secret.clone()),
            filter: serde_json::from_value(serde_json::json!({"categories": ["structure"]}))
                .unwrap(),
            enabled: true,
        }];
        config
    };
    let now = ioc_dataflow::Clock::now_ms(&ioc_dataflow::SystemClock);
    let pipeline = common::Pipeline::start(config()).await;
    let addr = pipeline.addr;

    // A live view of alerts, as an operator's page would have.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    let subscribe = serde_json::json!({"type": "subscribe", "channels": ["alerts"]});
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        subscribe.to_string(),
    ))
    .await
    .unwrap();

    // 31 m/s on the bridge: over the default rule's 25.
    common::publish_all(
        &format!("pub-{run}"),
        vec![(
            bridge_topic.clone(),
            sensor(&run, &bridge, now - 5_000, "wind_speed_ms", 31.0),
        )],
    )
    .await;
    common::wait_until("the construction webhook", Duration::from_secs(30), || {
        let received = Arc::clone(&received);
        async move { !received.lock().unwrap().is_empty() }
    })
    .await;
    let first = received.lock().unwrap()[0].clone();
    assert_eq!(first.body["type"], "alert.opened", "{}", first.body);
    let alert = &first.body["data"]["alert"];
    assert_eq!(alert["rule_id"], "bridge_wind_high");
    assert_eq!(alert["entity_id"], bridge.as_str());
    assert_eq!(alert["department"], "construction");
    assert_eq!(alert["value"], 31.0);
    let alert_id = alert["id"].as_str().unwrap().to_owned();

    // The WebSocket pushed it too.
    let pushed = next_of_type(&mut ws, "alert").await;
    assert_eq!(pushed["event"]["alert"]["id"], alert_id.as_str());

    // Listed, then acknowledged by an operator.
    let (status, listed) =
        common::http(addr, "GET", "/api/v1/alerts?rule=bridge_wind_high", "").await;
    assert_eq!(status, 200);
    assert_eq!(listed["count"], 1, "{listed}");
    let (status, acked) = common::http(
        addr,
        "POST",
        &format!("/api/v1/alerts/{alert_id}/acknowledge"),
        r#"{"actor":"operator-nguyen"}"#,
    )
    .await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["alert"]["state"], "acknowledged");
    let (status, refused) = common::http(
        addr,
        "POST",
        "/api/v1/alerts/no-such-alert/resolve",
        r#"{"actor":"operator-nguyen"}"#,
    )
    .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // A rule added through the API applies to the next reading: rain over 40 mm in one report.
    let rule = serde_json::json!({
        "id": "cloudburst", "name": "Mưa rất lớn", "severity": "major", "category": "flood",
        "department": "disaster_prevention",
        "source": {"reading": "rainfall_mm", "kind": "sensor"},
        "condition": {"type": "threshold", "above": 40.0},
        "message": "{value} mm tại {entity}"
    });
    let (status, _) = common::http(addr, "POST", "/api/v1/rules", &rule.to_string()).await;
    assert_eq!(status, 201);
    let (status, invalid) = common::http(
        addr,
        "POST",
        "/api/v1/rules",
        &serde_json::json!({"id": "broken", "name": "x", "severity": "major", "category": "flood",
            "department": "disaster_prevention", "condition": {"type": "threshold", "above": 1},
            "message": "x"})
        .to_string(),
    )
    .await;
    assert_eq!(status, 400, "a threshold needs a source: {invalid}");
    common::publish_all(
        &format!("pub-{run}"),
        vec![(
            gauge_topic.clone(),
            sensor(&run, &gauge, now - 4_000, "rainfall_mm", 55.0),
        )],
    )
    .await;
    common::wait_until("the cloudburst alert", Duration::from_secs(30), || async {
        let (_, listed) = common::http(addr, "GET", "/api/v1/alerts?rule=cloudburst", "").await;
        listed["count"] == 1
    })
    .await;

    // Every transition is in ClickHouse, and the delivery attempt too.
    let client = common::clickhouse("http://127.0.0.1:8123", &database);
    common::wait_until(
        "alert events and attempts in clickhouse",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            async move {
                let events: u64 = client
                    .query(
                        "SELECT count() FROM alert_events FINAL WHERE rule_id = 'bridge_wind_high'",
                    )
                    .fetch_one()
                    .await
                    .unwrap_or(0);
                let attempts: u64 = client
                    .query("SELECT count() FROM webhook_attempts WHERE outcome = 'delivered'")
                    .fetch_one()
                    .await
                    .unwrap_or(0);
                events >= 2 && attempts >= 1
            }
        },
    )
    .await;
    let transitions: Vec<String> = client
        .query("SELECT toString(transition) FROM alert_events FINAL WHERE alert_id = ? ORDER BY at_ms, event_id")
        .bind(alert_id.as_str())
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(transitions, ["opened", "acknowledged"]);
    pipeline.stop().await;

    // Restarted: the acknowledgement, the API's rule and the open alert are back; a new
    // breach of the bridge updates the same alert.
    let pipeline = common::Pipeline::start(config()).await;
    let addr = pipeline.addr;
    let (_, alert) = common::http(addr, "GET", &format!("/api/v1/alerts/{alert_id}"), "").await;
    assert_eq!(alert["state"], "acknowledged", "{alert}");
    assert_eq!(alert["acknowledged"][0], "operator-nguyen");
    // A page opened now starts from a snapshot that holds the alert the last run left open.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        subscribe.to_string(),
    ))
    .await
    .unwrap();
    let snapshot = next_of_type(&mut ws, "snapshot").await;
    let restored: Vec<_> = snapshot["alerts"]
        .as_array()
        .expect("alerts in the snapshot")
        .iter()
        .filter(|e| e["alert"]["id"] == alert_id.as_str())
        .collect();
    assert_eq!(restored.len(), 1, "{snapshot}");
    assert_eq!(restored[0]["transition"], "acknowledged", "{snapshot}");
    assert_eq!(restored[0]["alert"]["state"], "acknowledged");
    drop(ws);
    let (status, _) = common::http(addr, "GET", "/api/v1/rules/cloudburst", "").await;
    assert_eq!(status, 200);
    common::publish_all(
        &format!("pub-{run}"),
        vec![(
            bridge_topic.clone(),
            sensor(&run, &bridge, now - 3_000, "wind_speed_ms", 33.0),
        )],
    )
    .await;
    common::wait_until("the repeat breach", Duration::from_secs(30), || async {
        let (_, alert) = common::http(addr, "GET", &format!("/api/v1/alerts/{alert_id}"), "").await;
        alert["breaches"] == 2
    })
    .await;
    let (_, listed) = common::http(addr, "GET", "/api/v1/alerts?rule=bridge_wind_high", "").await;
    assert_eq!(listed["count"], 1, "no duplicate: {listed}");
    pipeline.stop().await;

    // One notification (the opening); every request the receiver got was signed correctly.
    let opened = received
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.body["type"] == "alert.opened")
        .count();
    assert_eq!(opened, 1);
    assert!(received
        .lock()
        .unwrap()
        .iter()
        .all(|r| r.id.starts_with("msg_")));
    assert_eq!(*bad_signatures.lock().unwrap(), 0);
    common::drop_database(&database).await;
    std::fs::remove_dir_all(&dir).unwrap();
}
