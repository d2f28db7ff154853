//! `iocd`: the Da Nang IOC streaming backend.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use figment::providers::Serialized;
use figment::Figment;
use iocd::config::{self, Config};
use tracing::Instrument;

/// mimalloc (v3): the hot path allocates a reading's strings on ingest's threads and frees
/// them on the dataflow's; glibc's malloc made that the largest cost of a worker
/// (BENCHMARKS.md, "mimalloc v3").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Da Nang IOC streaming backend.
#[derive(Debug, Parser)]
#[command(name = "iocd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Everything in one process: an embedded MQTT broker, the simulated fleet, the pipeline
    /// and the dashboard API. Needs no services.
    Demo(DemoArgs),
    /// The pipeline against external MQTT and ClickHouse.
    Run(RunArgs),
    /// Publish the simulated fleet to an external MQTT broker.
    Simulate(SimulateArgs),
    /// Recompute the windows of a time range from the raw readings in ClickHouse, late ones
    /// included, and write them as new versions.
    Backfill(BackfillArgs),
}

#[derive(Debug, Args)]
struct BackfillArgs {
    /// Configuration file (TOML); its [clickhouse] and [dataflow] sections are used.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Start of the range, RFC 3339 (`2026-11-28T00:00:00+07:00`) or epoch ms.
    #[arg(long)]
    from: String,
    /// End of the range (exclusive), RFC 3339 or epoch ms.
    #[arg(long)]
    to: String,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Configuration file (TOML); optional.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the HTTP API listens.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Store in this ClickHouse (HTTP URL), e.g. http://127.0.0.1:8123.
    #[arg(long)]
    clickhouse_url: Option<String>,
    /// At most this many simulated messages per second (at least 1). Devices send at their
    /// registry intervals, about 27.5 messages a second for Da Nang's fleet; a lower ceiling
    /// stretches every interval, and the demo registers the stretched ones.
    #[arg(long)]
    rate: Option<f64>,
    /// Where the embedded MQTT broker listens (`127.0.0.1:0` for any free port).
    #[arg(long)]
    broker_listen: Option<String>,
    /// Store nothing, even if a ClickHouse answers at the default URL: KPI history and dead
    /// letters are kept in memory (`[demo] find_clickhouse = false`).
    #[arg(long, conflicts_with = "clickhouse_url")]
    no_clickhouse: bool,
    /// Start from an empty state folder: the alerts, webhook outbox and spool an earlier demo
    /// left in `[alerts] state_dir` are deleted first.
    #[arg(long)]
    fresh: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Configuration file (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the HTTP API listens.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
struct SimulateArgs {
    /// Configuration file (TOML); its [simulator] and [mqtt] sections are used.
    #[arg(long)]
    config: Option<PathBuf>,
    /// MQTT broker host.
    #[arg(long)]
    mqtt_host: Option<String>,
    /// MQTT broker port.
    #[arg(long)]
    mqtt_port: Option<u16>,
    /// Messages per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Seed of the fleet and the readings.
    #[arg(long)]
    seed: Option<u64>,
    /// Share of malformed messages, 0–1.
    #[arg(long)]
    malformed_share: Option<f64>,
    /// Share of messages sent out of order, 0–1.
    #[arg(long)]
    out_of_order_share: Option<f64>,
    /// Publish to these Kafka brokers (`host:port,...`), one topic per kind as in [kafka]
    /// topics, instead of MQTT.
    #[arg(long)]
    kafka: Option<String>,
}

/// Flag overrides as a partial configuration, merged last.
fn flags(pairs: Vec<(&str, Option<figment::value::Value>)>) -> Figment {
    pairs
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .fold(Figment::new(), |f, (k, v)| {
            f.merge(Serialized::default(k, v))
        })
}

fn value<T: serde::Serialize>(v: Option<T>) -> Option<figment::value::Value> {
    v.and_then(|v| figment::value::Value::serialize(v).ok())
}

async fn ctrl_c() {
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::error!(error = %e, "cannot listen for ctrl-c; running until killed");
        std::future::pending::<()>().await;
    }
}

/// The log filter: `RUST_LOG`, or `info`. The demo's embedded broker (rumqttd) stays quiet
/// unless `RUST_LOG` names it: at `debug` it logs an `ERROR no-connection id N is already
/// gone` for each ordinary disconnect.
fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_new(log_directives(rust_log)).unwrap_or_else(|e| {
        eprintln!("RUST_LOG is not a valid filter ({e}); logging at info");
        tracing_subscriber::EnvFilter::new(log_directives(None))
    })
}

