//! Batched, retried writers: one task per table behind a bounded queue.

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use ioc_schemas::{Ack, Kpi};
use prometheus::IntGauge;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::alerts::{AlertEventRow, WebhookAttemptRow};
use crate::config::ClickHouseConfig;
use crate::error::{is_retryable_clickhouse, DisplayChain, StoreError};
use crate::kpi::{
    AqiKpiRow, BridgeKpiRow, CameraKpiRow, HealthKpiRow, HydrologyKpiRow, TrafficKpiRow,
    WaterKpiRow,
};
use crate::metrics::{StoreMetrics, TableMetrics};
use crate::rows::{DeadLetterRow, LateReadingRow, ReadingRow, StoreRow, WindowRow};

/// A handle that queues rows for one table. Cheap to clone; the table's task finishes (after
/// a last flush) once every clone is dropped.
pub struct TableWriter<R> {
    tx: mpsc::Sender<(R, Option<Ack>)>,
    queued: IntGauge,
}

impl<R> Clone for TableWriter<R> {
    fn clone(&self) -> Self {
        TableWriter {
            tx: self.tx.clone(),
            queued: self.queued.clone(),
        }
    }
}

impl<R: StoreRow> std::fmt::Debug for TableWriter<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter")
            .field("table", &R::TABLE)
            .finish_non_exhaustive()
    }
}

impl<R: StoreRow> TableWriter<R> {
    /// Queues a row, waiting while the queue is full (backpressure). `ack` is called once
    /// the row's batch is durably inserted. Fails only when the writer task has stopped; the
    /// ack is then dropped uncalled, so the source redelivers.
    pub async fn send(&self, row: R, ack: Option<Ack>) -> Result<(), StoreError> {
        // Counted before the wait so the gauge never goes negative when the task is quicker.
        self.queued.inc();
        self.tx.send((row, ack)).await.map_err(|_| self.closed())
    }

    /// [`send`](Self::send) for threads outside the async runtime, such as timely workers:
    /// blocks the thread while the queue is full.
    ///
    /// # Panics
    ///
    /// When called from within an async context (tokio forbids blocking there).
    pub fn blocking_send(&self, row: R, ack: Option<Ack>) -> Result<(), StoreError> {
        self.queued.inc();
        self.tx.blocking_send((row, ack)).map_err(|_| self.closed())
    }

    /// The table this writer fills.
    pub fn table(&self) -> &'static str {
        R::TABLE
    }

    fn closed(&self) -> StoreError {
        self.queued.dec();
        StoreError::Closed { table: R::TABLE }
    }
}

/// Writes KPI results of every family: [`send`](Self::send) routes each to its table's
/// batched, retrying [`TableWriter`] (one task per table, with the same backpressure and
/// metrics as the other tables). No acknowledgement: KPIs are recomputed from stored
/// windows, not redelivered by a source. Cheap to clone.
#[derive(Debug, Clone)]
pub struct KpiWriter {
    pub(crate) traffic: TableWriter<TrafficKpiRow>,
    pub(crate) camera: TableWriter<CameraKpiRow>,
    pub(crate) aqi: TableWriter<AqiKpiRow>,
    pub(crate) water: TableWriter<WaterKpiRow>,
    pub(crate) hydrology: TableWriter<HydrologyKpiRow>,
    pub(crate) bridge: TableWriter<BridgeKpiRow>,
    pub(crate) health: TableWriter<HealthKpiRow>,
}

impl KpiWriter {
    /// Queues a KPI for its table, waiting while that table's queue is full. Fails only when
    /// the table's writer has stopped.
    pub async fn send(&self, kpi: &Kpi) -> Result<(), StoreError> {
        match kpi {
            Kpi::Traffic(k) => self.traffic.send(k.into(), None).await,
            Kpi::Camera(k) => self.camera.send(k.into(), None).await,
            Kpi::Air(k) => self.aqi.send(k.into(), None).await,
            Kpi::Water(k) => self.water.send(k.into(), None).await,
            Kpi::Hydrology(k) => self.hydrology.send(k.into(), None).await,
            Kpi::Bridge(k) => self.bridge.send(k.into(), None).await,
            Kpi::Health(k) => self.health.send(k.into(), None).await,
        }
    }

