//! The device registry REST API over a real socket, with a fake pipeline on the other end
//! of the registry channel.

mod common;

use std::time::Duration;

use common::{http_get, http_json, http_request, Response, Server};
use ioc_dashboard_api::{ApiState, HttpConfig, RegistryRequest};
use ioc_schemas::{
    parse_fleet, Department, Device, DeviceChange, DeviceStatus, District, HealthKpi, Kind, Kpi,
    Scope,
};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

fn station(id: &str, district: District) -> Device {
    Device {
        id: id.to_owned(),
        kind: Kind::Environment,
        name: "Trạm quan trắc không khí Sơn Trà".to_owned(),
        district,
        lat: 16.1,
        lon: 108.25,
        department: Department::Environment,
        expected_interval_s: 60,
        free_flow_kmh: None,
        water_class: None,
        flood_alarm_m: None,
    }
}

fn junction(id: &str) -> Device {
    Device {
        id: id.to_owned(),
        kind: Kind::TrafficSignal,
        name: "Nút giao Hà Huy Tập – Huỳnh Ngọc Huệ".to_owned(),
        district: District::ThanhKhe,
        lat: 16.07,
        lon: 108.19,
        department: Department::Transport,
        expected_interval_s: 30,
        free_flow_kmh: Some(40.0),
        water_class: None,
        flood_alarm_m: None,
    }
}

fn body(device: &Device) -> Value {
    serde_json::to_value(device).expect("a device is json")
}

/// Asserts a JSON error answer and returns its `error` object.
fn error(response: &Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{response:?}"
    );
    let body = response.json().expect("error body is json");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body["error"].clone()
}

/// A pipeline that answers every request with `answer` and reports the changes it got.
fn fake_pipeline(
    capacity: usize,
    answer: Result<(), String>,
) -> (
    mpsc::Sender<RegistryRequest>,
    mpsc::UnboundedReceiver<DeviceChange>,
    JoinHandle<()>,
) {
    let (tx, mut rx) = mpsc::channel::<RegistryRequest>(capacity);
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(request) = rx.recv().await {
            let _ = seen_tx.send(request.change);
            let _ = request.reply.send(answer.clone());
        }
    });
    (tx, seen_rx, task)
}

fn drain(seen: &mut mpsc::UnboundedReceiver<DeviceChange>) -> Vec<DeviceChange> {
    let mut changes = Vec::new();
    while let Ok(change) = seen.try_recv() {
        changes.push(change);
    }
    changes
}

