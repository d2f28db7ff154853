//! End to end against the real mosquitto (127.0.0.1:1883) and ClickHouse (127.0.0.1:8123):
//! readings published over MQTT, including malformed ones, duplicates and out-of-order ones,
//! must land in ClickHouse exactly once, bad input in dead letters with its reason, window
//! rows must equal an independent computation, and a WebSocket client must see the windows.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{count_in, EMPTY_WINDOW};
use futures_util::{SinkExt, StreamExt};
use ioc_schemas::{
    Approach, Body, ControlMode, EventTime, Reading, SensorBody, SignalState, TrafficSignalBody,
};
use iocd::Config;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MINUTE: u64 = 60_000;

fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}_{nanos}", std::process::id())
}

fn sensor(id: &str, device: &str, t: u64, value: f64) -> Reading {
    Reading {
        message_id: id.into(),
        device_id: device.into(),
        event_time: EventTime(t),
        body: Body::Sensor(SensorBody {
            metric: "water_level_m".into(),
            value,
            unit: "m".into(),
        }),
    }
}

fn junction(id: &str, device: &str, t: u64, vehicles: [u32; 2]) -> Reading {
    let approach = |name: &str, v: u32| Approach {
        approach: name.into(),
        vehicles: v,
        occupancy_pct: 20.0,
        mean_speed_kmh: 30.0,
        queue_length_m: 10.0,
    };
    Reading {
        message_id: id.into(),
        device_id: device.into(),
        event_time: EventTime(t),
        body: Body::TrafficSignal(TrafficSignalBody {
            junction_id: device.into(),
            state: SignalState::Green,
            mode: ControlMode::Adaptive,
            fault_code: None,
            approaches: vec![
                approach("north", vehicles[0]),
                approach("south", vehicles[1]),
            ],
        }),
    }
}

