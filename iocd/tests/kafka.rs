//! Kafka → ClickHouse against the real broker: every reading stored exactly once with the
//! right windows, and a SIGKILL mid-stream followed by a restart ends with the same ClickHouse
//! contents as an uninterrupted run.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

const MINUTE: u64 = 60_000;
const DEVICES: usize = 50;
const PER_DEVICE: usize = 200;

/// `(device, size, start) -> (count, sum, min, max)`
type Windows = BTreeMap<(String, u64, u64), (u64, f64, f64, f64)>;

async fn windows(client: &clickhouse::Client) -> Windows {
    let rows: Vec<(String, u64, u64, u64, f64, f64, f64)> = client
        .query(
            "SELECT device_id, window_size_ms, window_start_ms, count, sum, min, max \
             FROM window_results FINAL WHERE device_id != 'closer'",
        )
        .fetch_all()
        .await
        .unwrap_or_default();
    rows.into_iter()
        .map(|(d, size, start, c, s, lo, hi)| ((d, size, start), (c, s, lo, hi)))
        .collect()
}

/// Whether iocd on `port` reports a lag of 0 on every partition of the sensor topic.
async fn caught_up(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request = "GET /metrics HTTP/1.1\r\nHost: iocd\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut body = String::new();
    if stream.read_to_string(&mut body).await.is_err() {
        return false;
    }
    let lags: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("ioc_ingest_kafka_lag_messages{") && l.contains(".sensor\""))
        .collect();
    lags.len() == 4 && lags.iter().all(|l| l.ends_with(" 0"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_consumer_ends_like_an_uninterrupted_one() {
    let run = run_id("kafka_kill");
    let prefix = format!("test.{run}");
    create_topics(&prefix, 4).await;
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let ch = "http://127.0.0.1:8123";
    let (db_killed, db_whole) = (
        format!("ioc_test_{run}_killed"),
        format!("ioc_test_{run}_whole"),
    );
    // An hour of lateness: nothing in this data is late, so arrival order across partitions
    // cannot change the results, and every window stays open until the closing reading. A
    // partition silent for 2 s stops holding the watermark back, so that one reading, on one
    // partition, closes them.
    let extra = "[dataflow]\nallowed_lateness_ms = 3600000\nidle_timeout_ms = 2000\n";
    // Lag is measured every 0.5 s, so the test can tell when a run has read everything.
    let with_stats = |config: String| {
        config.replace(
            "commit_interval_ms = 200",
            "commit_interval_ms = 200\nstatistics_interval_ms = 500",
        )
    };
    let (killed_port, whole_port) = (free_port(), free_port());
    let killed_config = with_stats(kafka_config(
        &prefix,
        &format!("{run}-killed"),
        ch,
        &db_killed,
        killed_port,
        extra,
    ));
    let whole_config = with_stats(kafka_config(
        &prefix,
        &format!("{run}-whole"),
        ch,
        &db_whole,
        whole_port,
        extra,
    ));
    let mut killed = Some(Iocd::start(&dir, "killed", &killed_config));
    let whole = Iocd::start(&dir, "whole", &whole_config);

    // 50 devices, a reading every 10 s for 2000 s of event time, two hours ago.
    let now = ioc_dataflow::Clock::now_ms(&ioc_dataflow::SystemClock);
    let base = now - now % (5 * MINUTE) - 120 * MINUTE;
    let mut readings = Vec::new();
    for seq in 0..PER_DEVICE {
        for device in 0..DEVICES {
            let t = base + seq as u64 * 10_000 + device as u64 * 100;
            readings.push((gauge_reading(&run, device, seq, t), district_of(device)));
        }
    }
    let total = readings.len() as u64;
    let a = clickhouse(ch, &db_killed);
    let b = clickhouse(ch, &db_whole);

    for (i, batch) in readings.chunks(1_000).enumerate() {
        produce(&prefix, batch).await;
        if i == 3 {
            // Mid-stream: wait until some of it is stored, then kill without warning.
            wait_until(
                "the first readings stored",
                Duration::from_secs(60),
                || async { stored_readings(&a).await.0 >= 2_000 },
            )
            .await;
            killed.take().unwrap().kill();
            killed = Some(Iocd::start(&dir, "killed", &killed_config));
        }
    }
    for (name, client) in [("killed", &a), ("whole", &b)] {
        wait_until(
            &format!("{name} to store every reading"),
            Duration::from_secs(120),
            || async { stored_readings(client).await.1 >= total },
        )
        .await;
    }

    // Stored is not enough: after the restart, readings the first run stored may still be on
    // their way through the second run's dataflow. Wait until both have read to the end.
    for (name, port) in [("killed", killed_port), ("whole", whole_port)] {
        wait_until(
            &format!("{name} to read every partition to the end"),
            Duration::from_secs(60),
            || caught_up(port),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // One reading 100 minutes after the start (the data spans 34) closes every window of the
    // data once the hour of lateness is taken off.
    let closer = ioc_schemas::Reading {
        device_id: "closer".into(),
        ..gauge_reading(&run, 0, 999_999, base + 100 * MINUTE)
    };
    produce(&prefix, &[(closer, district_of(0))]).await;

    // Independent computation of the windows.
    let mut expected = Windows::new();
    for (r, _) in &readings {
        let t = r.event_time.0;
        let ioc_schemas::Body::Sensor(s) = &r.body else {
            unreachable!()
        };
        for size in [MINUTE, 5 * MINUTE] {
            let e = expected
                .entry((r.device_id.clone(), size, t - t % size))
                .or_insert(EMPTY_WINDOW);
            count_in(e, s.value);
        }
    }
    for (name, client) in [("killed", &a), ("whole", &b)] {
        wait_until(
            &format!("{name} to store every window"),
            Duration::from_secs(60),
            || async { windows(client).await.len() >= expected.len() },
        )
        .await;
    }
    let killed = killed.take().unwrap();
    killed.stop();
    whole.stop();

    // (a) Every reading exactly once, in both.
    for client in [&a, &b] {
        let (rows, ids) = stored_readings(client).await;
        assert_eq!(
            (rows, ids),
            (total + 1, total + 1),
            "readings FINAL and distinct ids"
        );
    }
    // (b) The windows equal the independent computation, with and without the kill.
    let (got_killed, got_whole) = (windows(&a).await, windows(&b).await);
    assert_eq!(got_whole, expected, "uninterrupted run");
    assert_eq!(got_killed, expected, "killed and restarted run");

    // The restart's cost, from its log: rows read back and time taken.
    let log = std::fs::read_to_string(dir.join("killed.log")).unwrap();
    let rebuild = log
        .lines()
        .find(|l| l.contains("rebuilt open windows"))
        .expect("the restarted run rebuilt its open windows");
    println!("restart: {rebuild}");

    for db in [&db_killed, &db_whole] {
        drop_database(db).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The simulated fleet published with `publish_kafka`, a tenth of it malformed: the valid
/// readings are stored, the rest are kept as dead letters and produced to the dead-letter topic
/// with their reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_fleet_over_kafka_with_dead_letters() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::{Headers, Message};

    let run = run_id("kafka_sim");
    let prefix = format!("test.{run}");
    create_topics(&prefix, 2).await;
    let dead_letter_topic = format!("{prefix}.dead_letters");
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", KAFKA)
            .create()
            .unwrap();
    for r in admin
        .create_topics(
            &[NewTopic::new(
                &dead_letter_topic,
                1,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await
        .unwrap()
    {
        r.unwrap();
    }

    let simulator = ioc_simulator::SimulatorConfig {
        seed: 4242,
        rate_per_s: 2_000.0,
        max_messages: Some(400),
        malformed_share: 0.1,
        client_id: format!("sim-{run}"),
        ..ioc_simulator::SimulatorConfig::default()
    };
    let report = ioc_simulator::publish_kafka(
        &simulator,
        KAFKA,
        |kind| format!("{prefix}.{kind}"),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(report.sent, 400);
    assert!(report.malformed > 10, "{report:?}");

    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let database = format!("ioc_test_{run}");
    let config = kafka_config(
        &prefix,
        &run,
        "http://127.0.0.1:8123",
        &database,
        free_port(),
        "",
    )
    .replace(
        "commit_interval_ms = 200",
        &format!("commit_interval_ms = 200\ndead_letter_topic = \"{dead_letter_topic}\""),
    );
    let iocd = Iocd::start(&dir, "iocd", &config);
    let client = clickhouse("http://127.0.0.1:8123", &database);
    wait_until("every message stored", Duration::from_secs(60), || async {
        let letters: u64 = client
            .query("SELECT count() FROM dead_letters")
            .fetch_one()
            .await
            .unwrap_or(0);
        stored_readings(&client).await.1 >= report.valid && letters >= report.malformed
    })
    .await;
    iocd.stop();
    assert_eq!(stored_readings(&client).await, (report.valid, report.valid));
    let codes: Vec<(String, String)> = client
        .query("SELECT toString(code), source FROM dead_letters")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(codes.len() as u64, report.malformed);
    for (code, source) in &codes {
        assert!(source.starts_with(&prefix), "{source}");
        assert_ne!(
            code, "source_mismatch",
            "the simulator's key and header are right"
        );
    }

    // The same rejects, with their reasons, on the dead-letter topic.
    let consumer: StreamConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .set("group.id", format!("{run}-dlt"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[dead_letter_topic.as_str()]).unwrap();
    let mut on_topic = Vec::new();
    while (on_topic.len() as u64) < report.malformed {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("dead letters on the topic")
            .unwrap();
        let headers = message.headers().expect("reject headers");
        let code = headers
            .iter()
            .find(|h| h.key == "reject_code")
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .expect("reject_code header");
        on_topic.push(code);
    }
    let mut in_table: Vec<String> = codes.into_iter().map(|(c, _)| c).collect();
    in_table.sort();
    on_topic.sort();
    assert_eq!(on_topic, in_table);

    drop_database(&database).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// With the default static assignment, iocd reads a topic created after it started: its
/// partitions are assigned within `kafka.partition_watch_interval_ms`, and every reading
/// produced to them is stored once and on time. (Partitions added to a topic take the same
/// path, but tansu 0.6.0 cannot add partitions: `UnsupportedFeature`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_while_running_is_read() {
    use rdkafka::producer::FutureRecord;

    let run = run_id("kafka_new_topic");
    let prefix = format!("test.{run}");
    // Every topic but the sensors' exists at the start.
    create_topics_of(&prefix, &KINDS[1..], 2).await;

    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let database = format!("ioc_test_{run}");
    let port = free_port();
    let config = kafka_config_with(
        &prefix,
        &run,
        "http://127.0.0.1:8123",
        &database,
        port,
        ConfigExtra {
            kafka: "assignment_wait_ms = 1000\npartition_watch_interval_ms = 300\n\
                    fetch_wait_max_ms = 10\n",
            ..ConfigExtra::default()
        },
    );
    let iocd = Iocd::start(&dir, "iocd", &config);
    let api = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let assigned = || scrape_metric(api, "ioc_ingest_kafka_assigned_partitions", "");
    let wait_assigned = |n: f64| {
        let log = iocd.log.display().to_string();
        async move {
            wait_until(
                &format!("{n} partitions assigned; see {log}"),
                Duration::from_secs(60),
                || async { assigned().await == n },
            )
            .await;
        }
    };
    wait_assigned(6.0).await;

    let sensor = format!("{prefix}.sensor");
    create_topics_of(&prefix, &KINDS[..1], 4).await;
    wait_assigned(10.0).await;

    // Readings of the last minutes, each device in a partition of its own.
    let now = ioc_dataflow::Clock::now_ms(&ioc_dataflow::SystemClock);
    let devices = 8;
    let per_device = 50;
    let producer = producer();
    for seq in 0..per_device {
        for device in 0..devices {
            let reading = gauge_reading(&run, device, seq, now - 60_000 + seq as u64 * 1_000);
            let payload = serde_json::to_vec(&reading).unwrap();
            let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                key: "district",
                value: Some(district_of(device).slug()),
            });
            let record = FutureRecord::to(&sensor)
                .partition((device % 4) as i32)
                .key(reading.device_id.as_str())
                .payload(&payload)
                .headers(headers);
            producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    }
    let total = (devices * per_device) as u64;
    let client = clickhouse("http://127.0.0.1:8123", &database);
    wait_until(
        &format!("every reading stored; see {}", iocd.log.display()),
        Duration::from_secs(60),
        || async { stored_readings(&client).await.1 >= total },
    )
    .await;
    iocd.stop();
    assert_eq!(stored_readings(&client).await, (total, total));
    assert_eq!(late_counts(&client).await, (0, 0), "no reading late");
    // `source` is `<topic>/<partition>@<offset>`.
    let partitions: Vec<String> = client
        .query("SELECT DISTINCT splitByChar('@', source)[1] AS p FROM readings ORDER BY p")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(partitions.len(), 4, "{partitions:?}");
    drop_database(&database).await;
}
