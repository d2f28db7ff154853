//! Helpers for the tests that run iocd as a process against the real Kafka broker
//! (127.0.0.1:9092) and ClickHouse.

#![allow(dead_code)] // each test file uses a different part

pub mod private_clickhouse;
pub mod webhooks;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ioc_schemas::{Body, District, EventTime, Reading, SensorBody};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const KAFKA: &str = "127.0.0.1:9092";
pub const KINDS: [&str; 4] = ["sensor", "traffic_signal", "camera_event", "environment"];

/// A unique id for this test run.
pub fn run_id(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{test}_{}_{nanos}", std::process::id())
}

/// Creates one topic per kind, `<prefix>.<kind>`, with `partitions` partitions.
pub async fn create_topics(prefix: &str, partitions: i32) {
    create_topics_of(prefix, &KINDS, partitions).await;
}

/// Creates `<prefix>.<kind>` for each of `kinds`, with `partitions` partitions.
pub async fn create_topics_of(prefix: &str, kinds: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .create()
        .unwrap();
    let names: Vec<String> = kinds.iter().map(|k| format!("{prefix}.{k}")).collect();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .unwrap();
    for r in results {
        r.unwrap();
    }
}

/// A sensor reading of `device` at `t`, as produced to Kafka.
pub fn gauge_reading(run: &str, device: usize, seq: usize, t: u64) -> Reading {
    Reading {
        message_id: format!("{run}-{device}-{seq}"),
        device_id: format!("gauge-{device:03}"),
        event_time: EventTime(t),
        body: Body::Sensor(SensorBody {
            metric: "water_level_m".into(),
            // Whole numbers, so sums are exact whatever the order.
            value: ((device * 7 + seq * 13) % 50) as f64,
            unit: "m".into(),
        }),
    }
}

pub fn district_of(device: usize) -> District {
    District::ALL[device % District::ALL.len()]
}

/// A producer for the test broker. One record per batch: tansu 0.6.0 answers a fetch that
/// starts inside a record batch with the batches after it, so a consumer resuming mid-batch (a
/// restart from a commit, a resume after a pause) would skip the rest of that batch; Kafka
/// returns the whole batch and the client skips what it has.
pub fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .set("linger.ms", "5")
        .set("batch.num.messages", "1")
        .create()
        .unwrap()
}

