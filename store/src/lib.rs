//! ClickHouse storage of the Da Nang IOC backend: migrations at start-up, then batched,
//! retried, idempotent inserts over HTTP (RowBinary, `clickhouse` crate).
//!
//! # Tables (migration 1)
//!
//! - `readings`: every valid reading, one long table. `ReplacingMergeTree(received_at_ms)`
//!   ordered by `(kind, device_id, event_time_ms, message_id)`, partitioned by day of event
//!   time. The raw JSON is kept in `payload`; `late` marks readings that came after the
//!   allowed lateness.
//! - `window_results`: one row per (kind, device, metric, window size, window start).
//!   `ReplacingMergeTree(version)`: a correction with a higher version replaces the row.
//! - `dead_letters`: rejected inputs with their code, reason and raw bytes (`MergeTree`).
//!
//! # KPI tables and the registry (migration 3)
//!
//! One typed table per KPI family, filled through [`Writers::kpis`] ([`KpiWriter::send`] takes
//! any [`ioc_schemas::Kpi`]), all `ReplacingMergeTree` partitioned by month of
//! `window_start`, so a replayed or recomputed KPI replaces its row:
//!
//! - `kpi_traffic`: `(scope, entity_id, window_size_ms, window_start_ms)`.
//! - `kpi_camera`: `(district, event_type, window_size_ms, window_start_ms)`.
//! - `kpi_aqi`: `(station_id, period, window_start_ms)`, version `coverage`: a period rebuilt
//!   from part of its data never replaces a complete one.
//! - `kpi_water`: `(station_id, parameter, window_size_ms, window_start_ms)`.
//! - `kpi_hydrology`: `(gauge_id, window_size_ms, window_start_ms)`, version `coverage`.
//! - `kpi_bridge`: `(device_id, window_size_ms, window_start_ms)`.
//! - `kpi_health`: `(scope, entity_id, window_size_ms, window_start_ms)`.
//! - `devices`: the registry's changes, `ReplacingMergeTree(updated_ms)` ordered by `id`,
//!   with `deleted = 1` for a removal ([`Store::save_device_change`],
//!   [`Store::load_devices`]; start-up precedence in [`StoredRegistry::overlay`]).
//!
//! Example analyst queries over them are in `store/sql/analyst_queries.sql`
//! ([`ANALYST_QUERIES_SQL`]).
//!
//! Every timestamp is a `DateTime` (seconds, UTC) beside a `UInt64` of epoch milliseconds,
//! since ClickHouse 18.16 has no `DateTime64`. Enum columns are `Enum8` in the order of the
//! `ALL` lists of `ioc-schemas`. Migrations are recorded in `<db>.schema_migrations`; a
//! re-run applies nothing ([`migrate`]).
//!
//! # Idempotency
//!
//! Replaying a reading or a window (after a crash, or a source's redelivery) writes a second
//! copy that collapses on merge; queries that must not double count read with `FINAL` (or
//! `argMax`/`GROUP BY` on the sorting key). Dead letters are a plain log and may hold a
//! replayed input twice.
//!
//! # Batching, retries, acknowledgements
//!
//! [`Store::writers`] starts one task per table behind a bounded queue of
//! `channel_capacity` rows. A task inserts a batch when it holds `batch_max_rows` rows,
//! `batch_max_wait_ms` after the batch's first row, or, once it holds at least 1,000 rows (or
//! follows a batch that did), when no row has come for `batch_quiet_ms`. A failed insert is
//! retried with exponential back-off with jitter (`retry_initial_ms` doubling to
//! `retry_max_ms`); a permanent error (a schema mismatch, say) is logged at error level and
//! retried every `retry_max_ms`, since data must not be dropped. Meanwhile the queue fills
//! and senders wait, and memory stays bounded (queue plus one batch). Each row's
//! [`ioc_schemas::Ack`] is called, in order, only after its batch's insert returned success.
//!
//! # The spool
//!
//! In iocd the writers' only sender is the drain of the [`Spool`], a durable local queue
//! (redb) that every row passes through first: the sources are acknowledged once a row is in
//! the spool, the dataflow never waits for ClickHouse, and an outage fills the spool (up to
//! `spool.max_bytes`, then ingest waits) instead of stopping the live path. See
//! [`Spool`] for the commit, drain and restart rules.
//!
//! The client runs with `.with_validation(false)` (plain RowBinary) and
//! `wait_end_of_query=1` (so errors come back as HTTP errors), which ClickHouse 18.16 and
//! current releases both accept.

