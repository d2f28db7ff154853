//! WebSocket protocol 2 over a real socket: sequence numbers, snapshots, heartbeats and
//! slow clients resynchronised by `lagged` + `snapshot`.

mod common;

use std::time::Duration;

use common::{expect_snapshot, next_json, next_json_within, result, send_json, Server, Ws};
use ioc_dashboard_api::HttpConfig;
use ioc_schemas::District;
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(300);

/// Subscribes with `filter`, reads the ack and returns the snapshot after it.
async fn subscribe(ws: &mut Ws, filter: Value) -> anyhow::Result<Value> {
    send_json(ws, filter).await?;
    let ack = next_json(ws).await?;
    assert_eq!(ack["type"], "subscribed", "{ack}");
    expect_snapshot(ws).await
}

/// `(device, count)` of each window in a snapshot, in the order sent.
fn windows_of(snapshot: &Value) -> Vec<(String, u64, u64)> {
    snapshot["windows"]
        .as_array()
        .map(|w| {
            w.iter()
                .map(|r| {
                    (
                        r["device_id"].as_str().unwrap_or_default().to_owned(),
                        r["window_size_ms"].as_u64().unwrap_or_default(),
                        r["count"].as_u64().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn sequence_numbers_are_consecutive() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig::default()).await?;
    let feed = server.state.feed().clone();
    let mut ws = server.ws().await?;
    let snapshot = subscribe(&mut ws, json!({"type": "subscribe"})).await?;
    assert_eq!(snapshot["seq"], 1, "{snapshot}");
    for n in 1..=20 {
        feed.publish(result(District::HaiChau, "tsc-hai_chau-001", n));
        // Filtered out: takes no number.
        feed.publish(result(District::SonTra, "tsc-son_tra-001", n).with_metric("speed"));
    }
    let mut seqs = Vec::new();
    for _ in 0..40 {
        let Some(message) = next_json_within(&mut ws, QUIET).await? else {
            break;
        };
        assert_eq!(message["type"], "window", "{message}");
        seqs.push(message["seq"].as_u64().unwrap_or_default());
    }
    assert_eq!(seqs, (2..=41).collect::<Vec<u64>>());

    // A new subscribe continues the numbering; pong and subscribed carry none.
    send_json(&mut ws, json!({"type": "ping"})).await?;
    assert_eq!(next_json(&mut ws).await?, json!({"type": "pong"}));
    let snapshot = subscribe(
        &mut ws,
        json!({"type": "subscribe", "districts": ["hai_chau"]}),
    )
    .await?;
    assert_eq!(snapshot["seq"], 42);
    feed.publish(result(District::SonTra, "tsc-son_tra-001", 99));
    feed.publish(result(District::HaiChau, "tsc-hai_chau-001", 100));
    let next = next_json(&mut ws).await?;
    assert_eq!(
        (next["seq"].as_u64(), next["data"]["count"].as_u64()),
        (Some(43), Some(100))
    );
    server.shutdown().await
}

/// `result` with another metric.
trait WithMetric {
    fn with_metric(self, metric: &str) -> Self;
}

impl WithMetric for ioc_schemas::WindowResult {
    fn with_metric(mut self, metric: &str) -> Self {
        self.metric = metric.to_owned();
        self
    }
}

#[tokio::test]
async fn a_late_subscriber_gets_the_latest_value_per_key_filtered() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig::default()).await?;
    let feed = server.state.feed().clone();
    feed.publish(result(District::HaiChau, "tsc-hai_chau-001", 1));
    feed.publish(result(District::HaiChau, "tsc-hai_chau-001", 2));
    let mut five_minutes = result(District::HaiChau, "tsc-hai_chau-001", 3);
    five_minutes.window_size_ms = 300_000;
    feed.publish(five_minutes);
    feed.publish(result(District::SonTra, "tsc-son_tra-001", 4));
    feed.publish(result(District::HaiChau, "tsc-hai_chau-002", 5));
    // An older window of a key does not replace its newer one.
    let mut older = result(District::HaiChau, "tsc-hai_chau-002", 6);
    older.window_start_ms -= 60_000;
    feed.publish(older);

    let mut ws = server.ws().await?;
    let snapshot = subscribe(
        &mut ws,
        json!({"type": "subscribe", "districts": ["hai_chau"]}),
    )
    .await?;
    assert_eq!(snapshot["seq"], 1);
    assert_eq!(
        windows_of(&snapshot),
        [
            ("tsc-hai_chau-001".to_owned(), 60_000, 2),
            ("tsc-hai_chau-001".to_owned(), 300_000, 3),
            ("tsc-hai_chau-002".to_owned(), 60_000, 5),
        ]
    );
    // Only the subscribed channels are filled.
    assert_eq!(snapshot["kpis"], json!([]));
    assert_eq!(snapshot["alerts"], json!([]));
    assert_eq!(next_json_within(&mut ws, QUIET).await?, None);

    // A client on other channels gets no windows in its snapshot.
    let mut other = server.ws().await?;
    let snapshot = subscribe(
        &mut other,
        json!({"type": "subscribe", "channels": ["kpi.air", "alerts"]}),
    )
    .await?;
    assert_eq!(
        snapshot,
        json!({"type": "snapshot", "seq": 1, "windows": [], "kpis": [], "alerts": []})
    );
    server.shutdown().await
}

#[tokio::test]
async fn snapshot_keys_are_bounded() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig {
        snapshot_max_keys: 2,
        ..HttpConfig::default()
    })
    .await?;
    let feed = server.state.feed().clone();
    feed.publish(result(District::HaiChau, "a", 1));
    feed.publish(result(District::HaiChau, "b", 2));
    feed.publish(result(District::HaiChau, "c", 3));
    // Kept keys still update.
    feed.publish(result(District::HaiChau, "a", 4));
    let mut ws = server.ws().await?;
    let snapshot = subscribe(&mut ws, json!({"type": "subscribe"})).await?;
    assert_eq!(
        windows_of(&snapshot),
        [("a".to_owned(), 60_000, 4), ("b".to_owned(), 60_000, 2)]
    );
    assert_eq!(server.state.metrics().snapshot_keys_dropped.get(), 1);
    // The dropped key is still pushed live.
    feed.publish(result(District::HaiChau, "c", 5));
    assert_eq!(next_json(&mut ws).await?["data"]["device_id"], "c");
    server.shutdown().await
}