    /// [`send`](Self::send) for threads outside the async runtime, such as timely workers:
    /// blocks the thread while the table's queue is full.
    ///
    /// # Panics
    ///
    /// When called from within an async context (tokio forbids blocking there).
    pub fn blocking_send(&self, kpi: &Kpi) -> Result<(), StoreError> {
        match kpi {
            Kpi::Traffic(k) => self.traffic.blocking_send(k.into(), None),
            Kpi::Camera(k) => self.camera.blocking_send(k.into(), None),
            Kpi::Air(k) => self.aqi.blocking_send(k.into(), None),
            Kpi::Water(k) => self.water.blocking_send(k.into(), None),
            Kpi::Hydrology(k) => self.hydrology.blocking_send(k.into(), None),
            Kpi::Bridge(k) => self.bridge.blocking_send(k.into(), None),
            Kpi::Health(k) => self.health.blocking_send(k.into(), None),
        }
    }

    /// The table a KPI goes to.
    pub fn table_of(kpi: &Kpi) -> &'static str {
        match kpi {
            Kpi::Traffic(_) => TrafficKpiRow::TABLE,
            Kpi::Camera(_) => CameraKpiRow::TABLE,
            Kpi::Air(_) => AqiKpiRow::TABLE,
            Kpi::Water(_) => WaterKpiRow::TABLE,
            Kpi::Hydrology(_) => HydrologyKpiRow::TABLE,
            Kpi::Bridge(_) => BridgeKpiRow::TABLE,
            Kpi::Health(_) => HealthKpiRow::TABLE,
        }
    }
}

/// The writers of every table.
#[derive(Debug, Clone)]
pub struct Writers {
    /// Raw readings.
    pub readings: TableWriter<ReadingRow>,
    /// Window aggregates.
    pub windows: TableWriter<WindowRow>,
    /// Rejected inputs.
    pub dead_letters: TableWriter<DeadLetterRow>,
    /// The late ledger.
    pub late_readings: TableWriter<LateReadingRow>,
    /// KPI results, one table per family.
    pub kpis: KpiWriter,
    /// Alert lifecycle events.
    pub alert_events: TableWriter<AlertEventRow>,
    /// Webhook delivery attempts.
    pub webhook_attempts: TableWriter<WebhookAttemptRow>,
}

