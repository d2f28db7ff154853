//! MQTT ingest that one bad device cannot stop, against real brokers and ClickHouse 18.16:
//! an oversized message, malformed payloads, hour-old readings and messages on a bad topic,
//! mixed between valid readings, are each stored once (as readings, late readings or dead
//! letters) with no reconnect, no duplicate delivery and `/healthz` 200 throughout.
//!
//! - mosquitto (Debian's, on 1883) with an in-process pipeline;
//! - the embedded rumqttd, which drops a client whose acknowledgements leave out of order, as
//!   `iocd demo` runs it, storing to ClickHouse;
//! - two demos on one machine: a second one on the same broker port or state folder refuses at
//!   once, with a message that names what it collided with.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CLICKHOUSE: &str = "http://127.0.0.1:8123";

/// The hostile mix for devices of run `run`: 10 valid readings, a 70 KB message, 20 malformed
/// payloads, 5 readings an hour old, 2 messages on a topic with an unknown district, 10 valid
/// readings. Returns the messages and the topics to subscribe to.
fn hostile_mix(run: &str, now_ms: u64) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let device = format!("{run}-rain");
    let topic = format!("ioc/v1/sensor/cam_le/{device}");
    let bad_topic = format!("ioc/v1/sensor/atlantis/{device}");
    let reading = |seq: usize, t: u64| {
        format!(
            r#"{{"message_id":"{run}-{seq}","device_id":"{device}","event_time":{t},"kind":"sensor","body":{{"metric":"rainfall_mm","value":{seq},"unit":"mm"}}}}"#
        )
        .into_bytes()
    };
    let mut messages = Vec::new();
    for seq in 0..10 {
        messages.push((topic.clone(), reading(seq, now_ms + seq as u64)));
    }
    messages.push((topic.clone(), vec![b'x'; 70 * 1000]));
    for i in 0..20 {
        // Each different, so each dead letter can be told apart.
        let payload = match i % 4 {
            0 => format!("{{not json {i}"),
            1 => format!(r#"{{"message_id":"bad-{i}","device_id":"{device}"}}"#),
            2 => format!(
                r#"{{"message_id":"wrong-type-{i}","device_id":"{device}","event_time":{now_ms},"kind":"sensor","body":{{"metric":"rainfall_mm","value":"{i}","unit":"mm"}}}}"#
            ),
            _ => format!(
                r#"{{"message_id":"has space {i}","device_id":"{device}","event_time":{now_ms},"kind":"sensor","body":{{"metric":"rainfall_mm","value":-{i},"unit":"mm"}}}}"#
            ),
        };
        messages.push((topic.clone(), payload.into_bytes()));
    }
    for seq in 10..15 {
        messages.push((topic.clone(), reading(seq, now_ms - 3_600_000)));
    }
    for seq in 15..17 {
        messages.push((bad_topic.clone(), reading(seq, now_ms)));
    }
    for seq in 17..27 {
        messages.push((topic.clone(), reading(seq, now_ms + seq as u64)));
    }
    (messages, vec![topic, bad_topic])
}

async fn publish(port: u16, client_id: &str, messages: Vec<(String, Vec<u8>)>) {
    common::publish_to(port, client_id, 20, messages).await;
}

async fn metric(addr: SocketAddr, name: &str, labels: &str) -> f64 {
    common::scrape_metric(addr, name, labels).await
}

/// Samples `/healthz` every 100 ms until stopped; returns the statuses that were not 200.
fn watch_health(
    addr: SocketAddr,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Vec<u16>>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut bad = Vec::new();
        loop {
            let status = common::http(addr, "GET", "/healthz", "").await.0;
            if status != 200 {
                bad.push(status);
            }
            tokio::select! {
                _ = &mut stopped => return bad,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    });
    (stop, task)
}

