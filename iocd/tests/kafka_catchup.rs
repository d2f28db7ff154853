//! Kafka catch-up in event-time order, against tansu and ClickHouse 18.16: a backlog of
//! 200,000 readings over 150 s of event time, produced to 4 topics × 4 partitions before iocd
//! starts, is judged as if it had arrived live: no reading is marked late, and every final
//! window equals an independent computation, whichever order the partitions were produced in,
//! and when iocd is SIGKILLed at about 40 % and restarted. Watermark alignment holds
//! partitions back and lets them go throughout, and no reading is lost or doubled by it: the
//! first test's backlog comes in record batches of many records, of which tansu would skip
//! the rest after a fetch from inside one (as a pause and resume would make).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use ioc_schemas::{
    Approach, Body, CameraEventBody, CameraEventType, ControlMode, EnvironmentBody, EventTime,
    Medium, Reading, SensorBody, SignalState, TrafficSignalBody,
};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

/// 100 devices of each kind.
const DEVICES: usize = 400;
/// Readings per device, one every [`STEP_MS`]: 150 s of event time.
const PER_DEVICE: usize = 500;
const STEP_MS: u64 = 300;
const TOTAL: usize = DEVICES * PER_DEVICE;
const PARTITIONS: i32 = 4;
/// The 1-minute windows every device fills before the backlog's end: final by the data alone.
const FINAL_MINUTES: u64 = 2;

/// The metric of each kind the windows are compared on.
const METRICS: [&str; 4] = ["water_level_m", "vehicles", "vehicle_count", "pm25"];

/// One message: topic suffix (the kind), partition, key, district, payload.
struct Message {
    kind: &'static str,
    partition: i32,
    key: String,
    district: &'static str,
    payload: Vec<u8>,
}

fn device_id(run: &str, device: usize) -> String {
    format!("cu-{run}-{device:03}")
}

/// The value device `device` reports at `seq`: whole numbers, so sums are exact in any order.
fn value(device: usize, seq: usize) -> u32 {
    ((device * 7 + seq * 13) % 50) as u32
}

fn event_ms(base: u64, device: usize, seq: usize) -> u64 {
    base + seq as u64 * STEP_MS + (device as u64 % STEP_MS)
}

fn message(run: &str, base: u64, device: usize, seq: usize) -> Message {
    let id = device_id(run, device);
    let v = value(device, seq);
    let (kind, body) = match device % 4 {
        0 => (
            "sensor",
            Body::Sensor(SensorBody {
                metric: "water_level_m".into(),
                value: f64::from(v),
                unit: "m".into(),
            }),
        ),
        1 => (
            "traffic_signal",
            Body::TrafficSignal(TrafficSignalBody {
                junction_id: id.clone(),
                state: SignalState::Green,
                mode: ControlMode::Adaptive,
                fault_code: None,
                approaches: vec![Approach {
                    approach: "north".into(),
                    vehicles: v,
                    occupancy_pct: 10.0,
                    mean_speed_kmh: 30.0,
                    queue_length_m: 5.0,
                }],
            }),
        ),
        2 => (
            "camera_event",
            Body::CameraEvent(CameraEventBody {
                camera_id: id.clone(),
                event_type: CameraEventType::VehicleCount,
                confidence: 0.9,
                plate: None,
                lane: None,
                count: Some(v),
                media_url: None,
            }),
        ),
        _ => (
            "environment",
            Body::Environment(EnvironmentBody {
                units: Default::default(),
                station_id: id.clone(),
                medium: Medium::Air,
                measurements: BTreeMap::from([("pm25".to_owned(), f64::from(v))]),
            }),
        ),
    };
    let reading = Reading {
        message_id: format!("{id}-{seq}"),
        device_id: id.clone(),
        event_time: EventTime(event_ms(base, device, seq)),
        body,
    };
    Message {
        kind,
        partition: (device / 4) as i32 % PARTITIONS,
        key: id,
        district: district_of(device).slug(),
        payload: serde_json::to_vec(&reading).unwrap(),
    }
}

/// The order the backlog is produced in.
#[derive(Debug, Clone, Copy)]
enum Order {
    /// Every partition interleaved, in event-time order.
    EventTime,
    /// One partition after another, the last topic's last partition first.
    PartitionByPartition,
}

/// The readings of the first `devices` devices.
fn backlog(run: &str, base: u64, order: Order, devices: usize) -> Vec<Message> {
    let mut messages: Vec<Message> = (0..PER_DEVICE)
        .flat_map(|seq| (0..devices).map(move |device| (device, seq)))
        .map(|(device, seq)| message(run, base, device, seq))
        .collect();
    if let Order::PartitionByPartition = order {
        // Stable: within a partition, event-time order stays.
        messages.sort_by_key(|m| std::cmp::Reverse((m.kind, m.partition)));
    }
    messages
}

