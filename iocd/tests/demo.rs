//! `iocd demo` as a user runs it (embedded broker, simulated fleet, no ClickHouse): the device
//! API lists the whole fleet — every junction and every named station — with live status, and
//! a registry change made through the API is served back.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_lists_the_whole_fleet() {
    let run = common::run_id("demo");
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let (http_port, broker_port) = (common::free_port(), common::free_port());
    let config = dir.join("demo.toml");
    std::fs::write(
        &config,
        format!(
            "[demo]\nbroker_listen = \"127.0.0.1:{broker_port}\"\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n[simulator]\nclient_id = \"sim-{run}\"\n[mqtt]\nclient_id = \"iocd-{run}\"\n[alerts]\nstate_dir = \"{}\"\n",
            common::state_dir(&run)
        ),
    )
    .unwrap();
    let log = dir.join("demo.log");
    let child = Command::new(env!("CARGO_BIN_EXE_iocd"))
        .args(["demo", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let iocd = common::Iocd { child, log };
    let addr: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::http(addr, "GET", "/healthz", "").await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the demo never became healthy; see {}",
            iocd.log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (status, list) = common::http(addr, "GET", "/api/v1/devices", "").await;
    assert_eq!(status, 200);
    assert_eq!(list["count"], 474);
    let devices = list["devices"].as_array().unwrap();
    let of_kind = |kind: &str| devices.iter().filter(|d| d["kind"] == kind).count();
    assert_eq!(of_kind("traffic_signal"), 166);
    let names: Vec<&str> = devices.iter().filter_map(|d| d["name"].as_str()).collect();
    for station in [
        "Trạm quan trắc Hạt Kiểm lâm Sơn Trà – Ngũ Hành Sơn",
        "Trạm quan trắc Ngũ Hành Sơn",
        "Trạm quan trắc Sơn Trà",
        "Trạm quan trắc Thanh Khê",
        "Trạm quan trắc Hòa Vang",
        "Trạm quan trắc Ngã ba Phạm Hùng – QL1A",
        "Trạm quan trắc Bãi biển Non Nước",
        "Trạm quan trắc Bãi biển Phạm Văn Đồng",
        "Trạm quan trắc Bãi Rạng",
        "Trạm quan trắc Cảng Tiên Sa",
        "Trạm quan trắc Hạ lưu sông Hàn",
        "Trạm quan trắc Hạ lưu sông Cu Đê",
        "Trạm quan trắc Hạ lưu sông Phú Lộc",
        "Trạm quan trắc Lưu vực sông Vu Gia – Thu Bồn",
        "Cầu Thuận Phước",
        "Cầu Rồng",
        "Cầu Trần Thị Lý",
    ] {
        assert!(names.contains(&station), "{station} is missing");
    }
    let (_, junctions) = common::http(
        addr,
        "GET",
        "/api/v1/devices?kind=traffic_signal&district=hai_chau",
        "",
    )
    .await;
    assert_eq!(junctions["count"], 48);
    assert!(devices
        .iter()
        .all(|d| d["department"].is_string() && d["status"].is_string()));

    // Without ClickHouse a change still reaches the running pipeline and the list.
    let gauge = serde_json::json!({
        "id": format!("rain-{run}"), "kind": "sensor", "name": "Trạm đo mưa thử",
        "district": "hoa_vang", "lat": 16.0, "lon": 108.1,
        "department": "disaster_prevention", "expected_interval_s": 60
    });
    let (status, _) = common::http(addr, "POST", "/api/v1/devices", &gauge.to_string()).await;
    assert_eq!(status, 201);
    let (status, got) = common::http(addr, "GET", &format!("/api/v1/devices/rain-{run}"), "").await;
    assert_eq!(status, 200);
    assert_eq!(got["name"], "Trạm đo mưa thử", "{got}");
    let (_, list) = common::http(addr, "GET", "/api/v1/devices", "").await;
    assert_eq!(list["count"], 475);

    iocd.stop();
    std::fs::remove_dir_all(&dir).unwrap();
}
