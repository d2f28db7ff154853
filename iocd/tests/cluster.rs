//! A two-process timely cluster on loopback, against tansu, mosquitto and ClickHouse 18.16.
//!
//! One crafted set of readings — over Kafka (4 partitions per topic) and over MQTT, with
//! repeats, readings out of order within the lateness, late ones and malformed ones — goes to
//! a cluster of two `iocd run` processes (one worker each, one config file, the process id in
//! `IOC__CLUSTER__PROCESS`) and, under other device ids, to a single process with one worker.
//! Both must store the same raw rows, late ledger, dead letters, final windows and device
//! health KPIs, and those must equal an independent computation; each process must read a
//! share of the partitions; and the WebSocket of process 0 must carry every final window and
//! health KPI, those of the devices windowed on process 1 included.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use ioc_schemas::{Body, EventTime, Reading, SensorBody};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

const PARTITIONS: i32 = 4;
const KAFKA_DEVICES: usize = 16;
const MQTT_DEVICES: usize = 4;
/// One reading every 2 s for 400 s: the 5-minute window closes by the data alone.
const READINGS: usize = 200;
/// Sent in slots of this much event time, Kafka and MQTT side by side, as live sources
/// deliver; the lateness covers a slot.
const SLOT_MS: u64 = 10_000;
const STEP_MS: u64 = 2_000;
/// The 1-minute windows compared: the five before the 5-minute mark.
const MINUTES: u64 = 5;

fn device(tag: &str, run: &str, transport: char, d: usize) -> String {
    format!("cl{tag}-{run}-{transport}{d}")
}

fn mqtt_topic(device: &str) -> String {
    format!("ioc/v1/sensor/hai_chau/{device}")
}

/// Whole numbers, so sums are exact in any order.
fn value(d: usize, i: usize) -> f64 {
    ((d * 7 + i * 13) % 50) as f64
}

fn reading(device: &str, id: &str, t: u64, v: f64) -> Vec<u8> {
    serde_json::to_vec(&Reading {
        message_id: id.to_owned(),
        device_id: device.to_owned(),
        event_time: EventTime(t),
        body: Body::Sensor(SensorBody {
            metric: "water_level_m".into(),
            value: v,
            unit: "m".into(),
        }),
    })
    .unwrap()
}

/// What one deployment is sent, and what it must make of it.
#[derive(Default)]
struct Crafted {
    /// `(slot, partition, key, payload)`, in order.
    kafka: Vec<(u64, i32, String, Vec<u8>)>,
    /// `(slot, topic, payload)`, in order.
    mqtt: Vec<(u64, String, Vec<u8>)>,
    /// Sent once the rest is stored: late readings and malformed input.
    kafka_after: Vec<(i32, String, Vec<u8>)>,
    mqtt_after: Vec<(String, Vec<u8>)>,
    /// Final 1-minute windows `(device, start) -> (count, sum, min, max)`.
    windows: BTreeMap<(String, u64), WindowStats>,
    /// Message ids of the readings stored.
    readings: BTreeSet<String>,
    /// Message ids of the late ones.
    late: BTreeSet<String>,
    /// Malformed inputs.
    dead_letters: usize,
    /// Every device, for the registry.
    devices: Vec<String>,
}

/// Readings of one device `(transport, d)`, in arrival order: a repeat right behind every
/// 25th, and every 10th arriving after the next one (2 s out of order).
fn device_series(
    tag: &str,
    run: &str,
    base: u64,
    transport: char,
    d: usize,
) -> Vec<(u64, String, String, f64)> {
    let dev = device(tag, run, transport, d);
    let mut order: Vec<usize> = (0..READINGS).collect();
    for i in (5..READINGS - 1).step_by(10) {
        order.swap(i, i + 1);
    }
    let mut out = Vec::new();
    for i in order {
        let t = base + i as u64 * STEP_MS + d as u64 * 50;
        let id = format!("{dev}-{i}");
        out.push((t, dev.clone(), id.clone(), value(d, i)));
        if i % 25 == 3 {
            out.push((t, dev.clone(), id, value(d, i)));
        }
    }
    out
}

