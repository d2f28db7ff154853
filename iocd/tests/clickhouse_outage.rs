//! A ClickHouse outage mid-stream: iocd consumes from the real Kafka broker into a private
//! ClickHouse server, which is stopped for 30 s while readings keep arriving and then
//! restarted. iocd keeps taking readings into its spool until the spool holds
//! `spool.max_bytes`; then the backpressure reaches Kafka, which keeps the rest. Nothing is
//! lost (every reading stored exactly once) and iocd's resident memory stays under a stated
//! bound, because what it takes waits on disk, not in memory. The outage lasts three times
//! `kafka.max_poll_interval_ms`, with iocd a member of its group (`kafka.assignment = "group"`,
//! where a consumer not polled in time is dropped): iocd pauses its partitions and keeps
//! polling, so it stays in its group (no rebalance) throughout.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::private_clickhouse::{http_get, PrivateClickHouse};
use common::*;

const DEVICES: usize = 50;
/// Readings stored before the outage.
const BEFORE: usize = 5_000;
/// Readings produced while ClickHouse is down.
const DURING: usize = 40_000;
const TOTAL: usize = BEFORE + DURING;
const OUTAGE: Duration = Duration::from_secs(30);
/// `kafka.max_poll_interval_ms`, a third of the outage (librdkafka wants it at least
/// `session_timeout_ms`, 10 s by default).
const MAX_POLL_INTERVAL_MS: u64 = 10_000;
const DATABASE: &str = "ioc_outage";

// The queues between Kafka and ClickHouse, kept small (see `config` in the test).
/// `kafka.queued_max_kbytes`: librdkafka's prefetch.
const QUEUED_MAX_KBYTES: u64 = 1024;
/// `dataflow.input_capacity`: records queued from ingest into the dataflow.
const INPUT_CAPACITY: u64 = 4096;
/// `clickhouse.channel_capacity`: rows queued per table writer.
const CHANNEL_CAPACITY: u64 = 2000;
/// `clickhouse.batch_max_rows`: the batch a writer holds and retries.
const BATCH_MAX_ROWS: u64 = 2000;

/// `spool.max_bytes`: the spool stops taking readings at 4 MiB, about 10,000 readings.
const SPOOL_MAX_BYTES: u64 = 4 << 20;

/// Readings iocd may hold in memory past the Kafka consumer while the spool is full: the
/// queue into the dataflow and the readings writer's queue and batch (the drain fills them and
/// waits), plus the one record each stage holds while it waits for room. The slack is for
/// those few.
const IN_FLIGHT_LIMIT: u64 = INPUT_CAPACITY + CHANNEL_CAPACITY + BATCH_MAX_ROWS + 100;

/// The memory bound while ClickHouse is down: the RSS may grow by at most this much over the
/// RSS measured just before the outage, and never exceed [`ABSOLUTE_LIMIT_KIB`].
///
/// What iocd holds in memory when nothing can be stored is what its queues hold: at most
/// [`IN_FLIGHT_LIMIT`] ≈ 8,200 readings past the Kafka consumer (above), the few window
/// results the drain has handed to their writer, and librdkafka's prefetch of
/// `queued_max_kbytes` = 1 MiB (per partition on older librdkafka: 4 MiB for the 4 partitions
/// of the sensor topic, the only one with data). What the spool takes waits on disk. A
/// reading in memory (decoded reading, its ~200-byte JSON payload, source, ack) takes about
/// 1 KiB, 2 KiB at most, so the queues hold ≈ 8–16 MiB and the prefetch 1–4 MiB: at most
/// 20 MiB. Measured with the spool: +10.7 MiB while the spool took 12,872 readings (4 MiB)
/// and filled. Taking the whole backlog of 40,000 readings into memory instead costs about
/// 1 KiB each: before the spool, with the default queue sizes (and a 64 MiB prefetch), the
/// RSS grew by 42.5 MiB in one run. So 24 MiB of growth allows the bounded queues with room
/// for allocator slack, not the backlog. The absolute cap is for the debug build the test
/// runs (65 MiB before the outage, up to 100 MiB while catching up).
const GROWTH_LIMIT_KIB: u64 = 24 * 1024;
const ABSOLUTE_LIMIT_KIB: u64 = 300 * 1024;