/// Waits until ClickHouse holds what the mix must leave, then checks it stays so (a
/// redelivery would add rows), and returns nothing: every check is an assertion.
async fn check_stored(database: &str, device: &str) {
    let ch = common::clickhouse(CLICKHOUSE, database);
    let counts = || {
        let ch = ch.clone();
        let device = device.to_owned();
        async move {
            let readings: (u64, u64, u64) = ch
                .query("SELECT count(), uniqExact(message_id), countIf(late = 1) FROM readings WHERE device_id = ?")
                .bind(&device)
                .fetch_one()
                .await
                .unwrap_or((0, 0, 0));
            let late: u64 = ch
                .query("SELECT count() FROM late_readings WHERE device_id = ?")
                .bind(&device)
                .fetch_one()
                .await
                .unwrap_or(0);
            let letters: (u64, u64) = ch
                .query("SELECT count(), uniqExact(payload) FROM dead_letters WHERE position(source, ?) > 0")
                .bind(&device)
                .fetch_one()
                .await
                .unwrap_or((0, 0));
            (readings, late, letters)
        }
    };
    // 20 valid and 5 late readings (each once, before any merge); 23 dead letters, each once.
    let expected = ((25, 25, 5), 5, (23, 23));
    common::wait_until("the mix to be stored", Duration::from_secs(60), || {
        let counts = counts();
        async move { counts.await == expected }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(counts().await, expected, "nothing stored twice");
    let (code, kept, size): (String, u64, u64) = ch
        .query("SELECT toString(code), length(payload), payload_bytes FROM dead_letters WHERE position(source, ?) > 0 AND payload_bytes > 65536")
        .bind(device)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        (code.as_str(), kept, size),
        ("payload_too_large", 1024, 70_000)
    );
    let refused_ids: u64 = ch
        .query("SELECT count() FROM dead_letters WHERE position(source, ?) > 0 AND position(reason, 'message_id `has space') > 0")
        .bind(device)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(refused_ids, 5, "message ids with spaces are refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_hostile_input_costs_no_connection_and_is_stored_once() {
    let run = common::run_id("hostile_mosq");
    let database = format!("ioc_test_{run}");
    let now = ioc_schemas::now_ms();
    let (messages, topics) = hostile_mix(&run, now);
    let mut config = iocd::Config::default();
    config.alerts.state_dir = common::state_dir(&run).into();
    config.mqtt.topics = topics;
    config.dataflow.allowed_lateness_ms = 10_000;
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
    let (stop_watch, health) = watch_health(pipeline.addr);
    publish(1883, &format!("{run}-pub"), messages).await;
    check_stored(&database, &format!("{run}-rain")).await;
    let addr = pipeline.addr;
    assert_eq!(
        metric(addr, "ioc_ingest_reconnects_total", "mqtt").await,
        0.0
    );
    assert_eq!(
        metric(addr, "ioc_ingest_received_total", "mqtt").await,
        48.0,
        "no duplicate delivery"
    );
    assert_eq!(
        metric(addr, "ioc_ingest_mqtt_unacked_messages", "").await,
        0.0
    );
    let _ = stop_watch.send(());
    assert_eq!(
        health.await.unwrap(),
        Vec::<u16>::new(),
        "/healthz stayed 200"
    );
    pipeline.stop().await;
    common::drop_database(&database).await;
}

/// `iocd demo` from `dir` with `config` (TOML); returns the child once it printed its banner,
/// or its exit status and stderr if it stopped first.
fn start_demo(
    dir: &Path,
    name: &str,
    config: &str,
) -> Result<(common::Iocd, String), (std::process::ExitStatus, String, String)> {
    std::fs::create_dir_all(dir).unwrap();
    let config_file = format!("{name}.toml");
    std::fs::write(dir.join(&config_file), config).unwrap();
    let log = dir.join(format!("{name}.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_iocd"))
        .args(["demo", "--config", &config_file])
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut banner = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("Press Ctrl-C") {
                let _ = tx.send(std::mem::take(&mut banner));
            }
        }
        let _ = tx.send(banner);
    });
    let banner = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    if banner.contains("Press Ctrl-C") {
        return Ok((common::Iocd { child, log }, banner));
    }
    let status = child.wait().unwrap();
    Err((
        status,
        banner,
        std::fs::read_to_string(&log).unwrap_or_default(),
    ))
}

fn demo_config(broker_port: u16, http_port: u16, database: Option<&str>) -> String {
    let clickhouse = database.map_or_else(String::new, |db| {
        format!(
            "[clickhouse]\nurl = \"{CLICKHOUSE}\"\ndatabase = \"{db}\"\nbatch_max_wait_ms = 50\n\
             retention = {{ enabled = false }}\n"
        )
    });
    format!(
        "[demo]\nbroker_listen = \"127.0.0.1:{broker_port}\"\nfind_clickhouse = false\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n[http.auth]\nenabled = false\n[simulator]\nrate_per_s = 20.0\n[dataflow]\nallowed_lateness_ms = 10000\n{clickhouse}"
    )
}

