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
            "[demo]\nbroker_listen = \"127.0.0.1:{broker_port}\"\nfind_clickhouse = false\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n[simulator]\nclient_id = \"sim-{run}\"\n[mqtt]\nclient_id = \"iocd-{run}\"\n[alerts]\nstate_dir = \"{}\"\n",
            common::state_dir(&run)
        ),
    )
    .unwrap();
    // What an earlier run left: `--fresh` must clear it.
    let state = std::path::PathBuf::from(common::state_dir(&run));
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("alerts.redb"), b"an earlier run's alerts").unwrap();
    let log = dir.join("demo.log");
    let child = Command::new(env!("CARGO_BIN_EXE_iocd"))
        .args(["demo", "--fresh", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut child = child;
    // The demo prints a fresh admin token for the API; the rest of its output is drained, so
    // a closed pipe never fails its prints.
    let stdout = child.stdout.take().unwrap();
    let (token_tx, token_rx) = std::sync::mpsc::channel();
    let (banner_tx, banner_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if line.trim_start().starts_with("clickhouse:")
                || line.trim_start().starts_with("state:")
            {
                let _ = banner_tx.send(line.trim().to_owned());
            }
            let token = line
                .trim()
                .strip_prefix("api token:")
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned);
            if let Some(token) = token {
                let _ = token_tx.send(token);
            }
        }
    });
    let token = token_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the demo prints its api token");
    let banner: Vec<String> = (0..2)
        .map(|_| banner_rx.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    assert!(
        banner[0]
            .starts_with("clickhouse: none (--no-clickhouse or [demo] find_clickhouse = false)"),
        "{banner:?}"
    );
    assert!(banner[1].ends_with("(started fresh)"), "{banner:?}");
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

    // Without the token the API is closed; health checks stay open.
    let (status, refused) = common::http(addr, "GET", "/api/v1/devices", "").await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let token = Some(token.as_str());
    let (status, list) = common::http_as(addr, "GET", "/api/v1/devices", "", token).await;
    assert_eq!(status, 200);
    assert_eq!(list["count"], 476);
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
    let (_, junctions) = common::http_as(
        addr,
        "GET",
        "/api/v1/devices?kind=traffic_signal&district=hai_chau",
        "",
        token,
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
    let (status, _) =
        common::http_as(addr, "POST", "/api/v1/devices", &gauge.to_string(), token).await;
    assert_eq!(status, 201);
    let (status, got) = common::http_as(
        addr,
        "GET",
        &format!("/api/v1/devices/rain-{run}"),
        "",
        token,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got["name"], "Trạm đo mưa thử", "{got}");
    let (_, list) = common::http_as(addr, "GET", "/api/v1/devices", "", token).await;
    assert_eq!(list["count"], 477);

    // Without ClickHouse, KPI history comes from memory, and says so.
    let (status, history) = common::http_as(addr, "GET", "/api/v1/kpis/health", "", token).await;
    assert_eq!(
        (status, &history["source"]),
        (200, &serde_json::json!("memory"))
    );
    assert!(history["note"].as_str().unwrap().contains("no ClickHouse"));

    iocd.stop();
    std::fs::remove_dir_all(&dir).unwrap();
}