#[tokio::test]
async fn subscribed_clients_get_heartbeats() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig {
        ws_ping_interval_ms: 100,
        ..HttpConfig::default()
    })
    .await?;
    let mut ws = server.ws().await?;
    // Not subscribed: pings only (skipped by the helper), no heartbeat.
    assert_eq!(next_json_within(&mut ws, QUIET).await?, None);
    subscribe(&mut ws, json!({"type": "subscribe"})).await?;
    let mut seqs = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(700);
    while let Some(message) = next_json_within(
        &mut ws,
        until.saturating_duration_since(tokio::time::Instant::now()),
    )
    .await?
    {
        assert_eq!(message["type"], "heartbeat", "{message}");
        assert!(
            message["at_ms"].as_u64().unwrap_or_default() > 1_700_000_000_000,
            "{message}"
        );
        seqs.push(message["seq"].as_u64().unwrap_or_default());
    }
    assert!(seqs.len() >= 4, "{seqs:?}");
    let expected: Vec<u64> = (2..2 + seqs.len() as u64).collect();
    assert_eq!(seqs, expected);
    assert_eq!(server.state.metrics().ws_clients.get(), 1);
    server.shutdown().await
}

// One thread: while the test neither reads nor yields, 500 updates over 5 keys are published
// and the connection's task cannot take any, so the client lags far behind a broadcast of 8.
#[tokio::test(flavor = "current_thread")]
async fn a_slow_client_gets_lagged_then_a_snapshot_and_stays_connected() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig {
        broadcast_capacity: 8,
        ws_buffer: 2,
        ..HttpConfig::default()
    })
    .await?;
    let feed = server.state.feed().clone();
    let mut ws = server.ws().await?;
    subscribe(&mut ws, json!({"type": "subscribe"})).await?;

    for n in 1..=500u64 {
        let device = format!("tsc-cam_le-{:03}", n % 5);
        feed.publish(result(District::CamLe, &device, n));
    }
    // The client stays away a while longer.
    tokio::time::sleep(QUIET).await;

    let lagged = next_json(&mut ws).await?;
    assert_eq!(
        lagged,
        json!({"type": "lagged", "feed": "windows", "skipped": 500})
    );
    let snapshot = expect_snapshot(&mut ws).await?;
    assert_eq!(snapshot["seq"], 2);
    let mut windows = windows_of(&snapshot);
    windows.sort();
    assert_eq!(
        windows,
        (0..5)
            .map(|i| (
                format!("tsc-cam_le-{i:03}"),
                60_000,
                495 + if i == 0 { 5 } else { i }
            ))
            .collect::<Vec<_>>()
    );
    assert_eq!(server.state.metrics().ws_lagged.get(), 500);

    // Still connected, deltas resume with the next number.
    assert_eq!(server.state.metrics().ws_clients.get(), 1);
    feed.publish(result(District::CamLe, "tsc-cam_le-001", 501));
    let next = next_json(&mut ws).await?;
    assert_eq!(next["type"], "window");
    assert_eq!(
        (next["seq"].as_u64(), next["data"]["count"].as_u64()),
        (Some(3), Some(501))
    );
    assert_eq!(next_json_within(&mut ws, QUIET).await?, None);
    server.shutdown().await
}

