//! The live WebSocket feed over a real socket.

mod common;

use std::time::Duration;

use common::{
    expect_snapshot, next_json, next_json_within, result, send_json, window_count, Server,
};
use futures_util::{SinkExt, StreamExt};
use ioc_dashboard_api::HttpConfig;
use ioc_schemas::District;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn nothing_but_hello_until_subscribed() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig::default()).await?;
    let feed = server.state.feed().clone();
    let mut ws = server.ws().await?;
    assert_eq!(
        feed.subscriber_count(),
        0,
        "an idle client holds no receiver"
    );
    feed.publish(result(District::HaiChau, "tsc-hai_chau-001", 1));
    assert_eq!(next_json_within(&mut ws, QUIET).await?, None);

    send_json(&mut ws, json!({"type": "subscribe"})).await?;
    let ack = next_json(&mut ws).await?;
    assert_eq!(
        ack,
        json!({"type": "subscribed", "filter": {"channels": ["windows"], "kinds": [], "districts": [], "devices": [], "metrics": []}})
    );
    // Protocol 2: the latest value published before the subscribe comes in a snapshot.
    let snapshot = expect_snapshot(&mut ws).await?;
    assert_eq!(snapshot["windows"][0]["count"], 1, "{snapshot}");
    assert_eq!(feed.subscriber_count(), 1);
    feed.publish(result(District::HaiChau, "tsc-hai_chau-001", 2));
    assert_eq!(window_count(&next_json(&mut ws).await?), 2);
    server.shutdown().await
}

#[tokio::test]
async fn district_filter_delivers_exactly_the_matching_results() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig::default()).await?;
    let feed = server.state.feed().clone();
    let mut ws = server.ws().await?;
    send_json(
        &mut ws,
        json!({"type": "subscribe", "districts": ["hai_chau"]}),
    )
    .await?;
    let ack = next_json(&mut ws).await?;
    assert_eq!(ack["type"], "subscribed");
    assert_eq!(ack["filter"]["districts"], json!(["hai_chau"]));
    expect_snapshot(&mut ws).await?;

    feed.publish(result(District::HaiChau, "tsc-hai_chau-001", 1));
    feed.publish(result(District::SonTra, "tsc-son_tra-001", 2));
    feed.publish(result(District::HaiChau, "tsc-hai_chau-002", 3));
    let first = next_json(&mut ws).await?;
    assert_eq!(window_count(&first), 1);
    assert_eq!(first["data"]["district"], "hai_chau");
    assert_eq!(first["data"]["device_id"], "tsc-hai_chau-001");
    assert_eq!(first["data"]["kind"], "traffic_signal");
    assert_eq!(window_count(&next_json(&mut ws).await?), 3);
    // The sentinel comes next: the son_tra result was never sent.
    feed.publish(result(District::HaiChau, "tsc-hai_chau-001", 4));
    assert_eq!(window_count(&next_json(&mut ws).await?), 4);
    assert_eq!(next_json_within(&mut ws, QUIET).await?, None);
    server.shutdown().await
}

#[tokio::test]
async fn invalid_messages_get_an_error_and_the_socket_keeps_working() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig::default()).await?;
    let feed = server.state.feed().clone();
    let mut ws = server.ws().await?;

    ws.send(Message::text("{not json")).await?;
    let err = next_json(&mut ws).await?;
    assert_eq!(err["type"], "error");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("invalid message: "), "{message}");

    send_json(&mut ws, json!({"type": "subscribe", "kinds": ["bus"]})).await?;
    let err = next_json(&mut ws).await?;
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown variant `bus`"),
        "{err}"
    );
    send_json(
        &mut ws,
        json!({"type": "subscribe", "district": ["hai_chau"]}),
    )
    .await?;
    let err = next_json(&mut ws).await?;
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown field `district`"),
        "{err}"
    );
    send_json(&mut ws, json!({"type": "shout"})).await?;
    assert!(next_json(&mut ws).await?["message"]
        .as_str()
        .unwrap_or_default()
        .contains("unknown variant `shout`"));
    ws.send(Message::binary(vec![1u8, 2, 3])).await?;
    assert_eq!(
        next_json(&mut ws).await?,
        json!({"type": "error", "message": "binary messages are not supported: send json text"})
    );
    // Refused messages subscribed nothing.
    assert_eq!(feed.subscriber_count(), 0);

    send_json(&mut ws, json!({"type": "ping"})).await?;
    assert_eq!(next_json(&mut ws).await?, json!({"type": "pong"}));
    send_json(
        &mut ws,
        json!({"type": "subscribe", "devices": ["tsc-son_tra-009"]}),
    )
    .await?;
    assert_eq!(next_json(&mut ws).await?["type"], "subscribed");
    expect_snapshot(&mut ws).await?;
    feed.publish(result(District::SonTra, "tsc-son_tra-009", 5));
    assert_eq!(window_count(&next_json(&mut ws).await?), 5);
    server.shutdown().await
}