/// `(event time, arrival rank within the device, device, message id, value)`.
type Arrival = (u64, usize, String, String, f64);

fn crafted(tag: &str, run: &str, base: u64) -> Crafted {
    let mut c = Crafted::default();
    let count = |c: &mut Crafted, t: u64, dev: &str, id: &str, v: f64| {
        if !c.readings.insert(id.to_owned()) {
            return;
        }
        let start = t - t % 60_000;
        if start + 60_000 <= base + MINUTES * 60_000 {
            count_in(
                c.windows
                    .entry((dev.to_owned(), start))
                    .or_insert(EMPTY_WINDOW),
                v,
            );
        }
    };
    // Kafka: device d on partition d mod 4, the devices of a partition interleaved in event
    // time.
    let mut by_partition: BTreeMap<i32, Vec<Arrival>> = BTreeMap::new();
    for d in 0..KAFKA_DEVICES {
        for (n, (t, dev, id, v)) in device_series(tag, run, base, 'k', d)
            .into_iter()
            .enumerate()
        {
            by_partition
                .entry(d as i32 % PARTITIONS)
                .or_default()
                .push((t, n, dev, id, v));
        }
        c.devices.push(device(tag, run, 'k', d));
    }
    for (partition, mut series) in by_partition {
        // By arrival slot within each device, then across devices.
        series.sort_by_key(|(t, n, ..)| (*t / SLOT_MS, *n));
        for (t, _, dev, id, v) in series {
            count(&mut c, t, &dev, &id, v);
            let payload = reading(&dev, &id, t, v);
            c.kafka
                .push(((t - base) / SLOT_MS, partition, dev, payload));
        }
    }
    let mut mqtt: Vec<Arrival> = Vec::new();
    for d in 0..MQTT_DEVICES {
        for (n, (t, dev, id, v)) in device_series(tag, run, base, 'm', d)
            .into_iter()
            .enumerate()
        {
            mqtt.push((t, n, dev, id, v));
        }
        c.devices.push(device(tag, run, 'm', d));
    }
    mqtt.sort_by_key(|(t, n, ..)| (*t / SLOT_MS, *n));
    for (t, _, dev, id, v) in mqtt {
        count(&mut c, t, &dev, &id, v);
        c.mqtt.push((
            (t - base) / SLOT_MS,
            mqtt_topic(&dev),
            reading(&dev, &id, t, v),
        ));
    }
    // Late: over 5 minutes behind everything, once every source is past it.
    let old = base + 30_000;
    for p in 0..PARTITIONS {
        let dev = device(tag, run, 'k', p as usize);
        let id = format!("{dev}-late");
        c.kafka_after
            .push((p, dev.clone(), reading(&dev, &id, old, 99.0)));
        c.readings.insert(id.clone());
        c.late.insert(id);
        // Malformed: not JSON, and a reading without its body.
        c.kafka_after
            .push((p, dev.clone(), format!("{{\"broken-{p}").into_bytes()));
        c.dead_letters += 1;
    }
    let dev = device(tag, run, 'm', 0);
    let id = format!("{dev}-late");
    c.mqtt_after
        .push((mqtt_topic(&dev), reading(&dev, &id, old, 99.0)));
    c.readings.insert(id.clone());
    c.late.insert(id);
    c.mqtt_after.push((
        mqtt_topic(&dev),
        format!("{{\"device_id\":\"{dev}\",\"message_id\":\"x\"}}").into_bytes(),
    ));
    c.dead_letters += 1;
    c
}