mod alerts;
mod config;
mod error;
mod history;
mod kpi;
mod metrics;
mod migrate;
mod registry;
mod replay;
mod retention;
mod rows;
mod spool;
mod writer;

pub use alerts::{AlertEventRow, WebhookAttemptRow};
pub use config::ClickHouseConfig;
pub use error::{is_retryable_clickhouse, DisplayChain, SpoolError, StoreError};
pub use history::{
    kpi_table, DeadLetterQuery, KpiHistoryQuery, DEAD_LETTERS_MAX_ROWS, KPI_HISTORY_MAX_ROWS,
};
pub use kpi::{
    department_code, AqiKpiRow, BridgeKpiRow, CameraKpiRow, HealthKpiRow, HydrologyKpiRow,
    TrafficKpiRow, WaterKpiRow,
};
pub use metrics::StoreMetrics;
pub use migrate::{bootstrap_sql, migrate, migrations, Migration, MigrationReport};
pub use registry::{DeviceRow, StoredRegistry};
pub use replay::{DecodeStored, ReplayCursor, StoredReading};
pub use retention::{DroppedPartition, RetentionConfig};
pub use rows::{
    district_code, kind_code, transport_code, DeadLetterRow, LateReadingRow, ReadingRow, StoreRow,
    WindowRow,
};
pub use spool::{Spool, SpoolBacklog, SpoolConfig, SpoolMetrics, SpoolRow, WindowGap};
pub use writer::{KpiWriter, TableWriter, WriterTasks, Writers};

/// Example analyst queries over the KPI tables, separated by `;`, each after a `-- ` line
/// saying what it answers; tables are prefixed with the database `ioc.`.
pub const ANALYST_QUERIES_SQL: &str = include_str!("../sql/analyst_queries.sql");

/// A ClickHouse database and what is needed to write to it.
#[derive(Debug, Clone)]
pub struct Store {
    cfg: ClickHouseConfig,
    client: clickhouse::Client,
    metrics: StoreMetrics,
    migration: Option<MigrationReport>,
}

impl Store {
    /// Validates the configuration and applies pending migrations. Fails if ClickHouse cannot
    /// be reached ([`StoreError::is_retryable`] tells whether waiting may help).
    pub async fn connect(
        cfg: ClickHouseConfig,
        metrics: StoreMetrics,
    ) -> Result<Store, StoreError> {
        let mut store = Store::new(cfg, metrics)?;
        let report = migrate(&store.cfg).await?;
        tracing::info!(
            database = %report.database,
            applied = ?report.applied,
            "clickhouse schema up to date"
        );
        store.migration = Some(report);
        Ok(store)
    }

    /// Validates the configuration without contacting ClickHouse or migrating, for a schema
    /// managed elsewhere (and for tests of an unreachable server).
    pub fn new(cfg: ClickHouseConfig, metrics: StoreMetrics) -> Result<Store, StoreError> {
        cfg.validate()?;
        Ok(Store {
            client: cfg.client(),
            cfg,
            metrics,
            migration: None,
        })
    }

    /// Starts the writer tasks (one per table, the seven KPI tables included). Must be called
    /// within a tokio runtime.
    pub fn writers(&self) -> (Writers, WriterTasks) {
        writer::spawn_writers(&self.client, &self.cfg, &self.metrics)
    }

    /// Drops every partition past its table's retention limit (`clickhouse.retention`), `now_ms`
    /// being the time now; does nothing when retention is off.
    pub async fn enforce_retention(
        &self,
        now_ms: u64,
    ) -> Result<Vec<DroppedPartition>, StoreError> {
        if !self.cfg.retention.enabled {
            return Ok(Vec::new());
        }
        retention::enforce(
            &self.client,
            &self.cfg.database,
            &self.cfg.retention,
            now_ms,
            &self.metrics.retention_dropped,
        )
        .await
    }

    /// A client for queries against the store's database (same settings as the writers).
    pub fn client(&self) -> &clickhouse::Client {
        &self.client
    }

    /// What the start-up migration did; `None` for a store made with [`Store::new`].
    pub fn migration_report(&self) -> Option<&MigrationReport> {
        self.migration.as_ref()
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClickHouseConfig {
        &self.cfg
    }
}