/// The running writer tasks.
#[derive(Debug)]
pub struct WriterTasks {
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl WriterTasks {
    /// Waits until every task (KPI tables included) has flushed what it holds and stopped,
    /// which happens once all [`Writers`] clones, and clones of their fields such as the
    /// [`KpiWriter`], are dropped. While ClickHouse is unreachable a task keeps retrying
    /// its last batch, so a shutdown should bound this wait with a timeout; rows not inserted
    /// by then were never acknowledged and the sources redeliver them.
    pub async fn join(self) -> Result<(), StoreError> {
        let mut first_error = None;
        for (table, task) in self.tasks {
            if let Err(source) = task.await {
                let e = StoreError::WriterTask { table, source };
                tracing::error!(table, error = %DisplayChain(&e), "store writer task failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Starts one writer task per table.
pub(crate) fn spawn_writers(
    client: &clickhouse::Client,
    cfg: &ClickHouseConfig,
    metrics: &StoreMetrics,
) -> (Writers, WriterTasks) {
    let mut tasks = Vec::new();
    let writers = Writers {
        readings: start::<ReadingRow>(client, cfg, metrics, &mut tasks),
        windows: start::<WindowRow>(client, cfg, metrics, &mut tasks),
        dead_letters: start::<DeadLetterRow>(client, cfg, metrics, &mut tasks),
        late_readings: start::<LateReadingRow>(client, cfg, metrics, &mut tasks),
        kpis: KpiWriter {
            traffic: start::<TrafficKpiRow>(client, cfg, metrics, &mut tasks),
            camera: start::<CameraKpiRow>(client, cfg, metrics, &mut tasks),
            aqi: start::<AqiKpiRow>(client, cfg, metrics, &mut tasks),
            water: start::<WaterKpiRow>(client, cfg, metrics, &mut tasks),
            hydrology: start::<HydrologyKpiRow>(client, cfg, metrics, &mut tasks),
            bridge: start::<BridgeKpiRow>(client, cfg, metrics, &mut tasks),
            health: start::<HealthKpiRow>(client, cfg, metrics, &mut tasks),
        },
        alert_events: start::<AlertEventRow>(client, cfg, metrics, &mut tasks),
        webhook_attempts: start::<WebhookAttemptRow>(client, cfg, metrics, &mut tasks),
    };
    (writers, WriterTasks { tasks })
}

/// Starts one table's writer and records its task under the table's name.
fn start<R: StoreRow>(
    client: &clickhouse::Client,
    cfg: &ClickHouseConfig,
    metrics: &StoreMetrics,
    tasks: &mut Vec<(&'static str, JoinHandle<()>)>,
) -> TableWriter<R> {
    let (writer, task) = spawn_writer::<R>(client, cfg, metrics);
    tasks.push((R::TABLE, task));
    writer
}

fn spawn_writer<R: StoreRow>(
    client: &clickhouse::Client,
    cfg: &ClickHouseConfig,
    metrics: &StoreMetrics,
) -> (TableWriter<R>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(cfg.channel_capacity);
    let metrics = metrics.table(R::TABLE);
    let queued = metrics.queue_rows.clone();
    let task = Task::<R> {
        client: client.clone(),
        rx,
        settings: Settings::from(cfg),
        metrics,
    };
    let span = tracing::info_span!("store_writer", table = R::TABLE);
    (
        TableWriter { tx, queued },
        tokio::spawn(task.run().instrument(span)),
    )
}

/// The fewest rows a batch inserted early, when its input has gone quiet, may hold, unless
/// it follows a batch that held as many (the end of a burst).
const QUIET_MIN_ROWS: usize = 1_000;

/// The writer settings a task needs.
#[derive(Debug, Clone, Copy)]
struct Settings {
    max_rows: usize,
    max_wait: Duration,
    quiet: Option<Duration>,
    insert_timeout: Duration,
    retry_initial: Duration,
    retry_max: Duration,
}

impl From<&ClickHouseConfig> for Settings {
    fn from(cfg: &ClickHouseConfig) -> Self {
        Settings {
            max_rows: cfg.batch_max_rows.max(1),
            max_wait: cfg.batch_max_wait(),
            quiet: cfg.batch_quiet(),
            insert_timeout: cfg.insert_timeout(),
            retry_initial: Duration::from_millis(cfg.retry_initial_ms.max(1)),
            retry_max: Duration::from_millis(cfg.retry_max_ms.max(cfg.retry_initial_ms)),
        }
    }
}

struct Task<R> {
    client: clickhouse::Client,
    rx: mpsc::Receiver<(R, Option<Ack>)>,
    settings: Settings,
    metrics: TableMetrics,
}

impl<R: StoreRow> Task<R> {
    async fn run(mut self) {
        let max_rows = self.settings.max_rows;
        let mut items: Vec<(R, Option<Ack>)> = Vec::with_capacity(max_rows.min(65_536));
        let mut rows: Vec<R> = Vec::with_capacity(items.capacity());
        let mut acks: Vec<Ack> = Vec::new();
        let mut open = true;
        // Whether the last batch was large: the remainder after it may go early too.
        let mut after_large = false;
        while open {
            // The batch's clock starts with its first row.
            if self.rx.recv_many(&mut items, max_rows).await == 0 {
                break;
            }
            let deadline = tokio::time::sleep(self.settings.max_wait);
            tokio::pin!(deadline);
            // Armed once the batch may go early, re-armed by every row.
            let quiet = tokio::time::sleep(Duration::ZERO);
            tokio::pin!(quiet);
            let mut quiet_armed = false;
            while items.len() < max_rows {
                if let Some(wait) = self.settings.quiet {
                    if after_large || items.len() >= QUIET_MIN_ROWS {
                        quiet.as_mut().reset(tokio::time::Instant::now() + wait);
                        quiet_armed = true;
                    }
                }
                let room = max_rows - items.len();
                tokio::select! {
                    n = self.rx.recv_many(&mut items, room) => {
                        if n == 0 {
                            open = false;
                            break;
                        }
                    }
                    () = &mut deadline => break,
                    () = &mut quiet, if quiet_armed => break,
                }
            }
            for (row, ack) in items.drain(..) {
                rows.push(row);
                acks.extend(ack);
            }
            let taken = rows.len() as i64;
            after_large = rows.len() >= QUIET_MIN_ROWS;
            let replaced = R::drop_replaced(&mut rows);
            let span =
                tracing::info_span!("clickhouse_insert", table = R::TABLE, rows = rows.len());
            self.insert_until_done(&rows).instrument(span).await;
            self.metrics.rows_written.inc_by(rows.len() as u64);
            self.metrics.rows_replaced.inc_by(replaced as u64);
            self.metrics.queue_rows.sub(taken);
            rows.clear();
            // Only now is the batch durable, so only now may the sources forget it.
            for ack in acks.drain(..) {
                ack.done();
            }
        }
        tracing::debug!(table = R::TABLE, "store writer flushed and stopped");
    }

    /// Inserts the batch, retrying until it succeeds: data is never dropped, and holding the
    /// batch while the queue fills is what pushes back on ingest.
    async fn insert_until_done(&self, rows: &[R]) {
        let s = self.settings;
        let mut backoff = s.retry_initial;
        let mut failures: u64 = 0;
        loop {
            let started = Instant::now();
            match self.insert(rows).await {
                Ok(()) => {
                    self.metrics
                        .batch_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.failing.set(0);
                    if failures > 0 {
                        tracing::info!(
                            table = R::TABLE,
                            rows = rows.len(),
                            failures,
                            "store insert succeeded after retries"
                        );
                    }
                    return;
                }
                Err(e) => {
                    failures += 1;
                    let retryable = is_retryable_clickhouse(&e);
                    if retryable {
                        self.metrics.retryable_failures.inc();
                    } else {
                        self.metrics.permanent_failures.inc();
                    }
                    self.metrics.failing.set(1);
                    // A permanent error (such as a schema mismatch) needs an operator; keep
                    // the data and try again slowly rather than drop it.
                    let delay = jitter(if retryable { backoff } else { s.retry_max });
                    let e = DisplayChain(&e);
                    if retryable {
                        tracing::warn!(table = R::TABLE, rows = rows.len(), failures, error = %e,
                            retry_in_ms = delay.as_millis() as u64, "store insert failed; retrying");
                    } else {
                        tracing::error!(table = R::TABLE, rows = rows.len(), failures, error = %e,
                            retry_in_ms = delay.as_millis() as u64,
                            "store insert failed permanently; keeping the batch and retrying");
                    }
                    tokio::time::sleep(delay).await;
                    backoff = (backoff * 2).min(s.retry_max);
                }
            }
        }
    }

    async fn insert(&self, rows: &[R]) -> Result<(), clickhouse::error::Error> {
        let timeout = Some(self.settings.insert_timeout);
        let mut insert = self
            .client
            .insert::<R>(R::TABLE)
            .await?
            .with_timeouts(timeout, timeout);
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await
    }
}

/// Half the delay plus a random part of the other half, so writers of many processes do
/// not retry in step.
fn jitter(delay: Duration) -> Duration {
    let half = delay / 2;
    let half_ns = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    // Each `RandomState` is freshly keyed, which is randomness enough for spreading retries.
    let random = RandomState::new().hash_one(Instant::now());
    half + Duration::from_nanos(random % half_ns.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_to_full() {
        let d = Duration::from_millis(1000);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let j = jitter(d);
            assert!(j >= d / 2 && j <= d, "{j:?}");
            seen.insert(j);
        }
        assert!(seen.len() > 100, "jitter varies: {} distinct", seen.len());
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