/// Publishes with QoS 1 and waits for every PUBACK.
async fn publish_all(client_id: &str, messages: Vec<(String, Vec<u8>)>) {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", 1883);
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = AsyncClient::new(options, messages.len() + 10);
    let expected = messages.len();
    let sender = tokio::spawn(async move {
        for (topic, payload) in messages {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
            // Keep arrival order = publish order, which the test relies on.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        client
    });
    let mut acked = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked < expected {
        assert!(
            Instant::now() < deadline,
            "only {acked}/{expected} publishes acknowledged"
        );
        match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("publisher connection failed: {e}"),
            Err(_) => {}
        }
    }
    let client = sender.await.unwrap();
    client.disconnect().await.unwrap();
    loop {
        match eventloop.poll().await {
            Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
            _ => {}
        }
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct WindowRow {
    device_id: String,
    metric: String,
    window_size_ms: u64,
    window_start_ms: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    mean: f64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct DeadLetterRow {
    source: String,
    code: String,
    reason: String,
    payload: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_readings_reach_clickhouse_windows_and_websocket() {
    let run = run_id();
    let database = format!("ioc_test_e2e_{run}");
    let gauge = format!("e2e-{run}-gauge");
    let tsc = format!("e2e-{run}-tsc");
    let gauge_topic = format!("ioc/v1/sensor/cam_le/{gauge}");
    let tsc_topic = format!("ioc/v1/traffic_signal/hai_chau/{tsc}");
    let bad_topic = format!("ioc/v1/sensor/cam_le/{gauge}-bad");
    let mismatch_topic = format!("ioc/v1/environment/cam_le/{gauge}");

    // A past, 5-minute aligned base time, so the windows are deterministic.
    let now = ioc_dataflow::Clock::now_ms(&ioc_dataflow::SystemClock);
    let base = now - now % (5 * MINUTE) - 60 * MINUTE;

    let mut config = Config::default();
    config.alerts.state_dir = std::env::temp_dir().join(format!("iocd-state-e2e-{run}"));
    config.mqtt.client_id = format!("iocd-e2e-{run}");
    // Only this test's topics, so other tests' traffic cannot move this pipeline's watermark.
    config.mqtt.topics = vec![
        gauge_topic.clone(),
        tsc_topic.clone(),
        bad_topic.clone(),
        mismatch_topic.clone(),
    ];
    config.dataflow.allowed_lateness_ms = 10_000;
    // The test publishes past event times; keep the wall clock from closing windows early.
    config.dataflow.idle_timeout_ms = 600_000;
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
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.http.auth.enabled = false;

    let listener = ioc_dashboard_api::bind(&config.http).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let pipeline = tokio::spawn(iocd::pipeline::run(config, listener, async move {
        let _ = stop_rx.await;
    }));

    // Healthy means: ClickHouse migrated, dataflow up, MQTT connected.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if http_get(addr, "/healthz").await.0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "pipeline never became healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The subscription follows the connection; give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    let subscribe = serde_json::json!({"type": "subscribe", "devices": [gauge.clone()]});
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        subscribe.to_string(),
    ))
    .await
    .unwrap();

    // (message id, event offset in s, value, arrival slot). Arrival follows event time except
    // where noted: one watermark covers all of the pipeline's sources.
    let gauge_readings: &[(&str, u64, f64, f64)] = &[
        ("g1", 5, 1.0, 5.0),
        ("g2", 20, 2.0, 20.0),
        ("g3", 55, 3.0, 55.0),
        ("g4", 50, 4.0, 55.5), // 5 s out of order: within the lateness
        ("g5", 70, 5.0, 70.0),
        ("g6", 125, 6.0, 125.0),
        ("g7", 100, 7.0, 125.5), // 25 s behind the newest: late, stored raw but not windowed
        ("g8", 190, 8.0, 190.0),
        ("g9", 299, 9.0, 299.0),
        // Moves event time past 5:00, so the 4:00 and 0:00 windows go out provisionally ...
        ("g10", 305, 10.0, 305.0),
        // ... and this one, 7 s behind but within the lateness, corrects them.
        ("g11", 298, 11.0, 305.5),
    ];
    let json = |r: &Reading| serde_json::to_vec(r).unwrap();
    let mut slots: Vec<(f64, String, Vec<u8>)> = Vec::new();
    for (id, offset, value, slot) in gauge_readings {
        let r = sensor(&format!("{run}-{id}"), &gauge, base + offset * 1000, *value);
        slots.push((*slot, gauge_topic.clone(), json(&r)));
        if *id == "g2" {
            // An exact duplicate, right behind the original.
            slots.push((slot + 0.1, gauge_topic.clone(), json(&r)));
        }
    }
    for (i, (offset, vehicles)) in [(10u64, [10, 5]), (40, [7, 8]), (80, [3, 1])]
        .iter()
        .enumerate()
    {
        let r = junction(
            &format!("{run}-t{i}"),
            &tsc,
            base + offset * 1000,
            *vehicles,
        );
        slots.push((*offset as f64, tsc_topic.clone(), json(&r)));
    }
    slots.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Phases: everything up to g10, then g11 once the provisional results are out, then the
    // rest. (Sent together, they could reach the dataflow in one batch, with no provisional
    // result to correct.)
    let (first, correction): (Vec<_>, Vec<_>) =
        slots.into_iter().partition(|(slot, ..)| *slot < 305.2);
    let first: Vec<(String, Vec<u8>)> = first.into_iter().map(|(_, t, p)| (t, p)).collect();
    let correction: Vec<(String, Vec<u8>)> =
        correction.into_iter().map(|(_, t, p)| (t, p)).collect();
    let mut messages: Vec<(String, Vec<u8>)> = Vec::new();
    // Malformed input, each with the code it must be kept under.
    let good = String::from_utf8(json(&sensor(
        &format!("{run}-x"),
        &format!("{gauge}-bad"),
        base,
        1.0,
    )))
    .unwrap();
    let bad: Vec<(String, Vec<u8>, &str)> = vec![
        (bad_topic.clone(), b"{not json".to_vec(), "malformed_json"),
        (
            bad_topic.clone(),
            good.replace("\"message_id\"", "\"msg_id\"").into_bytes(),
            "unknown_field",
        ),
        (
            bad_topic.clone(),
            good.replace("\"value\":1.0", "\"value\":\"high\"")
                .into_bytes(),
            "wrong_type",
        ),
        (
            bad_topic.clone(),
            good.replace("\"kind\":\"sensor\"", "\"kind\":\"radar\"")
                .into_bytes(),
            "unknown_kind",
        ),
        (
            bad_topic.clone(),
            good.replace(&base.to_string(), &(now + 86_400_000).to_string())
                .into_bytes(),
            "future_event_time",
        ),
        (
            bad_topic.clone(),
            good.replace("water_level_m", "Water Level").into_bytes(),
            "out_of_range",
        ),
        (bad_topic.clone(), vec![0xc3, 0x28, 0xff], "invalid_utf8"),
        (
            mismatch_topic.clone(),
            json(&sensor(&format!("{run}-y"), &gauge, base, 1.0)),
            "source_mismatch",
        ),
    ];
    for (topic, payload, _) in &bad {
        messages.push((topic.clone(), payload.clone()));
    }
    // Far enough ahead to close every window above.
    let closer = sensor(&format!("{run}-closer"), &gauge, base + 10 * MINUTE, 0.0);
    messages.push((gauge_topic.clone(), json(&closer)));

    // Every window result pushed to the WebSocket client, in order.
    let pushed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let reader = tokio::spawn({
        let pushed = std::sync::Arc::clone(&pushed);
        async move {
            while let Some(Ok(message)) = ws.next().await {
                let Ok(text) = message.into_text() else {
                    continue;
                };
                // Control frames (pings, close) carry no JSON.
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                if value["type"] == "window" {
                    pushed.lock().unwrap().push(value["data"].clone());
                }
            }
        }
    });
    let four_minute_versions = |pushed: &[serde_json::Value]| -> Vec<(u64, u64, bool)> {
        pushed
            .iter()
            .filter(|d| d["window_size_ms"] == MINUTE && d["window_start_ms"] == base + 4 * MINUTE)
            .map(|d| {
                (
                    d["version"].as_u64().unwrap(),
                    d["count"].as_u64().unwrap(),
                    d["is_final"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    let wait_pushed = |n: usize| {
        let pushed = std::sync::Arc::clone(&pushed);
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                // Not in the loop condition: the guard would live across the sleep.
                let seen = four_minute_versions(&pushed.lock().unwrap()).len();
                if seen >= n {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the 4:00 window's result {n} never came"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    publish_all(&format!("e2e-pub-{run}"), first).await;
    wait_pushed(1).await;
    publish_all(&format!("e2e-pub2-{run}"), correction).await;
    wait_pushed(2).await;
    publish_all(&format!("e2e-pub3-{run}"), messages).await;

    // Independent computation of the gauge's windows: on-time readings only, each once.
    let on_time: Vec<(u64, f64)> = gauge_readings
        .iter()
        .filter(|(id, ..)| *id != "g7")
        .map(|(_, o, v, _)| (base + o * 1000, *v))
        .collect();
    let mut expected: BTreeMap<(u64, u64), (u64, f64, f64, f64)> = BTreeMap::new();
    // The windows of the first five minutes: those the closing reading finalises.
    for (t, v) in on_time.iter().filter(|(t, _)| *t < base + 5 * MINUTE) {
        for size in [MINUTE, 5 * MINUTE] {
            let e = expected.entry((size, t - t % size)).or_insert(EMPTY_WINDOW);
            count_in(e, *v);
        }
    }

    let client = clickhouse::Client::default()
        .with_url("http://127.0.0.1:8123")
        .with_database(&database)
        .with_validation(false)
        .with_setting("wait_end_of_query", "1");
    // The gauge's, plus the junction's 4 metrics in two 1-minute windows and one 5-minute window.
    let expected_windows = expected.len() + 4 * 3;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let readings: u64 = client
            .query("SELECT count() FROM readings WHERE device_id IN (?, ?)")
            .bind(&gauge)
            .bind(&tsc)
            .fetch_one()
            .await
            .unwrap_or(0);
        let letters: u64 = client
            .query("SELECT count() FROM dead_letters")
            .fetch_one()
            .await
            .unwrap_or(0);
        let windows: u64 = client
            .query("SELECT count() FROM window_results WHERE device_id IN (?, ?) AND window_start_ms < ?")
            .bind(&gauge)
            .bind(&tsc)
            .bind(base + 10 * MINUTE)
            .fetch_one()
            .await
            .unwrap_or(0);
        // 11 gauge readings + the closer + 3 junction readings.
        if readings >= 15 && letters >= bad.len() as u64 && windows >= expected_windows as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: {readings} readings, {letters} dead letters, {windows} windows"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every valid reading exactly once (no FINAL: the pipeline dropped the duplicate itself).
    let ids: Vec<(String, u64, u8)> = client
        .query("SELECT message_id, count(), max(late) FROM readings WHERE device_id IN (?, ?) GROUP BY message_id ORDER BY message_id")
        .bind(&gauge)
        .bind(&tsc)
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(ids.len(), 15, "{ids:?}");
    for (id, count, late) in &ids {
        assert_eq!(*count, 1, "{id} stored {count} times");
        assert_eq!(*late == 1, id.ends_with("-g7"), "late flag of {id}");
    }

    // The late reading is in the late ledger with the watermark it missed: the newest event
    // time then was g6's (125 s), less 10 s of lateness.
    let ledger: Vec<(String, u64, u64, u64)> = client
        .query(
            "SELECT message_id, event_time_ms, watermark_ms, late_by_ms FROM late_readings FINAL",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        ledger,
        vec![(format!("{run}-g7"), base + 100_000, base + 115_000, 15_000)]
    );

    // Every malformed message kept with its reason.
    let mut letters: Vec<DeadLetterRow> = client
        .query("SELECT source, toString(code) AS code, reason, payload FROM dead_letters")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(letters.len(), bad.len(), "{letters:?}");
    // Several may arrive in the same millisecond: match them by code, one of each.
    letters.sort_by(|a, b| a.code.cmp(&b.code));
    let mut bad = bad.clone();
    bad.sort_by_key(|(_, _, code)| *code);
    for ((topic, payload, code), row) in bad.iter().zip(&letters) {
        assert_eq!(&row.source, topic);
        assert_eq!(row.code, *code, "reason: {}", row.reason);
        assert!(!row.reason.is_empty());
        assert_eq!(&row.payload, payload, "payload kept byte for byte");
    }
    // The API lists the same letters from ClickHouse, newest first, with their first bytes.
    let (status, body) = http_get(addr, "/api/v1/dead-letters?limit=1000").await;
    assert_eq!(status, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listed["source"], "clickhouse", "{listed}");
    assert_eq!(listed["count"], bad.len(), "{listed}");
    let mut api: Vec<(String, String, String)> = listed["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["code"].as_str().unwrap().to_owned(),
                l["source"].as_str().unwrap().to_owned(),
                l["first_bytes"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    api.sort();
    let expected_api: Vec<(String, String, String)> = bad
        .iter()
        .map(|(topic, payload, code)| {
            let shown = &payload[..payload.len().min(256)];
            (
                (*code).to_owned(),
                topic.clone(),
                String::from_utf8_lossy(shown).into_owned(),
            )
        })
        .collect();
    assert_eq!(api, expected_api);

    // Window rows equal the independent computation.
    let rows: Vec<WindowRow> = client
        .query("SELECT device_id, metric, window_size_ms, window_start_ms, count, sum, min, max, mean FROM window_results FINAL WHERE device_id = ? AND window_start_ms < ? ORDER BY window_size_ms, window_start_ms")
        .bind(&gauge)
        .bind(base + 10 * MINUTE - 5 * MINUTE)
        .fetch_all()
        .await
        .unwrap();
    let got: BTreeMap<(u64, u64), (u64, f64, f64, f64)> = rows
        .iter()
        .map(|r| {
            assert_eq!(r.device_id, gauge);
            assert_eq!(r.metric, "water_level_m");
            assert!((r.mean - r.sum / r.count as f64).abs() < 1e-9);
            (
                (r.window_size_ms, r.window_start_ms),
                (r.count, r.sum, r.min, r.max),
            )
        })
        .collect();
    assert_eq!(got, expected);

    // The junction's vehicles are summed over approaches: 15 + 15 in the first minute.
    let vehicles: Vec<(u64, u64, f64)> = client
        .query("SELECT window_start_ms, count, sum FROM window_results FINAL WHERE device_id = ? AND metric = 'vehicles' AND window_size_ms = 60000 AND window_start_ms < ? ORDER BY window_start_ms")
        .bind(&tsc)
        .bind(base + 5 * MINUTE)
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(vehicles, vec![(base, 2, 30.0), (base + MINUTE, 1, 4.0)]);

    // The WebSocket client saw every version: the 4:00 window provisionally with g9 alone,
    // corrected with g11, then final; and the final result of every window.
    let deadline = Instant::now() + Duration::from_secs(10);
    let finals = loop {
        let finals: BTreeMap<(u64, u64), (u64, f64, f64, f64)> = pushed
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d["is_final"] == true)
            .map(|d| {
                assert_eq!(d["device_id"], gauge.as_str());
                (
                    (
                        d["window_size_ms"].as_u64().unwrap(),
                        d["window_start_ms"].as_u64().unwrap(),
                    ),
                    (
                        d["count"].as_u64().unwrap(),
                        d["sum"].as_f64().unwrap(),
                        d["min"].as_f64().unwrap(),
                        d["max"].as_f64().unwrap(),
                    ),
                )
            })
            .filter(|((_, start), _)| *start < base + 5 * MINUTE)
            .collect();
        if finals.len() >= expected.len() || Instant::now() > deadline {
            break finals;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let versions_of_4m = four_minute_versions(&pushed.lock().unwrap());
    reader.abort();
    assert_eq!(finals, expected, "final windows pushed over the WebSocket");
    assert_eq!(
        versions_of_4m,
        vec![(2, 1, false), (4, 2, false), (5, 2, true)],
        "provisional, corrected, final"
    );
    // ClickHouse keeps the final version of the corrected window.
    let kept: (u32, u8, u64) = client
        .query("SELECT version, is_final, count FROM window_results FINAL WHERE device_id = ? AND window_size_ms = 60000 AND window_start_ms = ?")
        .bind(&gauge)
        .bind(base + 4 * MINUTE)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(kept, (5, 1, 2));

    // The analyst queries of docs/data-model.md run on this ClickHouse against this data.
    let readme = include_str!("../../docs/data-model.md");
    let block = readme
        .split("```sql")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("docs/data-model.md has an sql block");
    let queries: Vec<String> = block
        .split(';')
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(|q| q.replace("ioc.", &format!("{database}.")))
        .collect();
    // Rows each returns here: junction vehicles per hour (the test's hour, perhaps split over
    // two), dead letters by reason (8 codes), late readings (1 group), PM2.5 (no air data).
    let mut rows = Vec::new();
    for q in &queries {
        let n: u64 = client
            .query(&format!("SELECT count() FROM ({q})"))
            .fetch_one()
            .await
            .unwrap_or_else(|e| panic!("data-model query fails: {e}\n{q}"));
        rows.push(n);
    }
    assert_eq!(rows.len(), 4, "{queries:?}");
    assert!((1..=2).contains(&rows[0]), "{rows:?}");
    assert_eq!(rows[1..], [8, 1, 0], "{rows:?}");

    let (status, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("ioc_ingest_rejected_total"), "{metrics}");
    assert!(metrics.contains("ioc_dataflow_late_readings_total"));

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(30), pipeline)
        .await
        .expect("pipeline stops")
        .unwrap()
        .unwrap();
    client
        .query(&format!("DROP DATABASE IF EXISTS {database}"))
        .execute()
        .await
        .unwrap();
}
