//! The daemon's configuration: one section per component, with defaults in each component's
//! `Default`. Precedence: built-in defaults, then the TOML file, then `IOC__SECTION__KEY`
//! environment variables, then command-line flags.

use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use ioc_dashboard_api::HttpConfig;
use ioc_dataflow::DataflowConfig;
use ioc_ingest::{KafkaConfig, MqttConfig};
use ioc_simulator::SimulatorConfig;
use ioc_store::ClickHouseConfig;
use serde::{Deserialize, Serialize};

/// Everything iocd can be told.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The MQTT source.
    pub mqtt: MqttConfig,
    /// The Kafka source; on when `brokers` is set.
    pub kafka: KafkaConfig,
    /// The event-time dataflow.
    pub dataflow: DataflowConfig,
    /// ClickHouse. `iocd run` always stores (the defaults reach a local server); `iocd demo`
    /// stores only when this section or `--clickhouse-url` is given.
    pub clickhouse: Option<ClickHouseConfig>,
    /// The durable local spool between the pipeline and ClickHouse.
    pub spool: ioc_store::SpoolConfig,
    /// The HTTP API.
    pub http: HttpConfig,
    /// The simulated fleet (`iocd demo` and `iocd simulate`).
    pub simulator: SimulatorConfig,
    /// The embedded MQTT broker of `iocd demo`.
    pub demo: DemoConfig,
    /// Shutdown behaviour.
    pub shutdown: ShutdownConfig,
    /// Start-up after a stop or crash.
    pub restart: RestartConfig,
    /// The device registry.
    pub registry: crate::registry::RegistryConfig,
    /// Alert rules, the alert lifecycle and department webhooks.
    pub alerts: ioc_alerts::AlertsConfig,
    /// The processes of a multi-process timely cluster ([scaling out](operations.md#scaling-out));
    /// none by default.
    pub cluster: ioc_dataflow::ClusterConfig,
    /// The threads that run the sources, the store's writers and the API.
    pub runtime: RuntimeConfig,
}

/// The tokio runtime beside the dataflow's timely workers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Threads of the tokio runtime that runs the sources, the store's writers and the API.
    /// 0: one per core not taken by a timely worker (`dataflow.workers`), and at least one.
    /// More threads than cores cost time in waking and parking them.
    pub io_threads: usize,
}

/// How windows open at the last stop are rebuilt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RestartConfig {
    /// Rebuild the open windows from the stored readings at start-up.
    pub rebuild_windows: bool,
    /// How far (ms) before the last watermark the rebuild starts, so windows that closed just
    /// before a crash, whose results may not have been stored yet, come out again.
    pub rebuild_margin_ms: u64,
    /// How long a start waits for ClickHouse before it goes live without it. The windows that
    /// needed the last run's stored readings are then left out, and recomputed from ClickHouse
    /// once it is back and holds their readings.
    pub clickhouse_wait_ms: u64,
}

impl Default for RestartConfig {
    fn default() -> Self {
        RestartConfig {
            rebuild_windows: true,
            rebuild_margin_ms: 60_000,
            clickhouse_wait_ms: 10_000,
        }
    }
}

/// The embedded broker of the demo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// Where the embedded MQTT broker listens.
    pub broker_listen: String,
    /// Without a `[clickhouse]` section or `--clickhouse-url`: store in a ClickHouse that
    /// answers at the default URL (`http://127.0.0.1:8123`, database `ioc`) if one does.
    /// Otherwise, or when false, nothing is stored and KPI history is kept in memory.
    pub find_clickhouse: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            broker_listen: "127.0.0.1:1884".into(),
            find_clickhouse: true,
        }
    }
}

/// How long a shutdown may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Longest wait (ms) for the spool's rows to reach ClickHouse on shutdown; rows not
    /// inserted by then stay in the spool and are inserted at the next start.
    pub flush_timeout_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            flush_timeout_ms: 30_000,
        }
    }
}

/// Loads the configuration: defaults, then `file` if given, then the environment, then
/// `overrides` (flags, as a partial config).
pub fn load(file: Option<&Path>, overrides: Figment) -> Result<Config, Box<figment::Error>> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(Box::new(figment::Error::from(format!(
                "config file {} does not exist",
                path.display()
            ))));
        }
        figment = figment.merge(Toml::file(path));
    }
    figment
        .merge(Env::prefixed("IOC__").split("__"))
        .merge(overrides)
        .extract()
        .map(Config::for_this_process)
        .map_err(Box::new)
}