fn log_directives(rust_log: Option<&str>) -> String {
    let asked = rust_log
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .unwrap_or("info");
    if asked.contains("rumqttd") {
        asked.to_owned()
    } else {
        format!("{asked},rumqttd=off")
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(log_filter(std::env::var("RUST_LOG").ok().as_deref()))
        .init();
    let cli = Cli::parse();
    // The configuration comes first: it sizes the runtime.
    let (config, dataflow) = match &cli.command {
        Command::Demo(args) => (demo_config(args)?, true),
        Command::Run(args) => (run_config(args)?, true),
        Command::Simulate(args) => (simulate_config(args)?, false),
        Command::Backfill(args) => (config::load(args.config.as_deref(), Figment::new())?, true),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.io_threads(dataflow))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Demo(args) => Box::pin(demo(args, config)).await,
            Command::Run(_) => run(config).await,
            Command::Simulate(args) => simulate(args, config).await,
            Command::Backfill(args) => backfill(args, config).await,
        }
    })
}

fn demo_config(args: &DemoArgs) -> anyhow::Result<Config> {
    let overrides = flags(vec![
        ("http.listen", value(args.listen.map(|a| a.to_string()))),
        ("clickhouse.url", value(args.clickhouse_url.as_deref())),
        ("simulator.rate_per_s", value(args.rate)),
        ("demo.broker_listen", value(args.broker_listen.as_deref())),
        (
            "demo.find_clickhouse",
            value(args.no_clickhouse.then_some(false)),
        ),
    ]);
    Ok(config::load(args.config.as_deref(), overrides)?)
}