/// Produces readings to `<prefix>.sensor`, keyed by device, waiting for every delivery.
pub async fn produce(prefix: &str, readings: &[(Reading, District)]) {
    let producer = producer();
    let topic = format!("{prefix}.sensor");
    let mut pending = Vec::new();
    for (reading, district) in readings {
        let payload = serde_json::to_vec(reading).unwrap();
        let headers = OwnedHeaders::new().insert(Header {
            key: "district",
            value: Some(district.slug()),
        });
        let record = FutureRecord::to(&topic)
            .key(reading.device_id.as_str())
            .payload(&payload)
            .headers(headers);
        pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        if pending.len() >= 1000 {
            for p in pending.drain(..) {
                p.await.unwrap().map_err(|(e, _)| e).unwrap();
            }
        }
    }
    for p in pending {
        p.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

/// An iocd process.
pub struct Iocd {
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for Iocd {
    /// A failed test must not leave iocd running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Iocd {
    /// Starts `iocd run` with `config` (TOML), logging to `<dir>/<name>.log`.
    pub fn start(dir: &Path, name: &str, config: &str) -> Iocd {
        let config_path = dir.join(format!("{name}.toml"));
        std::fs::write(&config_path, config).unwrap();
        Iocd::start_with(dir, name, &config_path, &[], &[])
    }

    /// Starts `iocd run --config <config_path>` with more `args` and environment `env`,
    /// logging to `<dir>/<name>.log`.
    pub fn start_with(
        dir: &Path,
        name: &str,
        config_path: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Iocd {
        let log = dir.join(format!("{name}.log"));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_iocd"))
            .args(["run", "--config"])
            .arg(config_path)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap();
        Iocd { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no flush, no commit.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGINT, then waits for a clean exit.
    pub fn stop(self) {
        self.interrupt();
        self.wait_for_clean_exit();
    }

    /// SIGINT, as Ctrl-C.
    pub fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to 60 s for the process to exit, and checks it exited cleanly.
    pub fn wait_for_clean_exit(mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "iocd exited with {status}; see {}",
                    self.log.display()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "iocd did not stop; see {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

/// A config for a Kafka-only iocd.
pub fn kafka_config(
    prefix: &str,
    group: &str,
    clickhouse_url: &str,
    database: &str,
    http_port: u16,
    extra: &str,
) -> String {
    let state_dir = state_dir(group);
    format!(
        r#"
[mqtt]
enabled = false
[alerts]
state_dir = "{state_dir}"
[kafka]
brokers = "{KAFKA}"
group_id = "{group}"
client_id = "{group}"
group_instance_id = "{group}"
commit_interval_ms = 200
[kafka.topics]
sensor = "{prefix}.sensor"
traffic_signal = "{prefix}.traffic_signal"
camera_event = "{prefix}.camera_event"
environment = "{prefix}.environment"
[clickhouse]
url = "{clickhouse_url}"
database = "{database}"
batch_max_wait_ms = 100
# The tests' event times are fixed dates: no partition of theirs may age out mid-test.
retention = {{ enabled = false }}
[http]
listen = "127.0.0.1:{http_port}"
{extra}
"#
    )
}

/// A private alert state folder for one test's iocd (the same for a restart of it).
pub fn state_dir(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("iocd-state-{name}"))
        .display()
        .to_string()
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn clickhouse(url: &str, database: &str) -> clickhouse::Client {
    clickhouse::Client::default()
        .with_url(url)
        .with_database(database)
        .with_validation(false)
        .with_setting("wait_end_of_query", "1")
}

/// Drops a test's database from the shared ClickHouse.
pub async fn drop_database(database: &str) {
    clickhouse("http://127.0.0.1:8123", "default")
        .query(&format!("DROP DATABASE IF EXISTS {database}"))
        .execute()
        .await
        .unwrap();
}

/// `(count with FINAL, distinct message ids)` of the readings table; zeros while it is absent.
pub async fn stored_readings(client: &clickhouse::Client) -> (u64, u64) {
    client
        .query("SELECT count(), uniqExact(message_id) FROM readings FINAL")
        .fetch_one()
        .await
        .unwrap_or((0, 0))
}

/// `(count, sum, min, max)` of a window, as the tests' independent computations keep it.
pub type WindowStats = (u64, f64, f64, f64);

/// A window with no reading yet.
pub const EMPTY_WINDOW: WindowStats = (0, 0.0, f64::MAX, f64::MIN);

/// Counts `v` in window `w`.
pub fn count_in(w: &mut WindowStats, v: f64) {
    w.0 += 1;
    w.1 += v;
    w.2 = w.2.min(v);
    w.3 = w.3.max(v);
}

/// `(late readings in the ledger, readings stored with late = 1)`.
pub async fn late_counts(client: &clickhouse::Client) -> (u64, u64) {
    let ledger: u64 = client
        .query("SELECT count() FROM late_readings")
        .fetch_one()
        .await
        .unwrap();
    let flagged: u64 = client
        .query("SELECT count() FROM readings FINAL WHERE late = 1")
        .fetch_one()
        .await
        .unwrap();
    (ledger, flagged)
}

/// Waits until `f` is true, for up to `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Extra lines for the sections [`kafka_config`] already emits (TOML keys cannot be repeated,
/// so they must go inside those sections), plus free-form text for any other section.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConfigExtra<'a> {
    /// Lines added to `[kafka]`, such as `queued_max_kbytes = 1024`.
    pub kafka: &'a str,
    /// Lines added to `[clickhouse]`, such as `channel_capacity = 2000`.
    pub clickhouse: &'a str,
    /// Lines added to `[http]`.
    pub http: &'a str,
    /// Appended at the end: whole sections [`kafka_config`] does not emit (`[dataflow]`, ...).
    pub sections: &'a str,
}

/// [`kafka_config`] with extra keys in the sections it emits.
pub fn kafka_config_with(
    prefix: &str,
    group: &str,
    clickhouse_url: &str,
    database: &str,
    http_port: u16,
    extra: ConfigExtra<'_>,
) -> String {
    let base = kafka_config(
        prefix,
        group,
        clickhouse_url,
        database,
        http_port,
        extra.sections,
    );
    let insert_before = |text: String, header: &str, lines: &str| -> String {
        if lines.trim().is_empty() {
            return text;
        }
        // `header` starts with the newline ending the previous line: insert after it.
        let at = 1 + text
            .find(header)
            .unwrap_or_else(|| panic!("kafka_config emits no `{header}`"));
        let lines = lines.trim_end();
        format!("{}{lines}\n{}", &text[..at], &text[at..])
    };
    // The section after each one extended: its extra lines go just before that header.
    let config = insert_before(base, "\n[kafka.topics]\n", extra.kafka);
    let config = insert_before(config, "\n[http]\n", extra.clickhouse);
    // `[http]` is followed by the listen line; its extra lines go right after that line.
    match extra.http.trim() {
        "" => config,
        http => {
            let listen = format!("listen = \"127.0.0.1:{http_port}\"\n");
            config.replacen(&listen, &format!("{listen}{http}\n"), 1)
        }
    }
}

/// Publishes with QoS 1, in order, and waits for every PUBACK.
pub async fn publish_all(client_id: &str, messages: Vec<(String, Vec<u8>)>) {
    publish_to(1883, client_id, 1, messages).await;
}

/// Publishes with QoS 1 to the broker on `port`, up to `inflight` at a time, payloads up to
/// 1 MiB, and waits for every PUBACK.
pub async fn publish_to(
    port: u16,
    client_id: &str,
    inflight: u16,
    messages: Vec<(String, Vec<u8>)>,
) {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(10));
    options.set_max_packet_size(1 << 20, 1 << 20);
    options.set_inflight(inflight);
    let (client, mut eventloop) = AsyncClient::new(options, messages.len() + 10);
    let expected = messages.len();
    let sender = tokio::spawn(async move {
        for (topic, payload) in messages {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
        client
    });
    let mut acked = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked < expected {
        assert!(
            Instant::now() < deadline,
            "only {acked}/{expected} acknowledged"
        );
        match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => panic!("publisher connection failed: {e}"),
        }
    }
    let client = sender.await.unwrap();
    client.disconnect().await.unwrap();
}

/// The sum of a metric's series on `/metrics` at `addr` whose line contains `labels` (empty:
/// every series of it).
pub async fn scrape_metric(addr: SocketAddr, name: &str, labels: &str) -> f64 {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return 0.0;
    };
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One HTTP/1.1 request; `(0, Null)` while nothing listens yet.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    http_as(addr, method, path, body, None).await
}

/// [`http`] with a bearer token.
pub async fn http_as(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let auth = token.map_or_else(String::new, |t| format!("authorization: Bearer {t}\r\n"));
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return (0, serde_json::Value::Null);
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let text = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        status,
        serde_json::from_str(text).unwrap_or(serde_json::Value::Null),
    )
}

/// An in-process pipeline (`iocd::pipeline::run`) serving its API on a free port.
pub struct Pipeline {
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Pipeline {
    /// Starts the pipeline (access control off) and waits until `/healthz` says it is up, plus
    /// a moment for the MQTT subscription to settle.
    pub async fn start(mut config: iocd::Config) -> Pipeline {
        config.http.listen = "127.0.0.1:0".parse().unwrap();
        // These tests are about the pipeline; access control has its own.
        config.http.auth.enabled = false;
        let listener = ioc_dashboard_api::bind(&config.http).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(iocd::pipeline::run(config, listener, async move {
            let _ = stopped.await;
        }));
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(addr, "GET", "/healthz", "").await.0 != 200 {
            assert!(Instant::now() < deadline, "pipeline never became healthy");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        Pipeline { addr, stop, task }
    }

    /// Shuts it down as Ctrl-C would, and checks it ended cleanly.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}
