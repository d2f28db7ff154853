//! The load generator: pushes N simulated readings through the full pipeline into ClickHouse and
//! compares the rate with what the transport alone delivers, in the same run.
//!
//! - `--transport mqtt` (the default): mosquitto delivering to a null subscriber
//!   (`mosquitto_sub ... > /dev/null`), then the pipeline twice, once with
//!   `mqtt.ack_after_store = true` (acknowledge only once the row is stored, the default)
//!   and once with `false` (acknowledge on receipt).
//! - `--transport kafka`: produces the readings to fresh topics `load.<pid>.<kind>`, then times a
//!   bare librdkafka consumer reading them all, then the pipeline (Kafka source only) until
//!   ClickHouse holds them all. Both are timed from the first message read; the pipeline's
//!   time from its start (schema set-up included) is printed beside it.
//!
//! - `--transport outage`: the spool's drain rate after ClickHouse was away for `--outage-s`
//!   while MQTT readings kept arriving at `--rate` a second (see `outage.rs`).
//!
//! Needs mosquitto on 127.0.0.1:1883 with `mosquitto_sub` on the PATH (mqtt), a Kafka-protocol
//! broker on 127.0.0.1:9092 that supports CreateTopics (kafka), and ClickHouse on
//! 127.0.0.1:8123 (`.ci/servers.sh start`). Run:
//! `cargo run --release -p ioc-benches --bin ioc-load -- --transport mqtt --readings 200000`

use std::hint::black_box;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use ioc_ingest::{KafkaConfig, KafkaTopics};
use ioc_schemas::Kind;
use ioc_simulator::{Fleet, Generator, KafkaSink, SimulatorConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

/// mimalloc (v3), as in iocd: the hot path allocates and frees a reading's strings
/// (BENCHMARKS.md, "mimalloc v3").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Longest wait for any one phase.
const PHASE_TIMEOUT: Duration = Duration::from_secs(600);

/// Which transport carries the readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TransportArg {
    /// MQTT via mosquitto, with the acknowledgement comparison.
    Mqtt,
    /// Kafka, against a bare librdkafka consumer.
    Kafka,
    /// MQTT while ClickHouse is away, then the spool's drain.
    Outage,
}

/// Which MQTT acknowledgement mode is measured first (to check for order effects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AckFirst {
    /// `ack_after_store = true` first, then `false`.
    Store,
    /// `ack_after_store = false` first, then `true`.
    Receipt,
}

/// Pushes readings through MQTT or Kafka into ClickHouse and reports readings/s.
#[derive(Debug, Parser)]
struct Args {
    /// Which transport to measure.
    #[arg(long, value_enum, default_value_t = TransportArg::Mqtt)]
    transport: TransportArg,
    /// How many readings to push.
    #[arg(long, default_value_t = 200_000)]
    readings: u64,
    /// MQTT broker host.
    #[arg(long, default_value = "127.0.0.1")]
    mqtt_host: String,
    /// MQTT broker port.
    #[arg(long, default_value_t = 1883)]
    mqtt_port: u16,
    /// MQTT: which acknowledgement mode runs first.
    #[arg(long, value_enum, default_value_t = AckFirst::Store)]
    ack_first: AckFirst,
    /// Kafka bootstrap brokers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    kafka_brokers: String,
    /// Partitions of each Kafka topic.
    #[arg(long, default_value_t = 4)]
    kafka_partitions: i32,
    /// Extra librdkafka properties of the bare consumer, `KEY=VALUE`, repeatable (to look
    /// into what limits it, e.g. `fetch.wait.max.ms=10`).
    #[arg(long, value_name = "KEY=VALUE")]
    bare_consumer_set: Vec<String>,
    /// The pipeline's `kafka.fetch_wait_max_ms` (tansu waits it out on every fetch).
    #[arg(long, default_value_t = 500)]
    pipeline_fetch_wait_max_ms: u64,
    /// The pipeline's `kafka.alignment_max_drift_ms` (0: no watermark alignment).
    #[arg(long, default_value_t = 60_000)]
    alignment_max_drift_ms: u64,
    /// The pipeline's `kafka.progress_interval_ms`: how often each partition's position is
    /// compared with its end (two ListOffsets requests a partition behind).
    #[arg(long, default_value_t = 200)]
    progress_interval_ms: u64,
    /// The pipeline's `kafka.queued_max_kbytes`: what librdkafka prefetches for the
    /// partitions read together, and for each partition held back by alignment.
    #[arg(long, default_value_t = KafkaConfig::default().queued_max_kbytes)]
    queued_max_kbytes: u64,
    /// The pipeline's `clickhouse.batch_max_wait_ms` (ClickHouse 18.16 writes a part per
    /// insert; fewer, larger inserts cost it less).
    #[arg(long)]
    batch_max_wait_ms: Option<u64>,
    /// The pipeline's `clickhouse.batch_max_rows`.
    #[arg(long)]
    batch_max_rows: Option<usize>,
    /// The pipeline's `clickhouse.batch_quiet_ms` (0: a batch waits for its size or its
    /// timer only).
    #[arg(long)]
    batch_quiet_ms: Option<u64>,
    /// ClickHouse HTTP URL.
    #[arg(long, default_value = "http://127.0.0.1:8123")]
    clickhouse_url: String,
    /// Timely workers (per process).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// `kafka`: run iocd as a timely cluster of this many processes on loopback (in this one
    /// OS process, each with its own state folder and timely port).
    #[arg(long, default_value_t = 1)]
    cluster_processes: usize,
    /// `outage`: readings a second while ClickHouse is away.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// `outage`: how long ClickHouse is away, seconds.
    #[arg(long, default_value_t = 600)]
    outage_s: u64,
}