impl Config {
    /// The tokio runtime's threads ([`RuntimeConfig::io_threads`]); `dataflow` says whether
    /// the command runs the dataflow beside it.
    pub fn io_threads(&self, dataflow: bool) -> usize {
        if self.runtime.io_threads > 0 {
            return self.runtime.io_threads;
        }
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let taken = if dataflow { self.dataflow.workers } else { 0 };
        cores.saturating_sub(taken).max(1)
    }

    /// In a cluster, what must differ between processes that share one file: each has its own
    /// state folder (`process-N` inside the configured one; with it its own spool, MQTT session
    /// and Kafka instance id), an MQTT client id and Kafka instance id set in the file get
    /// `-process-N` (two clients with one id knock each other off the broker), and the MQTT
    /// subscriptions are shared among the processes (`$share/<kafka.group_id>/...`), so each
    /// message goes to one of them.
    fn for_this_process(mut self) -> Config {
        if !self.cluster.is_cluster() {
            return self;
        }
        let own = format!("process-{}", self.cluster.process);
        self.alerts.state_dir = self.alerts.state_dir.join(&own);
        if !self.spool.dir.as_os_str().is_empty() {
            self.spool.dir = self.spool.dir.join(&own);
        }
        if !self.mqtt.client_id.is_empty() {
            self.mqtt.client_id = format!("{}-{own}", self.mqtt.client_id);
        }
        if let Some(id) = &mut self.kafka.group_instance_id {
            *id = format!("{id}-{own}");
        }
        for topic in &mut self.mqtt.topics {
            if !topic.starts_with("$share/") {
                *topic = format!("$share/{}/{topic}", self.kafka.group_id);
            }
        }
        self
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail fixes the closure type.
mod tests {
    use super::*;
    use figment::providers::Serialized;

    #[test]
    fn file_then_environment_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "iocd.toml",
                "[mqtt]\nhost = \"broker.example\"\nport = 1999\n[dataflow]\nworkers = 3\n",
            )?;
            jail.set_env("IOC__MQTT__PORT", "2000");
            jail.set_env("IOC__DATAFLOW__ALLOWED_LATENESS_MS", "1234");
            let flags = Figment::from(Serialized::default("dataflow.workers", 4));
            let c = load(Some(Path::new("iocd.toml")), flags).expect("loads");
            assert_eq!(c.mqtt.host, "broker.example");
            assert_eq!(c.mqtt.port, 2000);
            assert_eq!(c.dataflow.allowed_lateness_ms, 1234);
            assert_eq!(c.dataflow.workers, 4);
            assert!(c.clickhouse.is_none());
            Ok(())
        });
    }

    #[test]
    fn cluster_processes_get_their_own_state_and_share_mqtt() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "iocd.toml",
                "[cluster]\naddresses = [\"127.0.0.1:7001\", \"127.0.0.1:7002\"]\n\
                 [mqtt]\nclient_id = \"ioc-main\"\n[kafka]\ngroup_instance_id = \"ioc-k\"\n",
            )?;
            jail.set_env("IOC__CLUSTER__PROCESS", "1");
            let c = load(Some(Path::new("iocd.toml")), Figment::new()).expect("loads");
            assert_eq!(c.cluster.process, 1);
            assert!(c.alerts.state_dir.ends_with("process-1"));
            assert_eq!(c.mqtt.topics, vec!["$share/iocd/ioc/v1/#".to_owned()]);
            // Ids set in the shared file differ per process.
            assert_eq!(c.mqtt.client_id, "ioc-main-process-1");
            assert_eq!(
                c.kafka.group_instance_id.as_deref(),
                Some("ioc-k-process-1")
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("iocd.toml", "[mqtt]\nhots = \"x\"\n")?;
            let e = load(Some(Path::new("iocd.toml")), Figment::new()).unwrap_err();
            assert!(e.to_string().contains("hots"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn the_runtime_takes_the_cores_the_workers_leave() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let mut c = Config::default();
        c.dataflow.workers = 1;
        assert_eq!(c.io_threads(true), cores.saturating_sub(1).max(1));
        assert_eq!(c.io_threads(false), cores, "no dataflow beside it");
        c.dataflow.workers = cores + 3;
        assert_eq!(c.io_threads(true), 1, "at least one");
        c.runtime.io_threads = 7;
        assert_eq!(c.io_threads(true), 7, "set, it wins");
    }

    #[test]
    fn the_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../iocd.example.toml");
        let c = load(Some(&path), Figment::new()).expect("example config loads");
        assert!(c.clickhouse.is_some());
    }
}