fn ids(list: &Value) -> Vec<String> {
    list["devices"]
        .as_array()
        .expect("devices is a list")
        .iter()
        .map(|d| d["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn crud_round_trip_reaches_the_pipeline() -> anyhow::Result<()> {
    let (tx, mut seen, _pipeline) = fake_pipeline(4, Ok(()));
    let state = ApiState::new(&common::open_config(), prometheus::Registry::new())?
        .with_devices([station("aq-son_tra-01", District::SonTra)])
        .with_registry_sender(tx);
    let server = Server::serve_state(state).await?;
    let addr = server.addr;

    let list = http_get(addr, "/api/v1/devices").await?;
    assert_eq!(list.status, 200, "{list:?}");
    let list = list.json()?;
    assert_eq!(list["count"], 1);
    assert_eq!(
        list["devices"][0]["name"],
        "Trạm quan trắc không khí Sơn Trà"
    );
    assert_eq!(list["devices"][0]["status"], "never_seen");
    assert!(list["devices"][0]["last_seen_ms"].is_null());

    // Create.
    let tl = junction("tsc-thanh_khe-042");
    let created = http_json(addr, "POST", "/api/v1/devices", &body(&tl)).await?;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(
        created.header("location"),
        Some("/api/v1/devices/tsc-thanh_khe-042")
    );
    let view = created.json()?;
    assert_eq!(view["id"], "tsc-thanh_khe-042");
    assert_eq!(view["free_flow_kmh"], 40.0);
    assert_eq!(view["status"], "never_seen");
    // Again: a conflict, not sent to the pipeline.
    let again = http_json(addr, "POST", "/api/v1/devices", &body(&tl)).await?;
    let e = error(&again, 409, "conflict");
    assert_eq!(e["field"], "id");

    let got = http_get(addr, "/api/v1/devices/tsc-thanh_khe-042").await?;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()?["department"], "transport");

    // Replace (200), then create through PUT (201).
    let renamed = Device {
        name: "Nút giao Điện Biên Phủ".to_owned(),
        ..tl.clone()
    };
    let replaced = http_json(
        addr,
        "PUT",
        "/api/v1/devices/tsc-thanh_khe-042",
        &body(&renamed),
    )
    .await?;
    assert_eq!(replaced.status, 200, "{replaced:?}");
    assert_eq!(replaced.json()?["name"], "Nút giao Điện Biên Phủ");
    let aq2 = station("aq-cam_le-02", District::CamLe);
    let put_new = http_json(addr, "PUT", "/api/v1/devices/aq-cam_le-02", &body(&aq2)).await?;
    assert_eq!(put_new.status, 201, "{put_new:?}");
    // A body whose id differs from the path.
    let mismatch = http_json(addr, "PUT", "/api/v1/devices/aq-other", &body(&aq2)).await?;
    let e = error(&mismatch, 400, "invalid_device");
    assert_eq!(e["field"], "id");

    // Filters.
    let env = http_get(addr, "/api/v1/devices?kind=environment")
        .await?
        .json()?;
    assert_eq!(ids(&env), ["aq-cam_le-02", "aq-son_tra-01"]);
    let cam_le = http_get(
        addr,
        "/api/v1/devices?kind=environment&district=cam_le&department=environment",
    )
    .await?
    .json()?;
    assert_eq!(ids(&cam_le), ["aq-cam_le-02"]);
    assert_eq!(cam_le["count"], 1);
    let transport = http_get(addr, "/api/v1/devices?department=transport&kind=")
        .await?
        .json()?;
    assert_eq!(ids(&transport), ["tsc-thanh_khe-042"]);
    let e = error(
        &http_get(addr, "/api/v1/devices?kind=bus").await?,
        400,
        "invalid_query",
    );
    assert_eq!(e["field"], "kind");
    let e = error(
        &http_get(addr, "/api/v1/devices?colour=red").await?,
        400,
        "invalid_query",
    );
    assert!(
        e["message"].as_str().unwrap_or_default().contains("colour"),
        "{e}"
    );

    // Delete, then it is gone.
    let deleted = http_request(
        addr,
        "DELETE",
        "/api/v1/devices/tsc-thanh_khe-042",
        &[],
        None,
    )
    .await?;
    assert_eq!(deleted.status, 204, "{deleted:?}");
    assert!(deleted.body.is_empty());
    let gone = http_request(
        addr,
        "DELETE",
        "/api/v1/devices/tsc-thanh_khe-042",
        &[],
        None,
    )
    .await?;
    error(&gone, 404, "not_found");
    error(
        &http_get(addr, "/api/v1/devices/tsc-thanh_khe-042").await?,
        404,
        "not_found",
    );
    assert_eq!(http_get(addr, "/api/v1/devices").await?.json()?["count"], 2);

    // The pipeline got exactly the changes that succeeded, in order.
    assert_eq!(
        drain(&mut seen),
        vec![
            DeviceChange::Upsert(tl),
            DeviceChange::Upsert(renamed),
            DeviceChange::Upsert(aq2),
            DeviceChange::Remove {
                id: "tsc-thanh_khe-042".to_owned()
            },
        ]
    );
    let metrics = http_get(addr, "/metrics").await?.body;
    for line in [
        r#"ioc_api_registry_changes_total{op="upsert",outcome="applied"} 3"#,
        r#"ioc_api_registry_changes_total{op="remove",outcome="applied"} 1"#,
        r#"ioc_api_http_requests_total{route="/api/v1/devices/{id}",status="204"} 1"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    server.shutdown().await
}

#[tokio::test]
async fn status_comes_from_device_health_kpis() -> anyhow::Result<()> {
    let fleet = parse_fleet(ioc_simulator::DA_NANG_FLEET_JSON)?;
    let state = ApiState::new(&common::open_config(), prometheus::Registry::new())?
        .with_devices(fleet.into_values());
    let server = Server::serve_state(state).await?;
    let junctions = http_get(server.addr, "/api/v1/devices?kind=traffic_signal")
        .await?
        .json()?;
    assert_eq!(junctions["count"], 166);

    let health = |start: u64, status: DeviceStatus, last: u64| {
        Kpi::Health(HealthKpi {
            scope: Scope::Device,
            entity_id: "tsc-hai_chau-001".to_owned(),
            district: Some(District::HaiChau),
            department: Some(Department::Transport),
            window_start_ms: start,
            window_size_ms: 60_000,
            devices: 1,
            online: u32::from(status == DeviceStatus::Online),
            offline: u32::from(status != DeviceStatus::Online),
            readings: 2,
            expected: 2,
            completeness_pct: 100.0,
            last_seen_ms: Some(last),
            status: Some(status),
        })
    };
    let feed = server.state.feed().clone();
    feed.publish_kpi(health(
        1_795_827_600_000,
        DeviceStatus::Online,
        1_795_827_655_000,
    ));
    let d = http_get(server.addr, "/api/v1/devices/tsc-hai_chau-001")
        .await?
        .json()?;
    assert_eq!(d["status"], "online");
    assert_eq!(d["last_seen_ms"], 1_795_827_655_000u64);
    assert_eq!(d["status_at_ms"], 1_795_827_660_000u64);
    feed.publish_kpi(health(
        1_795_827_660_000,
        DeviceStatus::Offline,
        1_795_827_655_000,
    ));
    let d = http_get(server.addr, "/api/v1/devices/tsc-hai_chau-001")
        .await?
        .json()?;
    assert_eq!(d["status"], "offline");
    // Without a pipeline the registry is read-only.
    let e = http_json(
        server.addr,
        "POST",
        "/api/v1/devices",
        &body(&junction("tsc-thanh_khe-900")),
    )
    .await?;
    error(&e, 503, "registry_read_only");
    let e = http_request(
        server.addr,
        "DELETE",
        "/api/v1/devices/tsc-hai_chau-001",
        &[],
        None,
    )
    .await?;
    error(&e, 503, "registry_read_only");
    assert_eq!(
        http_get(server.addr, "/api/v1/devices").await?.json()?["count"]
            .as_u64()
            .unwrap_or_default(),
        server.state.devices().len() as u64
    );
    server.shutdown().await
}

#[tokio::test]
async fn bad_bodies_name_the_field_and_never_reach_the_pipeline() -> anyhow::Result<()> {
    let (tx, mut seen, _pipeline) = fake_pipeline(4, Ok(()));
    let state = ApiState::new(&common::open_config(), prometheus::Registry::new())?
        .with_registry_sender(tx);
    let server = Server::serve_state(state).await?;
    let addr = server.addr;
    let good = body(&junction("tsc-thanh_khe-001"));
    let with = |key: &str, value: Value| {
        let mut b = good.clone();
        b[key] = value;
        b
    };
    let without = |key: &str| {
        let mut b = good.clone();
        b.as_object_mut().map(|o| o.remove(key));
        b
    };
    let cases = [
        (with("lat", json!(91.0)), "lat", "91 is not a latitude"),
        (with("lon", json!("east")), "lon", "invalid type"),
        (with("kind", json!("bus")), "kind", "unknown variant `bus`"),
        (with("district", json!("da_nang")), "district", "da_nang"),
        (
            with("colour", json!("red")),
            "colour",
            "unknown field `colour`",
        ),
        (without("lat"), "lat", "missing field `lat`"),
        (with("id", json!("bad id")), "id", "character"),
        (with("id", json!("unknown")), "id", "reserved"),
        (with("name", json!("   ")), "name", "not blank"),
        (
            with("expected_interval_s", json!(0)),
            "expected_interval_s",
            "1 to",
        ),
        (with("free_flow_kmh", json!(-5)), "free_flow_kmh", "km/h"),
        (
            with("flood_alarm_m", json!([1.8, 1.0, 2.5])),
            "flood_alarm_m",
            "rising",
        ),
        (
            with("water_class", json!("river_z")),
            "water_class",
            "unknown variant",
        ),
    ];
    for (bad, field, says) in cases {
        for (method, path) in [
            ("POST", "/api/v1/devices".to_owned()),
            (
                "PUT",
                format!(
                    "/api/v1/devices/{}",
                    bad["id"].as_str().unwrap_or("x").replace(' ', "%20")
                ),
            ),
        ] {
            if path == "/api/v1/devices/unknown" {
                // The unknown-device list's path: only GET.
                let response = http_json(addr, method, &path, &bad).await?;
                error(&response, 405, "method_not_allowed");
                continue;
            }
            let response = http_json(addr, method, &path, &bad).await?;
            let e = error(&response, 400, "invalid_device");
            assert_eq!(e["field"], field, "{method} {bad}: {e}");
            let message = e["message"].as_str().unwrap_or_default();
            assert!(message.contains(says), "{method} {bad}: {message}");
            assert!(message.contains(field), "{method} {bad}: {message}");
        }
    }

    let not_json = http_request(
        addr,
        "POST",
        "/api/v1/devices",
        &[("content-type", "application/json")],
        Some(b"{\"id\":"),
    )
    .await?;
    error(&not_json, 400, "invalid_device");
    let no_type = http_request(
        addr,
        "POST",
        "/api/v1/devices",
        &[],
        Some(good.to_string().as_bytes()),
    )
    .await?;
    error(&no_type, 415, "unsupported_media_type");
    let mut huge = good.clone();
    huge["name"] = json!("x".repeat(300 * 1024)); // over the default http.max_body_bytes, 256 KiB
    let too_large = http_json(addr, "POST", "/api/v1/devices", &huge).await?;
    error(&too_large, 413, "payload_too_large");

    // Other JSON errors: unknown routes and methods, a plain GET on /ws.
    error(&http_get(addr, "/api/v1/nothing").await?, 404, "not_found");
    error(
        &http_request(addr, "PATCH", "/api/v1/devices", &[], None).await?,
        405,
        "method_not_allowed",
    );
    error(&http_get(addr, "/ws").await?, 400, "websocket_required");

    assert_eq!(drain(&mut seen), vec![], "nothing reached the pipeline");
    server.shutdown().await
}

#[tokio::test]
async fn unavailable_refusing_and_slow_pipelines() -> anyhow::Result<()> {
    let config = HttpConfig {
        registry_timeout_ms: 300,
        ..common::open_config()
    };

    // The pipeline stopped: its receiver is gone.
    let (tx, rx) = mpsc::channel::<RegistryRequest>(1);
    drop(rx);
    let state = ApiState::new(&config, prometheus::Registry::new())?.with_registry_sender(tx);
    let server = Server::serve_state(state).await?;
    let tl = junction("tsc-thanh_khe-007");
    let e = http_json(server.addr, "POST", "/api/v1/devices", &body(&tl)).await?;
    error(&e, 503, "unavailable");
    assert!(!server.state.devices().contains(&tl.id));

    // A pipeline that refuses: 503 with its reason, nothing changes.
    let (tx, mut seen, _pipeline) = fake_pipeline(1, Err("clickhouse unreachable".to_owned()));
    server.state.set_registry_sender(tx);
    let e = http_json(server.addr, "POST", "/api/v1/devices", &body(&tl)).await?;
    let e = error(&e, 503, "change_refused");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("clickhouse unreachable"),
        "{e}"
    );
    assert_eq!(drain(&mut seen), vec![DeviceChange::Upsert(tl.clone())]);
    error(
        &http_get(server.addr, &format!("/api/v1/devices/{}", tl.id)).await?,
        404,
        "not_found",
    );

    // A pipeline that takes the change but answers late: 504, and the directory follows
    // the answer when it comes.
    let (tx, mut rx) = mpsc::channel::<RegistryRequest>(1);
    server.state.set_registry_sender(tx);
    let (held_tx, held_rx) = oneshot::channel::<RegistryRequest>();
    tokio::spawn(async move {
        if let Some(request) = rx.recv().await {
            let _ = held_tx.send(request);
        }
        // Keep the channel open, taking nothing more.
        std::future::pending::<()>().await;
    });
    let e = http_json(server.addr, "POST", "/api/v1/devices", &body(&tl)).await?;
    error(&e, 504, "timeout");
    // While that change is unanswered, the next one cannot go: 503, nothing changed.
    let other = junction("tsc-thanh_khe-008");
    let e = http_json(server.addr, "POST", "/api/v1/devices", &body(&other)).await?;
    error(&e, 503, "unavailable");
    let held = held_rx.await?;
    assert_eq!(held.change, DeviceChange::Upsert(tl.clone()));
    let _ = held.reply.send(Ok(()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while http_get(server.addr, &format!("/api/v1/devices/{}", tl.id))
        .await?
        .status
        != 200
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "late answer never applied"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let metrics = http_get(server.addr, "/metrics").await?.body;
    for line in [
        r#"ioc_api_registry_changes_total{op="upsert",outcome="refused"} 1"#,
        r#"ioc_api_registry_changes_total{op="upsert",outcome="timeout"} 1"#,
        r#"ioc_api_registry_changes_total{op="upsert",outcome="unavailable"} 2"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    server.shutdown().await
}

#[tokio::test]
async fn unknown_devices_are_listed_bounded_and_dropped_once_registered() -> anyhow::Result<()> {
    let (tx, _seen, _pipeline) = fake_pipeline(4, Ok(()));
    let config = HttpConfig {
        unknown_devices_max: 2,
        ..common::open_config()
    };
    let state = ApiState::new(&config, prometheus::Registry::new())?.with_registry_sender(tx);
    let server = Server::serve_state(state).await?;
    let unknown = server.state.unknown_devices().clone();
    unknown.record(
        "tsc-thanh_khe-042",
        Kind::TrafficSignal,
        District::ThanhKhe,
        2_000,
    );
    unknown.record(
        "tsc-thanh_khe-042",
        Kind::TrafficSignal,
        District::ThanhKhe,
        1_000,
    );
    unknown.record("cam-x", Kind::CameraEvent, District::SonTra, 5_000);
    // The list is full: these are counted, not tracked.
    unknown.record("cam-y", Kind::CameraEvent, District::SonTra, 6_000);
    unknown.record("cam-z", Kind::CameraEvent, District::SonTra, 7_000);

    let list = http_get(server.addr, "/api/v1/devices/unknown").await?;
    assert_eq!(list.status, 200, "{list:?}");
    let list = list.json()?;
    assert_eq!(list["count"], 2);
    assert_eq!(list["dropped"], 2);
    assert_eq!(
        list["devices"],
        json!([
            {"id": "cam-x", "kind": "camera_event", "district": "son_tra", "readings": 1,
             "first_seen_ms": 5_000, "last_seen_ms": 5_000},
            {"id": "tsc-thanh_khe-042", "kind": "traffic_signal", "district": "thanh_khe",
             "readings": 2, "first_seen_ms": 1_000, "last_seen_ms": 2_000},
        ])
    );
    let missing = http_get(server.addr, "/api/v1/devices/cam-x").await?;
    let e = error(&missing, 404, "not_found");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/api/v1/devices/unknown"),
        "{e}"
    );

    // Registering it takes it off the list (and frees a place).
    let created = http_json(
        server.addr,
        "POST",
        "/api/v1/devices",
        &body(&junction("tsc-thanh_khe-042")),
    )
    .await?;
    assert_eq!(created.status, 201, "{created:?}");
    let list = http_get(server.addr, "/api/v1/devices/unknown")
        .await?
        .json()?;
    assert_eq!(ids(&list), ["cam-x"]);
    unknown.record("cam-y", Kind::CameraEvent, District::SonTra, 8_000);
    let list = http_get(server.addr, "/api/v1/devices/unknown")
        .await?
        .json()?;
    assert_eq!(ids(&list), ["cam-x", "cam-y"]);

    let metrics = http_get(server.addr, "/metrics").await?.body;
    for line in [
        "ioc_api_unknown_devices_dropped_total 2",
        "ioc_api_unknown_devices 2",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    server.shutdown().await
}