/// Kills iocd if the test fails before stopping it.
struct IocdGuard(Option<Iocd>);

impl IocdGuard {
    fn get(&self) -> &Iocd {
        self.0.as_ref().unwrap()
    }
}

impl Drop for IocdGuard {
    fn drop(&mut self) {
        if let Some(mut iocd) = self.0.take() {
            let _ = iocd.child.kill();
            let _ = iocd.child.wait();
        }
    }
}

/// The sum of every sample of `name` in a Prometheus text exposition, or `None` when the
/// metric has no sample.
fn metric_sum(exposition: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// iocd's `/metrics`.
async fn metrics(addr: SocketAddr) -> String {
    match http_get(addr, "/metrics").await {
        Some((200, body)) => body,
        other => panic!("GET /metrics answered {other:?}"),
    }
}

/// `(status, clickhouse component ok)` of iocd's `/healthz`.
async fn health(addr: SocketAddr) -> (u16, Option<bool>) {
    let (status, body) = http_get(addr, "/healthz")
        .await
        .expect("iocd answers /healthz");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    (status, report["components"]["clickhouse"]["ok"].as_bool())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clickhouse_outage_loses_nothing_and_memory_stays_bounded() {
    let run = run_id("ch_outage");
    let prefix = format!("test.{run}");
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = PrivateClickHouse::new(&dir);
    server.start().await;
    create_topics(&prefix, 4).await;

    let http_port = free_port();
    let api = SocketAddr::from(([127, 0, 0, 1], http_port));
    let config = kafka_config_with(
        &prefix,
        &run,
        &server.url(),
        DATABASE,
        http_port,
        ConfigExtra {
            // Lag measured every second.
            kafka: &format!(
                "assignment = \"group\"\nqueued_max_kbytes = {QUEUED_MAX_KBYTES}\nstatistics_interval_ms = 1000\n\
                 max_poll_interval_ms = {MAX_POLL_INTERVAL_MS}\n"
            ),
            // Retried at least every second, so the catch-up starts soon after the restart.
            clickhouse: &format!(
                "channel_capacity = {CHANNEL_CAPACITY}\nbatch_max_rows = {BATCH_MAX_ROWS}\n\
                 retry_max_ms = 1000\n"
            ),
            // Plenty of lateness and no idle clock: the readings are two hours old and arrive
            // in bursts, and the outage must not turn them late (they would be stored anyway).
            sections: &format!(
                "[dataflow]\ninput_capacity = {INPUT_CAPACITY}\nallowed_lateness_ms = 600000\n\
                 idle_timeout_ms = 86400000\n[spool]\nmax_bytes = {SPOOL_MAX_BYTES}\n"
            ),
            ..ConfigExtra::default()
        },
    );
    let iocd = IocdGuard(Some(Iocd::start(&dir, "iocd", &config)));
    let log = iocd.get().log.clone();

    // 50 devices, a reading each per second of event time, in order, two hours ago.
    let now = ioc_dataflow::Clock::now_ms(&ioc_dataflow::SystemClock);
    let base = now - now % 60_000 - 120 * 60_000;
    let readings: Vec<_> = (0..TOTAL / DEVICES)
        .flat_map(|seq| (0..DEVICES).map(move |device| (device, seq)))
        .map(|(device, seq)| {
            let t = base + seq as u64 * 1_000 + device as u64 * 10;
            (gauge_reading(&run, device, seq, t), district_of(device))
        })
        .collect();
    assert_eq!(readings.len(), TOTAL);
    let client = clickhouse(&server.url(), DATABASE);

    // 1. Before the outage: everything stored, healthy.
    produce(&prefix, &readings[..BEFORE]).await;
    wait_until(
        "the first readings stored",
        Duration::from_secs(120),
        || async { stored_readings(&client).await.1 >= BEFORE as u64 },
    )
    .await;
    // Let the offsets of those readings be committed and the lag measured once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(health(api).await, (200, Some(true)), "healthy before");
    let before = metrics(api).await;
    let failures_before = metric_sum(&before, "ioc_store_batch_failures_total").unwrap_or(0.0);
    let received_before = metric_sum(&before, "ioc_ingest_received_total").unwrap_or(0.0);
    assert_eq!(received_before, BEFORE as f64, "messages received before");
    let baseline_kib = iocd.get().rss_kib();
    assert!(baseline_kib > 0, "iocd runs; see {}", log.display());

    // 2. The outage: ClickHouse stops, the rest of the readings arrive, 30 s pass while the
    // RSS is sampled every 250 ms and /healthz every 2 s.
    server.stop().await;
    let outage_started = Instant::now();
    produce(&prefix, &readings[BEFORE..]).await;
    let produced_in = outage_started.elapsed();
    let mut max_kib = baseline_kib;
    let mut samples = 0u32;
    let mut health_seen = Vec::new();
    let mut next_health = Instant::now();
    while outage_started.elapsed() < OUTAGE {
        let rss = iocd.get().rss_kib();
        assert!(
            rss > 0,
            "iocd died during the outage; see {}",
            log.display()
        );
        max_kib = max_kib.max(rss);
        samples += 1;
        if Instant::now() >= next_health {
            health_seen.push(health(api).await);
            next_health += Duration::from_secs(2);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let during = metrics(api).await;
    let (_, report) = http_get(api, "/healthz")
        .await
        .expect("iocd answers /healthz");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let detail = report["components"]["clickhouse"]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let end_of_outage_kib = iocd.get().rss_kib();

    // 3. Back: ClickHouse restarts on the same data, iocd catches up.
    server.start().await;
    let restarted = Instant::now();
    let mut catch_up_max_kib = 0;
    let deadline = restarted + Duration::from_secs(120);
    let (rows, ids) = loop {
        catch_up_max_kib = catch_up_max_kib.max(iocd.get().rss_kib());
        let (rows, ids) = stored_readings(&client).await;
        if rows >= TOTAL as u64 && ids >= TOTAL as u64 {
            break (rows, ids);
        }
        assert!(
            Instant::now() < deadline,
            "only {ids} of {TOTAL} readings stored 120 s after ClickHouse came back; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let catch_up = restarted.elapsed();

    // The figures.
    let failures_during = metric_sum(&during, "ioc_store_batch_failures_total").unwrap_or(0.0);
    let received_during = metric_sum(&during, "ioc_ingest_received_total").unwrap_or(0.0);
    let lags: Vec<&str> = during
        .lines()
        .filter(|l| l.starts_with("ioc_ingest_kafka_lag_messages{") && l.contains(".sensor\""))
        .collect();
    let lag = metric_sum(&during, "ioc_ingest_kafka_lag_messages");
    let queued = metric_sum(&during, "ioc_store_queue_rows");
    let limit_kib = (baseline_kib + GROWTH_LIMIT_KIB).min(ABSOLUTE_LIMIT_KIB);
    println!(
        "produced {DURING} readings in {:.1} s after ClickHouse stopped",
        produced_in.as_secs_f64()
    );
    println!("rss before the outage:        {:.1} MiB", mib(baseline_kib));
    println!(
        "rss max during the outage:    {:.1} MiB (+{:.1} MiB; {samples} samples, every 250 ms)",
        mib(max_kib),
        mib(max_kib.saturating_sub(baseline_kib))
    );
    println!(
        "rss at the end of the outage: {:.1} MiB",
        mib(end_of_outage_kib)
    );
    println!(
        "rss max while catching up:    {:.1} MiB",
        mib(catch_up_max_kib)
    );
    println!(
        "memory limit during the outage: {:.1} MiB (baseline + {:.0} MiB, at most {:.0} MiB)",
        mib(limit_kib),
        mib(GROWTH_LIMIT_KIB),
        mib(ABSOLUTE_LIMIT_KIB)
    );
    println!(
        "during the outage: messages taken from kafka {received_before} -> {received_during} \
         (limit +{IN_FLIGHT_LIMIT}), rows queued for clickhouse {queued:?}, \
         batch failures {failures_before} -> {failures_during}, kafka lag {lag:?}"
    );
    println!("healthz during the outage (status, clickhouse ok): {health_seen:?}");
    println!("clickhouse health at the end of the outage: {detail}");
    println!(
        "caught up {:.1} s after ClickHouse came back ({rows} rows, {ids} distinct ids)",
        catch_up.as_secs_f64()
    );

    // Nothing lost, nothing doubled, nothing rejected.
    assert_eq!((rows, ids), (TOTAL as u64, TOTAL as u64), "readings FINAL");
    let dead: u64 = client
        .query("SELECT count() FROM dead_letters")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(dead, 0, "no reading was rejected");

    // The spool took readings while ClickHouse was away, up to its bound; then the backlog
    // stayed in Kafka. Memory held no more than the queues.
    let taken = received_during - received_before;
    let spooled_bytes = metric_sum(&during, "ioc_store_spool_bytes").unwrap_or(0.0);
    let spooled_rows = metric_sum(&during, "ioc_store_spool_rows").unwrap_or(0.0);
    println!(
        "spool at the end of the outage: {spooled_rows} rows, {:.1} MiB (bound {:.0} MiB); \
         file {:.1} MiB",
        spooled_bytes / f64::from(1 << 20),
        mib(SPOOL_MAX_BYTES / 1024),
        metric_sum(&during, "ioc_store_spool_file_bytes").unwrap_or(0.0) / f64::from(1 << 20)
    );
    assert!(
        taken > IN_FLIGHT_LIMIT as f64,
        "iocd took {taken} messages from kafka while ClickHouse was down: more than its queues \
         hold, into the spool"
    );
    assert!(
        spooled_rows >= taken - IN_FLIGHT_LIMIT as f64,
        "spooled {spooled_rows} of {taken}"
    );
    // The spool stops taking at its bound; what the dataflow holds then still goes in.
    let per_row = spooled_bytes / spooled_rows.max(1.0);
    assert!(
        spooled_bytes <= SPOOL_MAX_BYTES as f64 + IN_FLIGHT_LIMIT as f64 * per_row,
        "spool reached {spooled_bytes} bytes with a bound of {SPOOL_MAX_BYTES}"
    );
    assert!(
        taken < DURING as f64,
        "a full spool pushes back on Kafka: iocd took {taken} of {DURING}"
    );
    assert!(
        max_kib <= limit_kib,
        "rss reached {:.1} MiB during the outage, from {:.1} MiB before it (limit {:.1} MiB)",
        mib(max_kib),
        mib(baseline_kib),
        mib(limit_kib)
    );
    assert!(
        catch_up_max_kib <= ABSOLUTE_LIMIT_KIB,
        "rss reached {:.1} MiB while catching up",
        mib(catch_up_max_kib)
    );

    // The outage was visible to an operator.
    assert!(
        failures_during > failures_before,
        "ioc_store_batch_failures_total grew during the outage ({failures_before} -> {failures_during})"
    );
    assert_eq!(
        lags.len(),
        4,
        "ioc_ingest_kafka_lag_messages is exported for the 4 sensor partitions: {lags:?}"
    );
    // Consumption is paused but polling goes on, so the lag is measured through the outage:
    // what the spool could not take is still in Kafka.
    let lag = lag.unwrap_or(0.0);
    assert!(
        lag >= DURING as f64 - taken - 1_000.0,
        "kafka lag during the outage: {lag}, with {taken} of {DURING} taken"
    );
    assert!(
        health_seen.contains(&(503, Some(false))),
        "/healthz reported 503 with clickhouse not ok during the outage: {health_seen:?}"
    );
    assert_eq!(
        health_seen.last(),
        Some(&(503, Some(false))),
        "/healthz still reported the outage at its end: {health_seen:?}"
    );

    assert!(
        detail.starts_with("ClickHouse unavailable") && detail.contains("rows spooled"),
        "the outage and the spool's backlog are on /healthz: {detail}"
    );

    // The group never saw iocd as stuck: one assignment, no revocation, no poll timeout.
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("kafka partitions assigned").count(),
        1,
        "no rebalance during an outage of {OUTAGE:?} with max.poll.interval.ms = {MAX_POLL_INTERVAL_MS}; see {}",
        log.display()
    );
    assert!(
        !text.contains("kafka partitions revoked"),
        "see {}",
        log.display()
    );

    // After the catch-up iocd is healthy again and stops cleanly (SIGINT, exit 0).
    wait_until(
        "iocd healthy after the outage",
        Duration::from_secs(30),
        || async { health(api).await == (200, Some(true)) },
    )
    .await;
    let mut iocd = iocd;
    iocd.0.take().unwrap().stop();
    server.stop().await;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