async fn healthy(addr: SocketAddr) {
    common::wait_until(
        "the demo to be healthy",
        Duration::from_secs(30),
        || async move { common::http(addr, "GET", "/healthz", "").await.0 == 200 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_storing_to_clickhouse_rides_out_hostile_input_on_its_embedded_broker() {
    let run = common::run_id("hostile_demo");
    let database = format!("ioc_test_{run}");
    let dir = std::env::temp_dir().join(&run);
    let (broker_port, http_port) = (common::free_port(), common::free_port());
    let (demo, _) = start_demo(
        &dir,
        "demo",
        &demo_config(broker_port, http_port, Some(&database)),
    )
    .unwrap_or_else(|(status, _, log)| panic!("demo stopped with {status}: {log}"));
    let addr: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    healthy(addr).await;
    // The fleet's own traffic runs on; let the subscription settle first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (stop_watch, health) = watch_health(addr);
    let (messages, _) = hostile_mix(&run, ioc_schemas::now_ms());
    publish(broker_port, &format!("{run}-pub"), messages).await;
    check_stored(&database, &format!("{run}-rain")).await;
    assert_eq!(
        metric(addr, "ioc_ingest_reconnects_total", "mqtt").await,
        0.0,
        "rumqttd kept the connection: acknowledgements left in order; see {}",
        demo.log.display()
    );
    let _ = stop_watch.send(());
    assert_eq!(
        health.await.unwrap(),
        Vec::<u16>::new(),
        "/healthz stayed 200"
    );
    demo.stop();
    common::drop_database(&database).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_demo_on_the_same_broker_port_or_folder_refuses_at_once() {
    let run = common::run_id("two_demos");
    let (dir_a, dir_b) = (
        std::env::temp_dir().join(format!("{run}-a")),
        std::env::temp_dir().join(format!("{run}-b")),
    );
    let broker_port = common::free_port();
    let http_a = common::free_port();
    let (first, banner) = start_demo(&dir_a, "first", &demo_config(broker_port, http_a, None))
        .unwrap_or_else(|(status, _, log)| panic!("first demo stopped with {status}: {log}"));
    assert!(
        banner.contains(&format!("127.0.0.1:{broker_port}")),
        "{banner}"
    );
    let addr_a: SocketAddr = format!("127.0.0.1:{http_a}").parse().unwrap();
    healthy(addr_a).await;

    // Another folder, another HTTP address, the same broker port.
    let started = Instant::now();
    let (status, banner, log) = start_demo(
        &dir_b,
        "port_taken",
        &demo_config(broker_port, common::free_port(), None),
    )
    .map(|_| ())
    .expect_err("the second demo must refuse");
    assert!(!status.success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused at once"
    );
    assert!(
        !banner.contains("api token"),
        "no banner before refusing: {banner}"
    );
    assert!(
        log.contains(&format!("cannot listen on 127.0.0.1:{broker_port}"))
            && log.contains("--broker-listen"),
        "{log}"
    );

    // The first demo's folder, other ports.
    let (status, banner, log) = start_demo(
        &dir_a,
        "folder_taken",
        &demo_config(common::free_port(), common::free_port(), None),
    )
    .map(|_| ())
    .expect_err("a demo on a held folder must refuse");
    assert!(!status.success());
    assert!(banner.is_empty(), "no banner before refusing: {banner}");
    assert!(
        log.contains(&format!(
            "another iocd (pid {}) is using iocd-state",
            first.pid()
        )),
        "{log}"
    );

    // With a port of its own, the second runs beside the first, and neither reconnects.
    let http_b = common::free_port();
    let (second, banner) = start_demo(&dir_b, "second", &demo_config(0, http_b, None))
        .unwrap_or_else(|(status, _, log)| panic!("second demo stopped with {status}: {log}"));
    assert!(
        !banner.contains(&format!("127.0.0.1:{broker_port}")),
        "{banner}"
    );
    let addr_b: SocketAddr = format!("127.0.0.1:{http_b}").parse().unwrap();
    healthy(addr_b).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    for addr in [addr_a, addr_b] {
        assert_eq!(
            metric(addr, "ioc_ingest_reconnects_total", "mqtt").await,
            0.0
        );
        assert!(metric(addr, "ioc_ingest_received_total", "mqtt").await > 0.0);
    }
    second.stop();
    first.stop();
    let _ = std::fs::remove_dir_all(&dir_a);
    let _ = std::fs::remove_dir_all(&dir_b);
}
