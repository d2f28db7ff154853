//! iocd killed (SIGKILL) with a webhook delivery pending: after a restart the delivery goes out,
//! signed, with the same `webhook-id` it had before the kill, and only once.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use ioc_schemas::{
    fleet_json, Body, Department, Device, District, EventTime, Kind, Reading, SensorBody,
};

const SECRET_KEY: [u8; 32] = [9u8; 32];

/// Starts the department's receiver on `listener`, recording `(webhook-id, type)` of each
/// request whose signature verifies.
fn serve_receiver(listener: tokio::net::TcpListener, got: Arc<Mutex<Vec<(String, String)>>>) {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let got = Arc::clone(&got);
            async move {
                let header = |n: &str| headers[n].to_str().unwrap().to_owned();
                let (id, ts) = (header("webhook-id"), header("webhook-timestamp"));
                use hmac::{KeyInit, Mac};
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&SECRET_KEY).unwrap();
                mac.update(format!("{id}.{ts}.").as_bytes());
                mac.update(&body);
                let expected = format!(
                    "v1,{}",
                    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
                );
                if !header("webhook-signature")
                    .split(' ')
                    .any(|s| s == expected)
                {
                    return StatusCode::UNAUTHORIZED;
                }
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                got.lock()
                    .unwrap()
                    .push((id, json["type"].as_str().unwrap_or_default().to_owned()));
                StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_pending_when_iocd_is_killed_goes_out_after_the_restart() {
    let run = common::run_id("hookkill");
    let database = format!("ioc_test_{run}");
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let bridge = format!("bridge-{run}");
    std::fs::write(
        dir.join("fleet.json"),
        fleet_json(&[Device {
            id: bridge.clone(),
            kind: Kind::Sensor,
            name: "Cầu thử".into(),
            district: District::SonTra,
            lat: 16.07,
            lon: 108.23,
            department: Department::Construction,
            expected_interval_s: 10,
            free_flow_kmh: None,
            water_class: None,
            flood_alarm_m: None,
        }]),
    )
    .unwrap();
    // The receiver's port is reserved but nothing answers on it until after the kill.
    let hook_port = common::free_port();
    let http_port = common::free_port();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(SECRET_KEY)
    );
    let topic = format!("ioc/v1/sensor/son_tra/{bridge}");
    let config = format!(
        r#"
[mqtt]
client_id = "iocd-{run}"
topics = ["{topic}"]
[registry]
path = "{fleet}"
[clickhouse]
database = "{database}"
batch_max_wait_ms = 50
retention = {{ enabled = false }}
[http]
listen = "127.0.0.1:{http_port}"
[http.auth]
enabled = false
[alerts]
state_dir = "{state}"
[alerts.webhooks]
allow_private_urls = true
backoff_initial_ms = 200
backoff_max_ms = 400
request_timeout_ms = 1000
[[alerts.webhooks.subscriptions]]
id = "construction"
department = "construction"
url = "http://127.0.0.1:{hook_port}/hook"
secret = "{secret}"
"#,
        fleet = dir.join("fleet.json").display(),
        state = dir.join("state").display(),
    );
    let addr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let wait_healthy = || async move {
        common::wait_until("iocd healthy", Duration::from_secs(30), || async move {
            common::http(addr, "GET", "/healthz", "").await.0 == 200
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    let iocd = common::Iocd::start(&dir, "first", &config);
    wait_healthy().await;
    let now = ioc_dataflow::Clock::now_ms(&ioc_dataflow::SystemClock);
    let reading = Reading {
        message_id: format!("{run}-1"),
        device_id: bridge.clone(),
        event_time: EventTime(now - 2_000),
        body: Body::Sensor(SensorBody {
            metric: "wind_speed_ms".into(),
            value: 30.0,
            unit: "m/s".into(),
        }),
    };
    common::publish_all(
        &format!("pub-{run}"),
        vec![(topic.clone(), serde_json::to_vec(&reading).unwrap())],
    )
    .await;
    // The opening is in the outbox, failing against the silent port.
    let pending = Arc::new(Mutex::new(String::new()));
    common::wait_until("a pending delivery", Duration::from_secs(30), || {
        let pending = Arc::clone(&pending);
        async move {
            let (_, listed) =
                common::http(addr, "GET", "/api/v1/deliveries?state=pending", "").await;
            let first = &listed["deliveries"][0];
            match (first["webhook_id"].as_str(), first["attempts"].as_u64()) {
                (Some(id), Some(attempts)) if attempts >= 1 => {
                    *pending.lock().unwrap() = id.to_owned();
                    true
                }
                _ => false,
            }
        }
    })
    .await;
    let pending_id = pending.lock().unwrap().clone();
    iocd.kill();

    let got = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", hook_port))
        .await
        .unwrap();
    serve_receiver(listener, Arc::clone(&got));
    let iocd = common::Iocd::start(&dir, "second", &config);
    wait_healthy().await;
    common::wait_until(
        "the delivery after the restart",
        Duration::from_secs(30),
        || {
            let got = Arc::clone(&got);
            async move { !got.lock().unwrap().is_empty() }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let received = got.lock().unwrap().clone();
    assert_eq!(
        received,
        vec![(pending_id.clone(), "alert.opened".to_owned())],
        "delivered once, with the id it had before the kill"
    );
    let (_, delivered) = common::http(addr, "GET", "/api/v1/deliveries?state=delivered", "").await;
    assert_eq!(
        delivered["deliveries"][0]["webhook_id"],
        pending_id.as_str()
    );
    iocd.stop();
    common::drop_database(&database).await;
    std::fs::remove_dir_all(&dir).unwrap();
}