mod outage;

fn messages(count: u64) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let config = SimulatorConfig {
        real_time: false,
        max_messages: Some(count),
        ..SimulatorConfig::default()
    };
    let start = 1_795_827_600_000;
    Ok(Generator::new(Fleet::da_nang(7), 7, &config, start)?
        .map(|m| (m.topic, m.payload))
        .collect())
}

/// The 1-minute load average, recorded before each measurement.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// An in-process iocd writing to a fresh database, and a client to count what it stored.
struct Pipeline {
    /// Where its API (and `/metrics`) answers.
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
    client: clickhouse::Client,
    database: String,
    /// The largest resident set of this process seen while waiting, KiB.
    peak_rss_kib: std::sync::atomic::AtomicU64,
}

impl Pipeline {
    /// Starts `iocd::pipeline::run` with `config`, storing into `database`.
    async fn start(
        args: &Args,
        config: iocd::Config,
        database: String,
    ) -> anyhow::Result<Pipeline> {
        Self::start_via(args, config, database, &args.clickhouse_url, |_| {}).await
    }

    /// [`start`](Self::start) with iocd reaching ClickHouse at `url`, with `tune` applied to
    /// its ClickHouse settings.
    async fn start_via(
        args: &Args,
        mut config: iocd::Config,
        database: String,
        url: &str,
        tune: impl FnOnce(&mut ioc_store::ClickHouseConfig),
    ) -> anyhow::Result<Pipeline> {
        config.dataflow.workers = args.workers;
        config.http.listen = "127.0.0.1:0".parse()?;
        let mut clickhouse = ioc_store::ClickHouseConfig {
            url: url.to_owned(),
            database: database.clone(),
            ..Default::default()
        };
        if let Some(wait) = args.batch_max_wait_ms {
            clickhouse.batch_max_wait_ms = wait;
        }
        if let Some(rows) = args.batch_max_rows {
            clickhouse.batch_max_rows = rows;
        }
        if let Some(quiet) = args.batch_quiet_ms {
            clickhouse.batch_quiet_ms = quiet;
        }
        tune(&mut clickhouse);
        config.clickhouse = Some(clickhouse);
        // Its own state folder (and so spool) per run and process.
        config.alerts.state_dir =
            std::env::temp_dir().join(format!("ioc-load-{database}-{}", config.cluster.process));
        let _ = std::fs::remove_dir_all(&config.alerts.state_dir);
        let listener = ioc_dashboard_api::bind(&config.http).await?;
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(iocd::pipeline::run(config, listener, async move {
            let _ = stop_rx.await;
        }));
        let client = clickhouse::Client::default()
            .with_url(&args.clickhouse_url)
            .with_database(&database)
            .with_validation(false)
            .with_setting("wait_end_of_query", "1");
        Ok(Pipeline {
            addr,
            stop,
            running,
            client,
            database,
            peak_rss_kib: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Waits until ClickHouse holds `count` readings; returns when the first rows were seen
    /// and, with `reads`, when iocd read its first and its last message (from its `/metrics`,
    /// scraped meanwhile), all counted from `started`.
    async fn wait_for(
        &self,
        count: u64,
        started: Instant,
        reads: bool,
    ) -> anyhow::Result<Milestones> {
        let (mut first_read, mut last_read, mut first_rows) = (None, None, None);
        loop {
            if reads && last_read.is_none() {
                let received = self.received().await;
                if first_read.is_none() && received > 0.0 {
                    first_read = Some(started.elapsed());
                }
                if received >= count as f64 {
                    last_read = Some(started.elapsed());
                }
            }
            let stored: u64 = self
                .client
                .query("SELECT count() FROM readings")
                .fetch_one()
                .await
                .unwrap_or(0);
            if stored > 0 && first_rows.is_none() {
                first_rows = Some(started.elapsed());
            }
            self.peak_rss_kib
                .fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
            if stored >= count {
                let first_rows = first_rows.unwrap_or_default();
                return Ok(Milestones {
                    first_read: first_read.unwrap_or(first_rows),
                    last_read: last_read.unwrap_or_else(|| started.elapsed()),
                    first_rows,
                });
            }
            if self.running.is_finished() {
                bail!("the pipeline stopped with {stored} of {count} readings stored");
            }
            if started.elapsed() > PHASE_TIMEOUT {
                bail!("only {stored} of {count} readings stored after 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Messages iocd has read from its sources, all transports and kinds.
    async fn received(&self) -> f64 {
        self.sum("ioc_ingest_received_total").await
    }

    /// A labelled metric's values from the pipeline's `/metrics`, summed over its labels.
    async fn sum(&self, name: &str) -> f64 {
        let prefix = format!("{name}{{");
        self.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            // Not `sum`: over no lines it is -0.0, printed as "-0.0".
            .fold(0.0, |total, v| total + v)
    }

    /// The largest resident set seen by [`wait_for`](Self::wait_for), KiB.
    fn peak_rss(&self) -> u64 {
        self.peak_rss_kib.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A gauge's value from the pipeline's `/metrics` (0 when absent or unreadable).
    async fn gauge(&self, name: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// The pipeline's `/metrics` text (empty when it cannot be read).
    async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = tokio::net::TcpStream::connect(self.addr).await else {
            return String::new();
        };
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let mut text = String::new();
        if stream.write_all(request.as_bytes()).await.is_err()
            || stream.read_to_string(&mut text).await.is_err()
        {
            return String::new();
        }
        text
    }

    /// Rows the pipeline has written, per table that has any: what the readings cost
    /// ClickHouse besides their own rows.
    async fn rows_written(&self) -> String {
        let prefix = "ioc_store_rows_written_total{table=\"";
        self.metrics()
            .await
            .lines()
            .filter_map(|l| {
                let (table, count) = l.strip_prefix(prefix)?.split_once("\"} ")?;
                let count: f64 = count.parse().ok()?;
                (count > 0.0).then(|| format!("{table} {count}"))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Tells the pipeline to stop, without waiting for it.
    fn signal_stop(&mut self) {
        let (unused, _) = tokio::sync::oneshot::channel();
        let _ = std::mem::replace(&mut self.stop, unused).send(());
    }

    /// Stops the pipeline and returns its database, to drop once the run's measurements are
    /// over: dropping a database deletes thousands of part files, and on a journal-less ext4
    /// every file created in the next minutes pays for them (see BENCHMARKS.md).
    async fn finish(self) -> anyhow::Result<Database> {
        let _ = self.stop.send(());
        self.running.await??;
        Ok(Database {
            client: self.client,
            name: self.database,
        })
    }
}

/// When a phase's milestones came, from its start.
struct Milestones {
    /// iocd read its first message (when not tracked: the first rows).
    first_read: Duration,
    /// iocd had read every message (when not tracked: the last rows).
    last_read: Duration,
    /// ClickHouse held the first rows.
    first_rows: Duration,
}

/// A database a phase stored into.
struct Database {
    client: clickhouse::Client,
    name: String,
}

impl Database {
    async fn drop(self) -> anyhow::Result<()> {
        self.client
            .query(&format!("DROP DATABASE IF EXISTS {}", self.name))
            .execute()
            .await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// MQTT

/// Publishes every message with QoS 1 as fast as the broker acknowledges them.
async fn publish(
    args: &Args,
    client_id: &str,
    messages: Vec<(String, Vec<u8>)>,
) -> anyhow::Result<()> {
    let mut options = MqttOptions::new(client_id, &args.mqtt_host, args.mqtt_port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    let total = messages.len();
    let publisher = client.clone();
    let sender = tokio::spawn(async move {
        for (topic, payload) in messages {
            publisher
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await?;
        }
        Ok::<_, rumqttc::ClientError>(())
    });
    // Disconnect only once every publish is acknowledged: disconnecting right after the last
    // publish is queued drops the PUBACKs of the up to 1000 still in flight.
    let mut acked = 0;
    while acked < total {
        if let Event::Incoming(Packet::PubAck(_)) =
            eventloop.poll().await.context("publisher connection")?
        {
            acked += 1;
        }
    }
    sender.await??;
    client.disconnect().await?;
    loop {
        if let Event::Outgoing(Outgoing::Disconnect) =
            eventloop.poll().await.context("publisher connection")?
        {
            break;
        }
    }
    Ok(())
}

/// The broker alone: time until a null subscriber has received every message.
async fn broker_baseline(
    args: &Args,
    run: &str,
    messages: Vec<(String, Vec<u8>)>,
) -> anyhow::Result<f64> {
    let count = messages.len();
    let mut sub = tokio::process::Command::new("mosquitto_sub")
        .args(["-h", &args.mqtt_host, "-p", &args.mqtt_port.to_string()])
        .args([
            "-i",
            &format!("load-null-{run}"),
            "-q",
            "1",
            "-t",
            "ioc/v1/#",
        ])
        .args(["-C", &count.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start mosquitto_sub")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    publish(args, &format!("load-pub-null-{run}"), messages).await?;
    tokio::time::timeout(PHASE_TIMEOUT, sub.wait())
        .await
        .context("mosquitto_sub did not receive everything")??;
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// The pipeline from MQTT: time from the first publish until ClickHouse holds every reading.
async fn mqtt_pipeline(
    args: &Args,
    run: &str,
    ack_after_store: bool,
    messages: Vec<(String, Vec<u8>)>,
) -> anyhow::Result<(f64, Database)> {
    let count = messages.len() as u64;
    let label = if ack_after_store { "store" } else { "receipt" };
    let mut config = iocd::Config::default();
    config.mqtt.host = args.mqtt_host.clone();
    config.mqtt.port = args.mqtt_port;
    config.mqtt.client_id = format!("load-iocd-{run}-{label}");
    config.mqtt.clean_session = true;
    config.mqtt.ack_after_store = ack_after_store;
    let pipeline = Pipeline::start(args, config, format!("ioc_load_{run}_{label}")).await?;
    // Ready once the schema exists and the subscription is up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    // The most MQTT messages iocd held unacknowledged, sampled every 250 ms (each sample costs
    // iocd a /metrics encoding) from the first publish until every reading is stored.
    let mut peak_unacked = 0.0f64;
    {
        let stored = async {
            publish(args, &format!("load-pub-{run}-{label}"), messages).await?;
            pipeline.wait_for(count, started, false).await
        };
        let sampling = async {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let held = pipeline.gauge("ioc_ingest_mqtt_unacked_messages").await;
                peak_unacked = peak_unacked.max(held);
            }
        };
        tokio::select! {
            done = stored => { done?; }
            () = sampling => {}
        }
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    let rows = pipeline.rows_written().await;
    #[allow(clippy::print_stdout)]
    {
        if ack_after_store {
            println!("peak unacknowledged mqtt messages (ack after store): {peak_unacked}");
        }
        println!("rows written (ack {label}): {rows}");
    }
    Ok((rate, pipeline.finish().await?))
}

#[allow(clippy::print_stdout)]
async fn mqtt(args: &Args, run: &str) -> anyhow::Result<()> {
    let messages = messages(args.readings)?;
    let load_baseline = load_average();
    let baseline = broker_baseline(args, run, messages.clone()).await?;
    let (mut load_store, mut load_receipt) = (String::new(), String::new());
    let (mut after_store, mut on_receipt) = (0.0, 0.0);
    let mut databases = Vec::new();
    let order = match args.ack_first {
        AckFirst::Store => [true, false],
        AckFirst::Receipt => [false, true],
    };
    for ack_after_store in order {
        let (load, rate) = if ack_after_store {
            (&mut load_store, &mut after_store)
        } else {
            (&mut load_receipt, &mut on_receipt)
        };
        *load = load_average();
        let database;
        (*rate, database) = mqtt_pipeline(args, run, ack_after_store, messages.clone()).await?;
        databases.push(database);
    }
    drop(messages);
    for database in databases {
        database.drop().await?;
    }
    println!(
        "transport: mqtt, readings: {}, order: null subscriber, then ack {} first",
        args.readings,
        match args.ack_first {
            AckFirst::Store => "after store",
            AckFirst::Receipt => "on receipt",
        }
    );
    println!(
        "1-min load before each: null subscriber {load_baseline}, ack after store {load_store}, \
         ack on receipt {load_receipt}"
    );
    println!("mosquitto -> null subscriber:                    {baseline:>10.0} readings/s");
    println!("mqtt -> iocd -> clickhouse, ack after store:     {after_store:>10.0} readings/s");
    println!("mqtt -> iocd -> clickhouse, ack on receipt:      {on_receipt:>10.0} readings/s");
    println!(
        "ratio ack after store / broker alone:            {:>10.2}",
        after_store / baseline
    );
    println!(
        "ratio ack on receipt / broker alone:             {:>10.2}",
        on_receipt / baseline
    );
    println!(
        "ratio ack on receipt / ack after store:          {:>10.2}",
        on_receipt / after_store
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Kafka

fn kafka_topic(run: &str, kind: Kind) -> String {
    format!("load.{run}.{}", kind.as_str())
}

fn admin(brokers: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("cannot create the kafka admin client")
}

/// Creates one topic per kind with `partitions` partitions.
async fn create_topics(brokers: &str, run: &str, partitions: i32) -> anyhow::Result<()> {
    let names: Vec<String> = Kind::ALL.iter().map(|k| kafka_topic(run, *k)).collect();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin(brokers)?.create_topics(&topics, &options).await? {
        if let Err((topic, code)) = result {
            bail!("cannot create topic {topic}: {code}");
        }
    }
    Ok(())
}

/// Deletes the run's topics, best effort (the broker here keeps them in memory).
async fn delete_topics(brokers: &str, run: &str) {
    let names: Vec<String> = Kind::ALL.iter().map(|k| kafka_topic(run, *k)).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let result = match admin(brokers) {
        Ok(a) => a.delete_topics(&names, &options).await.map_err(Into::into),
        Err(e) => Err(e),
    };
    #[allow(clippy::print_stderr)]
    match result {
        Ok(results) => {
            for r in results {
                if let Err((topic, code)) = r {
                    eprintln!("note: cannot delete topic {topic}: {code}");
                }
            }
        }
        Err(e) => eprintln!("note: cannot delete the load topics: {e:#}"),
    }
}

/// Produces every message to its kind's topic, keyed by device id with a `district` header,
/// and waits for every delivery. Returns the produce rate.
async fn produce(brokers: &str, run: &str, messages: &[(String, Vec<u8>)]) -> anyhow::Result<f64> {
    let mut sink = KafkaSink::new(brokers, &format!("load-producer-{run}"), 60_000, 20_000)
        .context("cannot create the kafka producer")?;
    let topic_of = |kind| kafka_topic(run, kind);
    let started = Instant::now();
    for (mqtt_topic, payload) in messages {
        sink.send(&topic_of, mqtt_topic, payload).await?;
    }
    sink.flush().await?;
    Ok(messages.len() as f64 / started.elapsed().as_secs_f64())
}

/// The broker and librdkafka alone: a fresh group reads every message, touching each payload
/// without decoding it. Returns the rate from the first message to the last, and the time from
/// subscribing to the first message (group join and first fetch), which the rate leaves out.
async fn bare_consumer(
    brokers: &str,
    run: &str,
    count: u64,
    extra: &[String],
) -> anyhow::Result<(f64, Duration, u64)> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS.to_string())
        .set("group.id", format!("load-bare-{run}"))
        .set("client.id", format!("load-bare-{run}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    for setting in extra {
        let (key, value) = setting
            .split_once('=')
            .with_context(|| format!("--bare-consumer-set {setting}: expected KEY=VALUE"))?;
        config.set(key, value);
    }
    let consumer: StreamConsumer<FetchCount> = config
        .create_with_context(FetchCount::default())
        .context("cannot create the bare consumer")?;
    let names: Vec<String> = Kind::ALL.iter().map(|k| kafka_topic(run, *k)).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    consumer.subscribe(&names)?;
    let subscribed = Instant::now();
    let mut first = None;
    let mut touched = 0u64;
    for _ in 0..count {
        let message = tokio::time::timeout(PHASE_TIMEOUT, consumer.recv())
            .await
            .context("the bare consumer received nothing for 10 minutes")??;
        if first.is_none() {
            first = Some(Instant::now());
        }
        if let Some(p) = message.payload() {
            touched = touched
                .wrapping_add(p.len() as u64)
                .wrapping_add(u64::from(p.first().copied().unwrap_or(0)))
                .wrapping_add(u64::from(p.last().copied().unwrap_or(0)));
        }
    }
    black_box(touched);
    let first = first.context("no message received")?;
    let rate = (count.saturating_sub(1)).max(1) as f64 / first.elapsed().as_secs_f64();
    // Polled a little longer, for the statistics of the last fetches (no message comes).
    let _ = tokio::time::timeout(
        Duration::from_millis(2 * STATISTICS_INTERVAL_MS),
        consumer.recv(),
    )
    .await;
    let fetches = consumer
        .context()
        .0
        .load(std::sync::atomic::Ordering::Relaxed);
    consumer.unsubscribe();
    Ok((rate, first.duration_since(subscribed), fetches))
}

/// How often (ms) both consumers report librdkafka's statistics, which count their fetches.
const STATISTICS_INTERVAL_MS: u64 = 500;

/// The bare consumer's context: the fetch requests it has sent, from librdkafka's statistics.
#[derive(Default)]
struct FetchCount(std::sync::atomic::AtomicU64);

impl rdkafka::ClientContext for FetchCount {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.0.store(
            ioc_ingest::fetch_requests_sent(&statistics),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

impl rdkafka::consumer::ConsumerContext for FetchCount {}

/// This process's resident set, KiB (0 where /proc is missing).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The pipeline from Kafka: time from starting iocd until ClickHouse holds every reading,
/// including schema set-up and consumer start-up, and its milestones on the way.
async fn kafka_pipeline(
    args: &Args,
    run: &str,
    count: u64,
) -> anyhow::Result<(Duration, Milestones)> {
    let mut config = iocd::Config::default();
    config.mqtt.enabled = false;
    config.kafka = KafkaConfig {
        brokers: args.kafka_brokers.clone(),
        group_id: format!("load-iocd-{run}"),
        client_id: format!("load-iocd-{run}"),
        group_instance_id: None,
        fetch_wait_max_ms: args.pipeline_fetch_wait_max_ms,
        alignment_max_drift_ms: args.alignment_max_drift_ms,
        statistics_interval_ms: STATISTICS_INTERVAL_MS,
        progress_interval_ms: args.progress_interval_ms,
        queued_max_kbytes: args.queued_max_kbytes,
        topics: KafkaTopics {
            sensor: kafka_topic(run, Kind::Sensor),
            traffic_signal: kafka_topic(run, Kind::TrafficSignal),
            camera_event: kafka_topic(run, Kind::CameraEvent),
            environment: kafka_topic(run, Kind::Environment),
        },
        ..KafkaConfig::default()
    };
    let started = Instant::now();
    let database = format!("ioc_load_{run}_kafka");
    let mut others = Vec::new();
    if args.cluster_processes > 1 {
        config.cluster.addresses = (0..args.cluster_processes)
            .map(|_| {
                let port = std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port();
                Ok(format!("127.0.0.1:{port}"))
            })
            .collect::<anyhow::Result<_>>()?;
    }
    let pipeline = Pipeline::start(args, config.clone(), database.clone()).await?;
    for process in 1..args.cluster_processes {
        // After the first has made the schema, so they do not race on it.
        while pipeline.gauge("ioc_ingest_kafka_connected").await < 1.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut config = config.clone();
        config.cluster.process = process;
        others.push(Pipeline::start(args, config, database.clone()).await?);
    }
    let milestones = pipeline.wait_for(count, started, true).await?;
    let elapsed = started.elapsed();
    let late: u64 = pipeline
        .client
        .query("SELECT count() FROM late_readings")
        .fetch_one()
        .await?;
    let rows = pipeline.rows_written().await;
    let fetches = pipeline
        .gauge("ioc_ingest_kafka_fetch_requests_total")
        .await;
    let paused = pipeline.sum("ioc_ingest_kafka_paused_seconds_total").await;
    #[allow(clippy::print_stdout)]
    {
        println!(
            "pipeline: {late} readings marked late, peak rss of ioc-load while iocd caught up: {} MiB",
            pipeline.peak_rss_kib.load(std::sync::atomic::Ordering::Relaxed) / 1024
        );
        println!("rows written: {rows}");
        println!(
            "fetch requests iocd sent (to within {STATISTICS_INTERVAL_MS} ms of the last row): {fetches}"
        );
        println!("partition-seconds paused by watermark alignment: {paused:.1}");
    }
    // A cluster stops as a whole: every process is told before any is awaited.
    for other in &mut others {
        other.signal_stop();
    }
    let database = pipeline.finish().await?;
    for other in others {
        other.running.await??;
    }
    database.drop().await?;
    Ok((elapsed, milestones))
}

#[allow(clippy::print_stdout)]
async fn kafka(args: &Args, run: &str) -> anyhow::Result<()> {
    let messages = messages(args.readings)?;
    let count = messages.len() as u64;
    let brokers = args.kafka_brokers.as_str();
    create_topics(brokers, run, args.kafka_partitions).await?;
    let result = async {
        let load_produce = load_average();
        let produced = produce(brokers, run, &messages).await?;
        drop(messages);
        let load_bare = load_average();
        let (bare, join, bare_fetches) =
            bare_consumer(brokers, run, count, &args.bare_consumer_set).await?;
        let load_pipeline = load_average();
        let (elapsed, milestones) = kafka_pipeline(args, run, count).await?;
        let rate_since = |from: Duration| count as f64 / (elapsed - from).as_secs_f64();
        let through = rate_since(Duration::ZERO);
        // Like the bare consumer's, from the first message read to the last: the schema
        // set-up and consumer start-up (with `kafka.assignment = "group"`, also the group
        // join) are left out.
        let from_read = rate_since(milestones.first_read);
        let from_rows = rate_since(milestones.first_rows);
        println!(
            "transport: kafka, readings: {count}, topics: 4 x {} partitions (load.{run}.<kind>), \
             iocd: {} process(es) x {} worker(s)",
            args.kafka_partitions, args.cluster_processes, args.workers
        );
        println!(
            "1-min load before each: produce {load_produce}, bare consumer {load_bare}, \
             pipeline {load_pipeline}"
        );
        println!("produce, every delivery acknowledged:           {produced:>10.0} readings/s");
        println!(
            "bare librdkafka consumer, 1st -> Nth message:   {bare:>10.0} readings/s \
             (group join + first fetch before it: {:.2} s, not counted)",
            join.as_secs_f64()
        );
        println!("  fetch requests it sent:                       {bare_fetches:>10}");
        println!(
            "kafka -> iocd -> clickhouse, 1st message read -> Nth row stored: \
             {from_read:>10.0} readings/s (first message read after {:.2} s, first rows \
             stored after {:.2} s, last message read after {:.2} s, last row stored after \
             {:.2} s)",
            milestones.first_read.as_secs_f64(),
            milestones.first_rows.as_secs_f64(),
            milestones.last_read.as_secs_f64(),
            elapsed.as_secs_f64()
        );
        println!(
            "  the same from iocd's start (schema set-up and consumer start-up): \
             {through:>10.0} readings/s"
        );
        println!("  the same from the first rows stored:           {from_rows:>10.0} readings/s");
        println!(
            "ratio (pipeline / bare consumer, 1st -> Nth):   {:>10.2} (from iocd's start: \
             {:.2}, from the first rows: {:.2})",
            from_read / bare,
            through / bare,
            from_rows / bare
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    delete_topics(brokers, run).await;
    result
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Sized as iocd sizes its own (`runtime.io_threads`): the pipelines run in this runtime,
    // beside all their processes' timely workers.
    let mut config = iocd::Config::default();
    config.dataflow.workers = args.workers * args.cluster_processes;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.io_threads(true))
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    // iocd's own log, on stderr, when `RUST_LOG` asks for it (to see where a run's time goes).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let run = format!("{}", std::process::id());
    match args.transport {
        TransportArg::Mqtt => mqtt(&args, &run).await,
        TransportArg::Kafka => kafka(&args, &run).await,
        TransportArg::Outage => outage::run(&args, &run).await,
    }
}