async fn produce_to(prefix: &str, messages: &[(i32, String, Vec<u8>)]) {
    let producer = producer();
    let topic = format!("{prefix}.sensor");
    let mut pending = Vec::new();
    for (partition, key, payload) in messages {
        let headers = OwnedHeaders::new().insert(Header {
            key: "district",
            value: Some("hai_chau"),
        });
        let record = FutureRecord::to(&topic)
            .partition(*partition)
            .key(key.as_str())
            .payload(payload)
            .headers(headers);
        pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for p in pending {
        p.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

/// One deployment's config; `cluster` is the `[cluster]` section, if any.
fn config(tag: &str, run: &str, c: &Crafted, http_port: u16, cluster: &str) -> String {
    let dir = std::env::temp_dir().join(format!("{run}_{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let fleet: Vec<serde_json::Value> = c
        .devices
        .iter()
        .map(|id| {
            serde_json::json!({"id": id, "kind": "sensor", "name": id, "district": "hai_chau",
                "lat": 16.05, "lon": 108.2, "department": "disaster_prevention",
                "expected_interval_s": 2})
        })
        .collect();
    let fleet_path = dir.join("fleet.json");
    std::fs::write(&fleet_path, serde_json::to_vec(&fleet).unwrap()).unwrap();
    let topics: Vec<String> = c
        .devices
        .iter()
        .filter(|d| d.contains("-m"))
        .map(|d| format!("\"{}\"", mqtt_topic(d)))
        .collect();
    let name = format!("{run}_{tag}");
    let sections = format!(
        "[dataflow]\nworkers = 1\nallowed_lateness_ms = 60000\n[registry]\npath = \"{}\"\n{cluster}",
        fleet_path.display()
    );
    kafka_config_with(
        &format!("test.{name}"),
        &name,
        "http://127.0.0.1:8123",
        &format!("ioc_test_{name}"),
        http_port,
        ConfigExtra {
            kafka: "fetch_wait_max_ms = 10\nprogress_interval_ms = 100\n",
            http: "auth.enabled = false",
            sections: &sections,
            ..ConfigExtra::default()
        },
    )
    .replace(
        "[mqtt]\nenabled = false\n",
        &format!("[mqtt]\ntopics = [{}]\n", topics.join(", ")),
    )
}

/// Starts `iocd run --config <file>` with `IOC__CLUSTER__PROCESS` and `--listen` set.
fn start(dir: &Path, name: &str, config: &Path, process: usize, listen: SocketAddr) -> Iocd {
    let (process, listen) = (process.to_string(), listen.to_string());
    Iocd::start_with(
        dir,
        name,
        config,
        &["--listen", &listen],
        &[("IOC__CLUSTER__PROCESS", &process)],
    )
}

/// The `type` of a WebSocket message.
fn v_type(text: &str) -> Option<&'static str> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    ["window", "kpi"].into_iter().find(|t| v["type"] == *t)
}

/// Asserts two collections hold the same items, showing up to ten of those that differ.
fn same<T: std::fmt::Debug>(
    got: impl IntoIterator<Item = T>,
    want: impl IntoIterator<Item = T>,
    what: &str,
) {
    let shown = |items: &mut dyn Iterator<Item = T>| -> BTreeSet<String> {
        items.map(|t| format!("{t:?}")).collect()
    };
    let (got, want) = (shown(&mut got.into_iter()), shown(&mut want.into_iter()));
    let first: Vec<_> = got.difference(&want).take(10).collect();
    let second: Vec<_> = want.difference(&got).take(10).collect();
    assert!(
        first.is_empty() && second.is_empty(),
        "{what}: only in the first {first:?}; only in the second {second:?}"
    );
}

/// What a deployment stored, with its tag taken out of device and message ids.
#[derive(Debug, PartialEq)]
struct Stored {
    readings: BTreeSet<(String, u8)>,
    late: BTreeSet<String>,
    dead_letters: BTreeSet<(String, String)>,
    windows: BTreeMap<(String, u64), WindowStats>,
    health: BTreeSet<(String, u64, u64)>,
}

async fn stored(tag: &str, run: &str, base: u64) -> Stored {
    let client = clickhouse("http://127.0.0.1:8123", &format!("ioc_test_{run}_{tag}"));
    let plain = |s: String| s.replace(&format!("cl{tag}-"), "cl-");
    let readings: Vec<(String, u8)> = client
        .query("SELECT message_id, late FROM readings FINAL")
        .fetch_all()
        .await
        .unwrap_or_default();
    let late: Vec<String> = client
        .query("SELECT message_id FROM late_readings FINAL")
        .fetch_all()
        .await
        .unwrap_or_default();
    let dead: Vec<(String, String)> = client
        .query("SELECT toString(code), payload FROM dead_letters")
        .fetch_all()
        .await
        .unwrap_or_default();
    let windows: Vec<(String, u64, u64, f64, f64, f64)> = client
        .query(
            "SELECT device_id, window_start_ms, count, sum, min, max FROM window_results FINAL \
             WHERE window_size_ms = 60000 AND is_final = 1 AND window_start_ms + 60000 <= ?",
        )
        .bind(base + MINUTES * 60_000)
        .fetch_all()
        .await
        .unwrap_or_default();
    let health: Vec<(String, u64, u64)> = client
        .query(
            "SELECT entity_id, window_start_ms, readings FROM kpi_health FINAL \
             WHERE scope = 'device'",
        )
        .fetch_all()
        .await
        .unwrap_or_default();
    Stored {
        readings: readings.into_iter().map(|(id, l)| (plain(id), l)).collect(),
        late: late.into_iter().map(plain).collect(),
        dead_letters: dead.into_iter().map(|(c, p)| (c, plain(p))).collect(),
        windows: windows
            .into_iter()
            .map(|(d, s, n, sum, lo, hi)| ((plain(d), s), (n, sum, lo, hi)))
            .collect(),
        health: health
            .into_iter()
            .map(|(e, s, n)| (plain(e), s, n))
            .collect(),
    }
}

/// What the independent computation says a deployment stores, in [`Stored`]'s terms.
fn expected(c: &Crafted, tag: &str) -> Stored {
    let plain = |s: &String| s.replace(&format!("cl{tag}-"), "cl-");
    Stored {
        readings: c
            .readings
            .iter()
            .map(|id| (plain(id), u8::from(c.late.contains(id))))
            .collect(),
        late: c.late.iter().map(plain).collect(),
        dead_letters: BTreeSet::new(),
        windows: c
            .windows
            .iter()
            .map(|((d, s), w)| ((plain(d), *s), *w))
            .collect(),
        health: BTreeSet::new(),
    }
}

/// Collects the final 1-minute windows and device health KPIs process 0's WebSocket pushes,
/// until `done` and then 2 s without one.
async fn watch(
    addr: SocketAddr,
    devices: Vec<String>,
    mut done: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Stored> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    let subscribe = serde_json::json!({"type": "subscribe",
        "channels": ["windows", "kpi.health"], "devices": devices});
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        subscribe.to_string(),
    ))
    .await
    .unwrap();
    tokio::spawn(async move {
        let mut seen = Stored {
            readings: BTreeSet::new(),
            late: BTreeSet::new(),
            dead_letters: BTreeSet::new(),
            windows: BTreeMap::new(),
            health: BTreeSet::new(),
        };
        let mut quiet_since = std::time::Instant::now();
        loop {
            if *done.borrow() && quiet_since.elapsed() > Duration::from_secs(2) {
                break;
            }
            let message = tokio::select! {
                m = ws.next() => m,
                _ = done.changed() => continue,
                () = tokio::time::sleep(Duration::from_millis(500)) => continue,
            };
            let Some(Ok(message)) = message else { break };
            let Ok(text) = message.into_text() else {
                continue;
            };
            if matches!(v_type(&text), Some("window" | "kpi")) {
                quiet_since = std::time::Instant::now();
            }
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            match v["type"].as_str() {
                Some("window") => {
                    let w = &v["data"];
                    if w["is_final"] == true && w["window_size_ms"] == 60_000 {
                        let n = w["count"].as_u64().unwrap_or(0);
                        seen.windows.insert(
                            (
                                w["device_id"].as_str().unwrap_or("").to_owned(),
                                w["window_start_ms"].as_u64().unwrap_or(0),
                            ),
                            (
                                n,
                                w["sum"].as_f64().unwrap_or(0.0),
                                w["min"].as_f64().unwrap_or(0.0),
                                w["max"].as_f64().unwrap_or(0.0),
                            ),
                        );
                    }
                }
                Some("kpi") => {
                    let k = &v["kpi"];
                    if k["scope"] == "device" {
                        seen.health.insert((
                            k["entity_id"].as_str().unwrap_or("").to_owned(),
                            k["window_start_ms"].as_u64().unwrap_or(0),
                            k["readings"].as_u64().unwrap_or(0),
                        ));
                    }
                }
                _ => {}
            }
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_process_cluster_stores_what_one_process_stores() {
    let run = run_id("cluster");
    let now = ioc_schemas::now_ms();
    let base = now - now % 300_000 - 3_600_000;
    let (cluster, single) = (crafted("c", &run, base), crafted("s", &run, base));
    for tag in ["c", "s"] {
        create_topics(&format!("test.{run}_{tag}"), PARTITIONS).await;
    }
    let dir = std::env::temp_dir().join(format!("{run}_logs"));
    std::fs::create_dir_all(&dir).unwrap();

    // The single process.
    let single_port = free_port();
    let single_iocd = Iocd::start(&dir, "single", &config("s", &run, &single, single_port, ""));
    let single_api = SocketAddr::from(([127, 0, 0, 1], single_port));

    // The cluster: one file, the process id from the environment, each its own --listen.
    let timely = [free_port(), free_port()];
    let section = format!(
        "[cluster]\naddresses = [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n",
        timely[0], timely[1]
    );
    let cluster_config = dir.join("cluster.toml");
    std::fs::write(&cluster_config, config("c", &run, &cluster, 0, &section)).unwrap();
    let apis = [free_port(), free_port()].map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
    let first = start(&dir, "process-0", &cluster_config, 0, apis[0]);
    // The second starts once the first has made the schema, so they do not race on it.
    wait_until(
        "process 0 reading kafka",
        Duration::from_secs(60),
        || async { scrape_metric(apis[0], "ioc_ingest_kafka_connected", "").await == 1.0 },
    )
    .await;
    let second = start(&dir, "process-1", &cluster_config, 1, apis[1]);
    let assigned = |api| scrape_metric(api, "ioc_ingest_kafka_assigned_partitions", "");
    wait_until(
        &format!("every process up; see {}", dir.display()),
        Duration::from_secs(60),
        || async {
            let up = |api| async move { http(api, "GET", "/healthz", "").await.0 == 200 };
            up(apis[0]).await && up(apis[1]).await && up(single_api).await
        },
    )
    .await;
    let shares = (assigned(apis[0]).await, assigned(apis[1]).await);
    assert!(
        shares.0 > 0.0 && shares.1 > 0.0 && shares.0 + shares.1 == f64::from(PARTITIONS * 4),
        "each process reads a share of the 16 partitions: {shares:?}"
    );
    // The subscriptions follow the connections.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (done, watching) = tokio::sync::watch::channel(false);
    let ws = watch(apis[0], cluster.devices.clone(), watching).await;

    let slots = READINGS as u64 * STEP_MS / SLOT_MS;
    for slot in 0..slots {
        for (tag, c) in [("c", &cluster), ("s", &single)] {
            let mqtt = c.mqtt.iter().filter(|m| m.0 == slot);
            let mqtt: Vec<_> = mqtt.map(|(_, t, p)| (t.clone(), p.clone())).collect();
            publish_all(&format!("{run}-pub-{tag}"), mqtt).await;
            let kafka = c.kafka.iter().filter(|m| m.0 == slot);
            let kafka: Vec<_> = kafka
                .map(|(_, p, k, m)| (*p, k.clone(), m.clone()))
                .collect();
            produce_to(&format!("test.{run}_{tag}"), &kafka).await;
        }
    }
    for (tag, c) in [("c", &cluster), ("s", &single)] {
        let on_time = c.readings.len() - c.late.len();
        wait_until(
            &format!("{tag}: every on-time reading stored; see {}", dir.display()),
            Duration::from_secs(120),
            || async { stored(tag, &run, base).await.readings.len() >= on_time },
        )
        .await;
    }
    // Every source idle past the idle timeout: the late ones are late wherever they go.
    tokio::time::sleep(Duration::from_secs(7)).await;
    for (tag, c) in [("c", &cluster), ("s", &single)] {
        publish_all(&format!("{run}-pub-{tag}-2"), c.mqtt_after.clone()).await;
        produce_to(&format!("test.{run}_{tag}"), &c.kafka_after).await;
    }
    for (tag, c) in [("c", &cluster), ("s", &single)] {
        wait_until(
            &format!(
                "{tag}: late readings, dead letters and windows stored; see {}",
                dir.display()
            ),
            Duration::from_secs(120),
            || async {
                let s = stored(tag, &run, base).await;
                s.late.len() >= c.late.len()
                    && s.dead_letters.len() >= c.dead_letters
                    && s.windows.len() >= c.windows.len()
                    && s.health.len() >= c.devices.len()
            },
        )
        .await;
    }
    let (from_cluster, from_single) =
        (stored("c", &run, base).await, stored("s", &run, base).await);
    let want = expected(&cluster, "c");
    same(
        &from_cluster.readings,
        &want.readings,
        "raw rows, cluster against the computation",
    );
    same(
        &from_cluster.late,
        &want.late,
        "late ledger, cluster against the computation",
    );
    same(
        &from_cluster.windows,
        &want.windows,
        "final windows, cluster against the computation",
    );
    assert_eq!(from_cluster.dead_letters.len(), cluster.dead_letters);
    same(
        &from_cluster.readings,
        &from_single.readings,
        "raw rows, cluster against one process",
    );
    same(
        &from_cluster.late,
        &from_single.late,
        "late ledger, cluster against one process",
    );
    same(
        &from_cluster.dead_letters,
        &from_single.dead_letters,
        "dead letters, cluster against one process",
    );
    same(
        &from_cluster.windows,
        &from_single.windows,
        "final windows, cluster against one process",
    );
    same(
        &from_cluster.health,
        &from_single.health,
        "device health, cluster against one process",
    );

    // Process 0's WebSocket carried every final window and device health KPI, those computed
    // on process 1 included.
    done.send_replace(true);
    let pushed = ws.await.unwrap();
    let plain = |s: &str| s.replace("clc-", "cl-");
    let pushed_windows: BTreeMap<(String, u64), WindowStats> = pushed
        .windows
        .iter()
        .filter(|((_, start), _)| start + 60_000 <= base + MINUTES * 60_000)
        .map(|((d, s), w)| ((plain(d), *s), *w))
        .collect();
    assert_eq!(
        pushed_windows, from_cluster.windows,
        "windows on the websocket"
    );
    let pushed_health: BTreeSet<(String, u64, u64)> = pushed
        .health
        .iter()
        .map(|(e, s, n)| (plain(e), *s, *n))
        .collect();
    assert!(
        from_cluster.health.is_subset(&pushed_health),
        "health kpis on the websocket: {:?} missing",
        from_cluster
            .health
            .difference(&pushed_health)
            .collect::<Vec<_>>()
    );
    let on_second = cluster
        .devices
        .iter()
        .filter(|d| ioc_dataflow::device_route(d) % 2 == 1)
        .count();
    assert!(on_second > 0, "some devices are windowed on process 1");

    // A cluster stops as a whole: both are told at once.
    first.interrupt();
    second.interrupt();
    first.wait_for_clean_exit();
    second.wait_for_clean_exit();
    single_iocd.stop();
    for tag in ["c", "s"] {
        drop_database(&format!("ioc_test_{run}_{tag}")).await;
    }
}