async fn demo(args: DemoArgs, mut config: Config) -> anyhow::Result<()> {
    // Before anything is printed: a second demo on the same folder or broker port stops here.
    let state = iocd::instance::lock_state_dir(&config.alerts.state_dir)?;
    if args.fresh {
        let removed = iocd::instance::clear_state_dir(&config.alerts.state_dir)?;
        tracing::info!(dir = %config.alerts.state_dir.display(), removed, "starting fresh: the earlier state is deleted");
    }
    if config.registry.path.is_none() {
        // The fleet the simulator plays, with the intervals it sends at (a low `--rate`
        // stretches them), so device health expects what actually comes.
        let fleet = config.alerts.state_dir.join("demo-fleet.json");
        std::fs::write(&fleet, serde_json::to_vec(&config.simulator.registry())?)
            .with_context(|| format!("cannot write the demo's fleet to {}", fleet.display()))?;
        config.registry.path = Some(fleet);
    }
    let broker = iocd::broker::start_embedded_broker(&config.demo.broker_listen)?;
    let (host, port) = (broker.ip().to_string(), broker.port());
    config.mqtt.host = host.clone();
    config.mqtt.port = port;
    iocd::instance::fill_instance_ids(&mut config);
    if config.simulator.client_id == ioc_simulator::SimulatorConfig::default().client_id {
        config.simulator.client_id = format!("{}-sim", config.mqtt.client_id);
    }
    let mut found_clickhouse = false;
    if config.clickhouse.is_none() && config.demo.find_clickhouse {
        let default = ioc_store::ClickHouseConfig::default();
        if clickhouse_answers(&default.url).await {
            config.clickhouse = Some(default);
            found_clickhouse = true;
        }
    }

    // A fresh admin token for this run, unless access control is off.
    let demo_token = if config.http.auth.enabled {
        let token = ioc_dashboard_api::generate_token()?;
        config
            .http
            .auth
            .tokens
            .push(ioc_dashboard_api::TokenSpec::from_token(
                "demo-admin",
                ioc_schemas::Role::Admin,
                None,
                &token,
            ));
        Some(token)
    } else {
        None
    };
    let listener = ioc_dashboard_api::bind(&config.http).await?;
    let addr = listener.local_addr()?;
    #[allow(clippy::print_stdout)]
    {
        println!("Da Nang IOC demo");
        match &demo_token {
            Some(token) => println!(
                "  api token:  {token}  (admin, this run only: send `Authorization: Bearer <token>`, or ?token= on /ws)"
            ),
            None => println!("  api token:  none needed (http.auth.enabled = false)"),
        }
        println!("  page:       http://{addr}/  (log in with the token)");
        println!("  api:        http://{addr}/api/v1/...  (described at /openapi.json)");
        println!("  health:     http://{addr}/healthz");
        println!("  metrics:    http://{addr}/metrics");
        println!("  live feed:  ws://{addr}/ws  (send {{\"type\":\"subscribe\"}})");
        println!("  mqtt:       {host}:{port}  (topics ioc/v1/<kind>/<district>/<device>)");
        match &config.clickhouse {
            Some(ch) if found_clickhouse => println!(
                "  clickhouse: {} database {}: a ClickHouse was found running there and everything is stored in it (--no-clickhouse keeps everything in memory instead)",
                ch.url, ch.database
            ),
            Some(ch) => println!("  clickhouse: {} database {}", ch.url, ch.database),
            None if !config.demo.find_clickhouse => println!(
                "  clickhouse: none (--no-clickhouse or [demo] find_clickhouse = false); KPI history and dead letters are kept in memory"
            ),
            None => println!(
                "  clickhouse: none found at {} (add --clickhouse-url to store results); KPI history and dead letters are kept in memory",
                ioc_store::ClickHouseConfig::default().url
            ),
        }
        println!(
            "  state:      {}{}",
            config.alerts.state_dir.display(),
            if args.fresh {
                " (started fresh)"
            } else {
                " (alerts and their state carry over between runs; --fresh starts empty)"
            }
        );
        println!("Press Ctrl-C to stop.");
    }

    let simulator = config.simulator.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sim = tokio::spawn(
        async move {
            // Give the broker and the subscription a moment before the fleet starts talking.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let mut stop = stop_rx;
            ioc_simulator::publish_mqtt(&simulator, &host, port, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
        }
        .instrument(tracing::info_span!("demo_simulator")),
    );
    let shutdown = async move {
        ctrl_c().await;
        let _ = stop_tx.send(true);
    };
    iocd::pipeline::run(config, listener, shutdown).await?;
    drop(state);
    match sim.await {
        Ok(Ok(report)) => tracing::info!(?report, "simulator stopped"),
        Ok(Err(e)) => tracing::warn!(error = %e, "simulator failed"),
        Err(e) => tracing::warn!(error = %e, "simulator task failed"),
    }
    Ok(())
}

/// Whether a ClickHouse answers `/ping` at `url` (plain `http://host:port`) within half a
/// second.
async fn clickhouse_answers(url: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(authority) = url.strip_prefix("http://").map(|r| r.trim_end_matches('/')) else {
        return false;
    };
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await.ok()?;
        let request = format!("GET /ping HTTP/1.0\r\nHost: {authority}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        Some(answer.ends_with(b"Ok.\n"))
    };
    tokio::time::timeout(std::time::Duration::from_millis(500), probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

fn run_config(args: &RunArgs) -> anyhow::Result<Config> {
    let overrides = flags(vec![(
        "http.listen",
        value(args.listen.map(|a| a.to_string())),
    )]);
    Ok(config::load(args.config.as_deref(), overrides)?)
}

async fn run(mut config: Config) -> anyhow::Result<()> {
    config.clickhouse.get_or_insert_with(Default::default);
    let _state = iocd::instance::lock_state_dir(&config.alerts.state_dir)?;
    let listener = ioc_dashboard_api::bind(&config.http).await?;
    tracing::info!(addr = %listener.local_addr()?, "iocd running");
    iocd::pipeline::run(config, listener, ctrl_c()).await
}

fn simulate_config(args: &SimulateArgs) -> anyhow::Result<Config> {
    let overrides = flags(vec![
        ("mqtt.host", value(args.mqtt_host.as_deref())),
        ("mqtt.port", value(args.mqtt_port)),
        ("simulator.rate_per_s", value(args.rate)),
        ("simulator.max_messages", value(args.count)),
        ("simulator.seed", value(args.seed)),
        ("simulator.malformed_share", value(args.malformed_share)),
        (
            "simulator.out_of_order_share",
            value(args.out_of_order_share),
        ),
    ]);
    Ok(config::load(args.config.as_deref(), overrides)?)
}

async fn simulate(args: SimulateArgs, config: Config) -> anyhow::Result<()> {
    let report = match args.kafka {
        Some(brokers) => {
            let topics = config.kafka.topics.clone();
            ioc_simulator::publish_kafka(
                &config.simulator,
                &brokers,
                |kind| topics.topic(kind).to_owned(),
                ctrl_c(),
            )
            .await
        }
        None => {
            ioc_simulator::publish_mqtt(
                &config.simulator,
                &config.mqtt.host,
                config.mqtt.port,
                ctrl_c(),
            )
            .await
        }
    }
    .context("simulator")?;
    tracing::info!(?report, "published");
    Ok(())
}

fn parse_time(text: &str) -> anyhow::Result<u64> {
    ioc_schemas::EventTime::parse_ms_or_rfc3339(text)
        .map(|t| t.0)
        .map_err(|e| anyhow::anyhow!(e))
}

async fn backfill(args: BackfillArgs, config: Config) -> anyhow::Result<()> {
    let (from, to) = (parse_time(&args.from)?, parse_time(&args.to)?);
    let report = iocd::backfill::backfill(&config, from, to).await?;
    tracing::info!(
        readings = report.readings,
        windows = report.windows,
        "backfill done"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers one connection with `answer`.
    async fn answering(answer: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 256];
            let _ = socket.read(&mut request).await;
            socket.write_all(answer).await.unwrap();
        });
        format!("http://{addr}")
    }

    #[test]
    fn the_embedded_broker_stays_quiet_unless_named() {
        let filter = log_directives;
        assert_eq!(filter(None), "info,rumqttd=off");
        assert_eq!(filter(Some("debug")), "debug,rumqttd=off");
        assert_eq!(
            filter(Some("info,ioc_ingest=debug")),
            "info,ioc_ingest=debug,rumqttd=off"
        );
        assert_eq!(filter(Some("debug,rumqttd=info")), "debug,rumqttd=info");
        // Every one of them is a filter tracing accepts.
        for asked in [None, Some("debug"), Some("warn,ioc_store=trace")] {
            assert!(tracing_subscriber::EnvFilter::try_new(filter(asked)).is_ok());
        }
    }

    #[tokio::test]
    async fn the_demo_finds_only_a_clickhouse_that_answers_its_ping() {
        let clickhouse = answering(b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nOk.\n").await;
        assert!(clickhouse_answers(&clickhouse).await);
        let other = answering(b"HTTP/1.0 404 Not Found\r\n\r\nno").await;
        assert!(!clickhouse_answers(&other).await);
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        assert!(!clickhouse_answers(&format!("http://{closed}")).await);
        assert!(!clickhouse_answers("https://127.0.0.1:8443").await);
    }
}