#[tokio::test]
async fn resubscribe_replaces_the_filter_and_unsubscribe_stops() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig::default()).await?;
    let feed = server.state.feed().clone();
    let mut ws = server.ws().await?;
    send_json(
        &mut ws,
        json!({"type": "subscribe", "districts": ["hai_chau"]}),
    )
    .await?;
    next_json(&mut ws).await?;
    expect_snapshot(&mut ws).await?;
    send_json(
        &mut ws,
        json!({"type": "subscribe", "districts": ["son_tra"], "metrics": ["vehicles"]}),
    )
    .await?;
    let ack = next_json(&mut ws).await?;
    assert_eq!(ack["filter"]["districts"], json!(["son_tra"]));
    assert_eq!(ack["filter"]["metrics"], json!(["vehicles"]));
    expect_snapshot(&mut ws).await?;
    feed.publish(result(District::HaiChau, "a", 1));
    feed.publish(result(District::SonTra, "b", 2));
    assert_eq!(window_count(&next_json(&mut ws).await?), 2);
    assert_eq!(next_json_within(&mut ws, QUIET).await?, None);

    send_json(&mut ws, json!({"type": "unsubscribe"})).await?;
    assert_eq!(
        next_json(&mut ws).await?,
        json!({"type": "subscribed", "filter": null})
    );
    assert_eq!(feed.subscriber_count(), 0);
    feed.publish(result(District::SonTra, "b", 3));
    assert_eq!(next_json_within(&mut ws, QUIET).await?, None);
    server.shutdown().await
}

// One thread: the 50 publishes run before the connection's task can take any of them, so
// the client lags deterministically (broadcast capacity 4: 46 skipped by the broadcast,
// and the 4 it still holds are superseded by the snapshot).
#[tokio::test(flavor = "current_thread")]
async fn a_lagging_client_is_told_and_keeps_receiving() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig {
        broadcast_capacity: 4,
        ws_buffer: 2,
        ..HttpConfig::default()
    })
    .await?;
    let feed = server.state.feed().clone();
    let mut ws = server.ws().await?;
    send_json(&mut ws, json!({"type": "subscribe"})).await?;
    next_json(&mut ws).await?;
    assert_eq!(expect_snapshot(&mut ws).await?["seq"], 1);

    for n in 1..=50 {
        feed.publish(result(District::CamLe, "tsc-cam_le-001", n));
    }
    assert_eq!(
        next_json(&mut ws).await?,
        json!({"type": "lagged", "feed": "windows", "skipped": 50})
    );
    let snapshot = expect_snapshot(&mut ws).await?;
    assert_eq!(snapshot["seq"], 2);
    let windows = snapshot["windows"].as_array().cloned().unwrap_or_default();
    assert_eq!(windows.len(), 1, "{snapshot}");
    assert_eq!(windows[0]["count"], 50, "the newest is kept");
    assert_eq!(server.state.metrics().ws_lagged.get(), 50);
    assert_eq!(server.state.metrics().ws_updates.get(), 50);

    feed.publish(result(District::CamLe, "tsc-cam_le-001", 51));
    let next = next_json(&mut ws).await?;
    assert_eq!(window_count(&next), 51);
    assert_eq!(next["seq"], 3);
    server.shutdown().await
}

#[tokio::test]
async fn clients_gauge_follows_connections() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig::default()).await?;
    let gauge = server.state.metrics().ws_clients.clone();
    let mut a = server.ws().await?;
    let b = server.ws().await?;
    assert_eq!(gauge.get(), 2);
    a.close(None).await?;
    // The server answers the close handshake.
    while let Some(frame) = a.next().await {
        if matches!(frame, Ok(Message::Close(_)) | Err(_)) {
            break;
        }
    }
    drop(b);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while gauge.get() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gauge stuck at {}",
            gauge.get()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.shutdown().await
}

#[tokio::test]
async fn shutdown_closes_websockets_with_going_away() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig::default()).await?;
    let mut ws = server.ws().await?;
    send_json(&mut ws, json!({"type": "subscribe"})).await?;
    next_json(&mut ws).await?;
    let gauge = server.state.metrics().ws_clients.clone();
    server.shutdown().await?;
    let frame = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await?;
    let frame = frame.expect("close frame has a code");
    assert_eq!(frame.code, CloseCode::Away);
    assert_eq!(frame.reason.as_str(), "server shutting down");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while gauge.get() != 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[tokio::test]
async fn pings_keep_live_clients_and_drop_silent_ones() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig {
        ws_ping_interval_ms: 100,
        ..HttpConfig::default()
    })
    .await?;
    let mut live = server.ws().await?;
    let mut silent = server.ws().await?;

    // The live client reads (so tungstenite answers each ping) for 8 intervals.
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(800);
    while let Ok(frame) = tokio::time::timeout_at(until, live.next()).await {
        match frame {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 4, "{pings} pings in 800 ms");
    send_json(&mut live, json!({"type": "ping"})).await?;
    assert_eq!(next_json(&mut live).await?, json!({"type": "pong"}));

    // The silent client never read, so never answered: the server dropped it (the live one
    // stays). Reading now, it may see the 1008 close frame or, if its automatic pong hits the
    // closed socket first, an error.
    let gauge = server.state.metrics().ws_clients.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while gauge.get() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} clients",
            gauge.get()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match silent.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return None,
            }
        }
    })
    .await?;
    assert!(matches!(end, None | Some(CloseCode::Policy)), "{end:?}");
    server.shutdown().await
}