/// Produces the backlog; `batched`: many records to a batch (librdkafka's defaults), else one
/// (see [`producer`]).
async fn produce_backlog(prefix: &str, messages: &[Message], batched: bool) {
    let producer = if batched {
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", KAFKA)
            .set("linger.ms", "20")
            .create()
            .unwrap()
    } else {
        producer()
    };
    let mut pending = Vec::new();
    for m in messages {
        let topic = format!("{prefix}.{}", m.kind);
        let headers = OwnedHeaders::new().insert(Header {
            key: "district",
            value: Some(m.district),
        });
        let record = FutureRecord::to(&topic)
            .partition(m.partition)
            .key(m.key.as_str())
            .payload(&m.payload)
            .headers(headers);
        pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        if pending.len() >= 5000 {
            for p in pending.drain(..) {
                p.await.unwrap().map_err(|(e, _)| e).unwrap();
            }
        }
    }
    for p in pending {
        p.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

type Windows = BTreeMap<(String, String, u64), (u64, f64, f64, f64)>;

/// The final 1-minute windows the backlog of the first `devices` devices must give, computed
/// here from the readings.
fn expected_windows(run: &str, base: u64, devices: usize) -> Windows {
    let mut windows = Windows::new();
    for device in 0..devices {
        for seq in 0..PER_DEVICE {
            let t = event_ms(base, device, seq);
            let start = t - t % 60_000;
            if start + 60_000 > base + FINAL_MINUTES * 60_000 {
                continue;
            }
            let v = f64::from(value(device, seq));
            let w = windows
                .entry((
                    device_id(run, device),
                    METRICS[device % 4].to_owned(),
                    start,
                ))
                .or_insert(EMPTY_WINDOW);
            count_in(w, v);
        }
    }
    windows
}

/// The final 1-minute windows stored for the compared metrics, up to `FINAL_MINUTES` in.
async fn stored_windows(client: &clickhouse::Client, base: u64) -> Windows {
    let metrics: Vec<String> = METRICS.iter().map(|m| format!("'{m}'")).collect();
    let rows: Vec<(String, String, u64, u64, f64, f64, f64)> = client
        .query(&format!(
            "SELECT device_id, metric, window_start_ms, count, sum, min, max \
             FROM window_results FINAL \
             WHERE window_size_ms = 60000 AND is_final = 1 AND metric IN ({}) \
             AND window_start_ms + 60000 <= ?",
            metrics.join(", ")
        ))
        .bind(base + FINAL_MINUTES * 60_000)
        .fetch_all()
        .await
        .unwrap_or_default();
    rows.into_iter()
        .map(|(d, m, start, c, s, lo, hi)| ((d, m, start), (c, s, lo, hi)))
        .collect()
}

/// A base time: 5-minute aligned, an hour ago, so the windows are the same every run.
fn base_time() -> u64 {
    let now = ioc_schemas::now_ms();
    now - now % 300_000 - 3_600_000
}

fn config(prefix: &str, run: &str, database: &str, http_port: u16) -> String {
    kafka_config_with(
        prefix,
        run,
        "http://127.0.0.1:8123",
        database,
        http_port,
        ConfigExtra {
            // tansu waits out the fetch wait on every fetch; a small drift, so alignment holds
            // partitions back often.
            kafka: "fetch_wait_max_ms = 10\nprogress_interval_ms = 100\nalignment_max_drift_ms = 5000\n",
            ..ConfigExtra::default()
        },
    )
}

/// Waits until `total` readings are stored and the compared windows are final.
async fn caught_up(
    client: &clickhouse::Client,
    base: u64,
    (total, expected): (usize, usize),
    log: &std::path::Path,
) {
    wait_until(
        &format!("the backlog and its windows stored; see {}", log.display()),
        Duration::from_secs(300),
        || async {
            stored_readings(client).await == (total as u64, total as u64)
                && stored_windows(client, base).await.len() >= expected
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_judged_in_event_time_order_whatever_order_it_was_produced_in() {
    let run = run_id("catchup");
    let base = base_time();
    let expected = expected_windows(&run, base, DEVICES);
    assert_eq!(expected.len(), DEVICES * FINAL_MINUTES as usize);
    let mut results = Vec::new();
    let mut held_s = 0.0;
    for (i, order) in [Order::EventTime, Order::PartitionByPartition]
        .into_iter()
        .enumerate()
    {
        let name = format!("{run}_{i}");
        let prefix = format!("test.{name}");
        let database = format!("ioc_test_{name}");
        create_topics(&prefix, PARTITIONS).await;
        produce_backlog(&prefix, &backlog(&run, base, order, DEVICES), true).await;
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let http_port = free_port();
        let iocd = Iocd::start(&dir, "iocd", &config(&prefix, &name, &database, http_port));
        let client = clickhouse("http://127.0.0.1:8123", &database);
        caught_up(&client, base, (TOTAL, expected.len()), &iocd.log).await;
        let windows = stored_windows(&client, base).await;
        let api = std::net::SocketAddr::from(([127, 0, 0, 1], http_port));
        held_s += scrape_metric(api, "ioc_ingest_kafka_paused_seconds_total", "").await;
        assert_eq!(
            late_counts(&client).await,
            (0, 0),
            "{order:?}: no reading late; see {}",
            iocd.log.display()
        );
        assert_eq!(windows.len(), expected.len(), "{order:?}");
        for (key, want) in &expected {
            assert_eq!(windows.get(key), Some(want), "{order:?}: window {key:?}");
        }
        iocd.stop();
        results.push(windows);
        drop_database(&database).await;
    }
    assert_eq!(results[0], results[1]);
    assert!(held_s > 0.0, "alignment held partitions back on the way");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_interrupted_by_sigkill_ends_as_an_uninterrupted_one() {
    let run = run_id("catchup_kill");
    let base = base_time();
    let expected = expected_windows(&run, base, DEVICES);
    let prefix = format!("test.{run}");
    let database = format!("ioc_test_{run}");
    create_topics(&prefix, PARTITIONS).await;
    produce_backlog(
        &prefix,
        &backlog(&run, base, Order::EventTime, DEVICES),
        false,
    )
    .await;
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let config = config(&prefix, &run, &database, free_port());
    let client = clickhouse("http://127.0.0.1:8123", &database);

    let first = Iocd::start(&dir, "iocd", &config);
    let log = first.log.clone();
    wait_until(
        "40 % of the backlog stored",
        Duration::from_secs(300),
        || async { stored_readings(&client).await.1 >= (TOTAL as u64) * 2 / 5 },
    )
    .await;
    first.kill();
    let stored_at_kill = stored_readings(&client).await.1;
    assert!(
        stored_at_kill < TOTAL as u64,
        "killed mid-backlog ({stored_at_kill} stored)"
    );

    let second = Iocd::start(&dir, "iocd", &config);
    caught_up(&client, base, (TOTAL, expected.len()), &log).await;
    assert_eq!(
        late_counts(&client).await,
        (0, 0),
        "no reading late; see {}",
        log.display()
    );
    let windows = stored_windows(&client, base).await;
    assert_eq!(windows.len(), expected.len());
    for (key, want) in &expected {
        assert_eq!(
            windows.get(key),
            Some(want),
            "window {key:?}; see {}",
            log.display()
        );
    }
    second.stop();
    drop_database(&database).await;
}

/// Two iocd processes in one consumer group, each with its own instance id and state folder,
/// started before the readings arrive: each gets partitions, every reading is stored once, and
/// every device's windows (a device's readings share a partition) are computed in full by the
/// member that owns it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_of_one_group_share_the_partitions() {
    let run = run_id("catchup_group");
    let base = base_time();
    // 10 devices of each kind: membership, not volume, is what this checks.
    let devices = 40;
    let expected = expected_windows(&run, base, devices);
    let prefix = format!("test.{run}");
    let database = format!("ioc_test_{run}");
    create_topics(&prefix, PARTITIONS).await;
    // A long session: when a static member's session expires after its restarted self has
    // joined, tansu revokes the new assignment and was seen never to give it back.
    let shared = config(&prefix, &run, &database, 0).replace(
        "[kafka]\n",
        "[kafka]\nassignment = \"group\"\nsession_timeout_ms = 120000\n",
    );
    let member = |name: &str| {
        let dir = std::env::temp_dir().join(format!("{run}_{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let config = shared
            .replace(
                &format!("group_instance_id = \"{run}\""),
                &format!("group_instance_id = \"{run}-{name}\""),
            )
            .replace(&state_dir(&run), &state_dir(&format!("{run}-{name}")))
            .replace("127.0.0.1:0\"", &format!("127.0.0.1:{port}\""));
        let api = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        (Iocd::start(&dir, "iocd", &config), api)
    };
    let (first, first_api) = member("a");
    // The second joins once the first has made the schema, so they do not race on it.
    wait_until("the first member up", Duration::from_secs(60), || async {
        scrape_metric(first_api, "ioc_ingest_kafka_connected", "").await == 1.0
    })
    .await;
    let (second, second_api) = member("b");
    let assigned = |api| scrape_metric(api, "ioc_ingest_kafka_assigned_partitions", "");
    wait_until(
        &format!(
            "both members assigned partitions; see {} and {}",
            first.log.display(),
            second.log.display()
        ),
        Duration::from_secs(120),
        || async {
            let (a, b) = (assigned(first_api).await, assigned(second_api).await);
            a > 0.0 && b > 0.0 && a + b == f64::from(PARTITIONS * 4)
        },
    )
    .await;
    produce_backlog(
        &prefix,
        &backlog(&run, base, Order::EventTime, devices),
        false,
    )
    .await;
    let client = clickhouse("http://127.0.0.1:8123", &database);
    caught_up(
        &client,
        base,
        (devices * PER_DEVICE, expected.len()),
        &first.log,
    )
    .await;
    assert_eq!(late_counts(&client).await, (0, 0), "no reading late");
    let windows = stored_windows(&client, base).await;
    assert_eq!(windows.len(), expected.len());
    for (key, want) in &expected {
        assert_eq!(windows.get(key), Some(want), "window {key:?}");
    }
    // Neither member lost its partitions on the way.
    let (a, b) = (assigned(first_api).await, assigned(second_api).await);
    assert!(
        a > 0.0 && b > 0.0,
        "assigned partitions at the end: {a} and {b}"
    );
    first.stop();
    second.stop();
    drop_database(&database).await;
}