#[tokio::test]
async fn dead_letters_are_pushed_listed_and_in_the_snapshot() -> anyhow::Result<()> {
    use ioc_schemas::{DeadLetter, RejectCode, Rejection, Transport};
    let server = Server::start(HttpConfig::default()).await?;
    let feed = server.state.feed().clone();
    let letter = |at: u64, code: RejectCode, payload: &[u8]| {
        DeadLetter::new(
            at,
            Transport::Mqtt,
            "ioc/v1/sensor/hai_chau/x".into(),
            payload,
            Rejection::new(code, format!("reason {at}")),
        )
    };
    feed.publish_dead_letter(&letter(1, RejectCode::MalformedJson, b"{not json"));
    let mut ws = server.ws().await?;
    let snapshot = subscribe(
        &mut ws,
        json!({"type": "subscribe", "channels": ["dead_letters"]}),
    )
    .await?;
    assert_eq!(
        snapshot["dead_letters"][0]["code"], "malformed_json",
        "{snapshot}"
    );
    assert_eq!(snapshot["dead_letters"][0]["first_bytes"], "{not json");
    feed.publish_dead_letter(&letter(2, RejectCode::InvalidUtf8, b"\xff\xfe"));
    let pushed = next_json(&mut ws).await?;
    assert_eq!(pushed["type"], "dead_letter", "{pushed}");
    assert_eq!(pushed["dead_letter"]["code"], "invalid_utf8");
    assert_eq!(pushed["dead_letter"]["first_bytes"], "\u{fffd}\u{fffd}");
    assert_eq!(pushed["dead_letter"]["payload_bytes"], 2);

    // Without ClickHouse the API answers from memory, newest first, and says so.
    let listed = common::http_get(server.addr, "/api/v1/dead-letters").await?;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let listed = listed.json()?;
    assert_eq!(listed["source"], "memory", "{listed}");
    assert!(listed["note"]
        .as_str()
        .is_some_and(|n| n.contains("no ClickHouse")));
    let codes: Vec<&str> = listed["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["invalid_utf8", "malformed_json"]);
    let one = common::http_get(server.addr, "/api/v1/dead-letters?code=malformed_json").await?;
    assert_eq!(one.json()?["count"], 1);
    let bad = common::http_get(server.addr, "/api/v1/dead-letters?transport=amqp").await?;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()?["error"]["field"], "transport");
    server.shutdown().await
}
