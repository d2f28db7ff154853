//! The spool: a durable local queue between the pipeline and ClickHouse.
//!
//! Every row bound for ClickHouse is appended here first. [`Spool::append`] never blocks: it
//! hands the row to a committer thread, which writes what has gathered as one entry in one
//! [redb](https://crates.io/crates/redb) transaction (checksummed, synced on commit) and only
//! then calls the rows' acknowledgements, so a source forgets a message once it is on local
//! disk, not once it is in ClickHouse. A drain task reads the spool in order and feeds the
//! table writers, which insert with their retries; once all rows of an entry are inserted it
//! is deleted from the spool. So a ClickHouse outage fills the spool while the live path runs
//! on; ingest waits ([`Spool::wait_for_room`]) only once the spool holds `max_bytes`.
//!
//! A crash loses nothing: what was committed is drained at the next start, and a row inserted
//! but not yet deleted is inserted again, which the tables' replacing engines collapse.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ioc_schemas::{Ack, Feed, IngestedReading};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use tracing::field::Empty;
use tracing::Instrument;

use crate::error::{DisplayChain, SpoolError, StoreError};
use crate::replay::{send_replay, DecodeStored, StoredReading};
use crate::rows::{LateReadingRow, ReadingRow};
use crate::writer::Writers;

mod admission;
mod inserted;
mod record;
mod segment;

use inserted::Inserted;
pub use record::SpoolRow;
use segment::Segment;

/// Spooled rows, one entry per commit keyed by its first row's sequence number: a segment
/// (`segment.rs`) of records `[format][appended_at_ms: u64 LE][bincode of SpoolRow]`, or, as
/// written before segments, a single record.
const ROWS: TableDefinition<u64, &[u8]> = TableDefinition::new("rows");
/// Rows this version could not read back (from another version of iocd), kept for an operator,
/// numbered in the order they were found.
const UNREADABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("unreadable");
/// What a restart needs to know without ClickHouse: [`NEWEST_ON_TIME`], [`NEWEST_DELETED`]
/// and [`WindowGap`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The newest event time of an on-time reading ever committed, ms.
const NEWEST_ON_TIME: &str = "newest_on_time_event_ms";
/// The newest event time of an on-time reading deleted from the spool (it is in ClickHouse),
/// ms, or a little later.
const NEWEST_DELETED: &str = "newest_deleted_event_ms";
const GAP_FROM: &str = "gap_from_ms";
const GAP_UNTIL: &str = "gap_until_ms";
const GAP_TO: &str = "gap_to_ms";
/// redb's page cache for the spool file.
const SPOOL_CACHE_BYTES: usize = 16 << 20;

/// The spool's settings (`[spool]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// The folder of the spool file (`spool.redb`). Empty: `spool` in `alerts.state_dir`.
    pub dir: PathBuf,
    /// The spooled bytes at which ingest stops taking messages until the drain to ClickHouse
    /// frees room (the brokers keep the rest). Rows the dataflow makes from what is already in
    /// flight are still spooled, so the file can pass it by a little.
    pub max_bytes: u64,
    /// Rows read from the spool per drain step.
    pub drain_batch_rows: usize,
    /// The least time (ms) from the start of one commit to the next. A commit syncs the file
    /// to disk and costs about the same for a few rows as for thousands, so under load rows
    /// wait up to this long to be committed together. The sources are acknowledged after the
    /// commit, so this adds as much to the acknowledgement's delay. 0: commit as soon as rows
    /// wait.
    pub commit_interval_ms: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: PathBuf::new(),
            max_bytes: 4 << 30,
            drain_batch_rows: 10_000,
            commit_interval_ms: 5,
        }
    }
}

/// Windows a start without ClickHouse could not compute, because the readings of the last run
/// they need were in ClickHouse: those starting in `[from_ms, until_ms)`, all of which end by
/// `to_ms`. Kept in the spool until they are recomputed from ClickHouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowGap {
    /// The earliest window start left out.
    pub from_ms: u64,
    /// Windows starting here or later were computed live.
    pub until_ms: u64,
    /// Every window left out ends by here.
    pub to_ms: u64,
}

impl WindowGap {
    /// One gap covering both (a second start without ClickHouse before the first gap was
    /// filled): recomputing a window twice changes nothing.
    pub fn merge(self, other: WindowGap) -> WindowGap {
        WindowGap {
            from_ms: self.from_ms.min(other.from_ms),
            until_ms: self.until_ms.max(other.until_ms),
            to_ms: self.to_ms.max(other.to_ms),
        }
    }
}

/// The spool's metrics.
#[derive(Debug, Clone)]
pub struct SpoolMetrics {
    bytes: IntGauge,
    rows: IntGauge,
    oldest_seconds: IntGauge,
    file_bytes: IntGauge,
    appended: IntCounter,
    drained: IntCounter,
    unreadable: IntCounter,
    commit_failures: IntCounter,
    commit_seconds: Histogram,
}

impl SpoolMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<SpoolMetrics, prometheus::Error> {
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "ioc_store_spool_commit_seconds",
                "Time to write and sync one group of rows to the spool.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        )?;
        registry.register(Box::new(commit_seconds.clone()))?;
        Ok(SpoolMetrics {
            bytes: gauge(
                "ioc_store_spool_bytes",
                "Bytes of rows in the spool not yet inserted into ClickHouse.",
            )?,
            rows: gauge(
                "ioc_store_spool_rows",
                "Rows in the spool not yet inserted into ClickHouse.",
            )?,
            oldest_seconds: gauge(
                "ioc_store_spool_oldest_seconds",
                "Age of the oldest row in the spool not yet inserted into ClickHouse.",
            )?,
            file_bytes: gauge(
                "ioc_store_spool_file_bytes",
                "Size of the spool file on disk.",
            )?,
            appended: counter(
                "ioc_store_spool_appended_rows_total",
                "Rows written to the spool.",
            )?,
            drained: counter(
                "ioc_store_spool_drained_rows_total",
                "Rows inserted into ClickHouse from the spool (its rate is the drain rate).",
            )?,
            unreadable: counter(
                "ioc_store_spool_unreadable_rows_total",
                "Spooled rows this version cannot read, kept in the spool's `unreadable` table.",
            )?,
            commit_failures: counter(
                "ioc_store_spool_commit_failures_total",
                "Failed writes to the spool file (each retried; the sources wait meanwhile).",
            )?,
            commit_seconds,
        })
    }
}

/// Rows appended and not yet committed.
#[derive(Default)]
struct Pending {
    rows: Segment,
    /// Their acknowledgements, in order.
    acks: Vec<Ack>,
    /// The newest event time of an on-time reading among `rows`.
    newest_on_time: u64,
    /// Rows taken since the spool was opened.
    accepted: u64,
    closed: bool,
}

struct Inner {
    /// Taken out by [`Spool::shutdown`], which lets go of the file whatever handles remain.
    db: std::sync::RwLock<Option<Database>>,
    /// Set by [`Spool::shutdown`]: the committer makes its last commit and stops.
    stopping: std::sync::atomic::AtomicBool,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    path: PathBuf,
    max_bytes: u64,
    drain_batch_rows: usize,
    commit_interval: Duration,
    pending: Mutex<Pending>,
    wake: Condvar,
    /// The newest committed sequence number (0: none yet).
    committed: watch::Sender<u64>,
    /// Set once everything appended before [`Spool::close`] is committed.
    flushed: watch::Sender<bool>,
    inserted: Mutex<Inserted>,
    /// The entries not yet deleted, oldest first, by their first row's sequence number, with
    /// when they were appended: one per commit. For the oldest row's age, and deleting an
    /// entry once all its rows are in.
    commits: Mutex<VecDeque<(u64, u64)>>,
    /// Rows through this sequence number are deleted from the file.
    deleted_through: AtomicU64,
    /// The sequence number of the last row the previous run committed.
    last_at_open: u64,
    /// The newest event time of an on-time reading committed, by any run (0: none).
    newest_on_time: AtomicU64,
    gap: Mutex<Option<WindowGap>>,
    bytes: AtomicU64,
    rows: AtomicU64,
    room: Notify,
    metrics: SpoolMetrics,
}

/// A row read back from the spool.
struct SpooledRow {
    seq: u64,
    /// Its record's bytes, as counted in the backlog.
    len: u64,
    /// The row, or why it does not read back and its bytes.
    row: Result<SpoolRow, (String, Vec<u8>)>,
}

/// A handle on the spool. Cheap to clone.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// What the spool holds, for health and the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolBacklog {
    /// Rows not yet inserted into ClickHouse.
    pub rows: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Age of the oldest of them, ms.
    pub oldest_ms: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data behind; keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Spool {
    /// Opens (or creates) `dir/spool.redb` and starts its committer thread. What a previous run
    /// left in it is drained first by [`Spool::drain`].
    pub fn open(
        dir: &Path,
        config: &SpoolConfig,
        metrics: SpoolMetrics,
    ) -> Result<Spool, SpoolError> {
        let path = dir.join("spool.redb");
        let fail = |source: redb::Error| SpoolError::File {
            path: path.clone(),
            source,
        };
        let io = |context, source| SpoolError::Io {
            path: path.clone(),
            context,
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create the folder", e))?;
        // redb's default page cache is 1 GiB: a spool filled by a long outage would sit in
        // memory. Rows are written once and read once, so a small cache does.
        let db = Database::builder()
            .set_cache_size(SPOOL_CACHE_BYTES)
            .create(&path)
            .map_err(|e| fail(e.into()))?;
        let (entries, last, rows, bytes) = {
            let tx = db.begin_write().map_err(|e| fail(e.into()))?;
            {
                tx.open_table(ROWS).map_err(|e| fail(e.into()))?;
                tx.open_table(UNREADABLE).map_err(|e| fail(e.into()))?;
                tx.open_table(META).map_err(|e| fail(e.into()))?;
            }
            tx.commit().map_err(|e| fail(e.into()))?;
            let tx = db.begin_read().map_err(|e| fail(e.into()))?;
            let table = tx.open_table(ROWS).map_err(|e| fail(e.into()))?;
            let (mut entries, mut last, mut rows, mut bytes) = (VecDeque::new(), 0, 0u64, 0u64);
            for entry in table.iter().map_err(|e| fail(e.into()))? {
                let (k, v) = entry.map_err(|e| fail(e.into()))?;
                let (entry_rows, entry_bytes) = segment::rows(v.value());
                let appended = segment::records(v.value())
                    .next()
                    .and_then(|r| SpoolRow::appended_at(r.ok()?))
                    .unwrap_or_else(ioc_schemas::now_ms);
                entries.push_back((k.value(), appended));
                last = k.value() + entry_rows - 1;
                rows += entry_rows;
                bytes += entry_bytes;
            }
            (entries, last, rows, bytes)
        };
        let first = entries.front().map(|&(seq, _)| seq);
        let meta = |key: &str| -> Result<Option<u64>, SpoolError> {
            let tx = db.begin_read().map_err(|e| fail(e.into()))?;
            let table = tx.open_table(META).map_err(|e| fail(e.into()))?;
            Ok(table
                .get(key)
                .map_err(|e| fail(e.into()))?
                .map(|v| v.value()))
        };
        let newest_on_time = meta(NEWEST_ON_TIME)?.unwrap_or(0);
        let newest_deleted = meta(NEWEST_DELETED)?.unwrap_or(0);
        let gap = match (meta(GAP_FROM)?, meta(GAP_UNTIL)?, meta(GAP_TO)?) {
            (Some(from_ms), Some(until_ms), Some(to_ms)) => Some(WindowGap {
                from_ms,
                until_ms,
                to_ms,
            }),
            _ => None,
        };
        let (committed, _) = watch::channel(last);
        let inner = Arc::new(Inner {
            db: std::sync::RwLock::new(Some(db)),
            stopping: std::sync::atomic::AtomicBool::new(false),
            committer: Mutex::new(None),
            path: path.clone(),
            max_bytes: config.max_bytes,
            drain_batch_rows: config.drain_batch_rows.max(1),
            commit_interval: Duration::from_millis(config.commit_interval_ms),
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            committed,
            flushed: watch::channel(false).0,
            inserted: Mutex::new(Inserted::new(first.map_or(last, |f| f - 1), newest_deleted)),
            commits: Mutex::new(entries),
            deleted_through: AtomicU64::new(first.map_or(last, |f| f - 1)),
            last_at_open: last,
            newest_on_time: AtomicU64::new(newest_on_time),
            gap: Mutex::new(gap),
            bytes: AtomicU64::new(bytes),
            rows: AtomicU64::new(rows),
            room: Notify::new(),
            metrics,
        });
        let committer = Arc::clone(&inner);
        let thread = std::thread::Builder::new()
            .name("spool-commit".into())
            .spawn(move || committer.run_committer(last + 1))
            .map_err(|e| io("cannot start the committer thread", e))?;
        *lock(&inner.committer) = Some(thread);
        let spool = Spool { inner };
        spool.refresh_metrics();
        if rows > 0 {
            tracing::info!(rows, bytes, path = %path.display(), "spool holds rows from the last run; draining them first");
        }
        Ok(spool)
    }

    /// Appends a row; `ack` is called once it is durable in the spool. Never blocks.
    pub fn append(&self, row: &SpoolRow, ack: Option<Ack>) {
        let now = ioc_schemas::now_ms();
        let mut pending = lock(&self.inner.pending);
        if pending.closed {
            // Only after shutdown; the ack is dropped uncalled, so the source redelivers.
            tracing::warn!("spool closed; row not spooled");
            return;
        }
        // The committer waits only while nothing is pending (it looks under this lock): wake
        // it for the first row, not for every row, each a futex call on the worker's thread.
        let was_idle = pending.rows.is_empty();
        let bytes = pending.rows.push(row, now);
        pending.acks.extend(ack);
        self.inner.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.inner.rows.fetch_add(1, Ordering::Relaxed);
        if let SpoolRow::Reading(r) = row {
            if r.late == 0 {
                pending.newest_on_time = pending.newest_on_time.max(r.event_time_ms);
            }
        }
        pending.accepted += 1;
        drop(pending);
        if was_idle {
            self.inner.wake.notify_one();
        }
    }

    /// Appends a valid reading: raw, and, when it came later than the allowed lateness
    /// (`late_behind`: the watermark it missed), in the late ledger too. Rows commit in order,
    /// so `ack` goes with the last row and covers both.
    pub fn append_reading(
        &self,
        reading: IngestedReading,
        late_behind: Option<u64>,
        ack: Option<Ack>,
    ) {
        match late_behind {
            None => self.append(
                &SpoolRow::Reading(ReadingRow::from_owned(reading, false)),
                ack,
            ),
            Some(watermark) => {
                let ledger = LateReadingRow::new(&reading, watermark);
                let raw = ReadingRow::from_owned(reading, true);
                self.append(&SpoolRow::Reading(raw), None);
                self.append(&SpoolRow::LateReading(ledger), ack);
            }
        }
    }

    /// What the spool holds now.
    pub fn backlog(&self) -> SpoolBacklog {
        let waiting = lock(&self.inner.inserted).through < *self.inner.committed.borrow();
        let oldest_ms = lock(&self.inner.commits)
            .front()
            .filter(|_| waiting)
            .map_or(0, |&(_, at)| ioc_schemas::now_ms().saturating_sub(at));
        SpoolBacklog {
            rows: self.inner.rows.load(Ordering::Relaxed),
            bytes: self.inner.bytes.load(Ordering::Relaxed),
            oldest_ms,
        }
    }

    /// The newest event time of an on-time reading the spool has committed, in this run or an
    /// earlier one (whether or not it is in ClickHouse since): every window starting after it
    /// holds only readings a restart has yet to take.
    pub fn newest_on_time_event_ms(&self) -> Option<u64> {
        Some(self.inner.newest_on_time.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    /// At least the newest event time of an on-time reading that left the spool for
    /// ClickHouse (`None`: none has): every on-time reading taken with a later event time is
    /// still in the spool ([`Spool::spooled_readings`]).
    pub fn newest_on_time_deleted_ms(&self) -> Option<u64> {
        Some(lock(&self.inner.inserted).newest_on_time).filter(|&t| t > 0)
    }

    /// Up to `limit` of the on-time readings in the spool with an event time from
    /// `from_event_ms`, in spool order from sequence number `from_seq`, and the sequence number
    /// to go on from (`None`: the end). Blocking: call it from a blocking task. A row that does
    /// not read back is left to the drain, which keeps it aside.
    pub fn spooled_readings(
        &self,
        from_seq: u64,
        limit: usize,
        from_event_ms: u64,
    ) -> Result<(Vec<StoredReading>, Option<u64>), SpoolError> {
        let rows = self.inner.read(from_seq, u64::MAX, limit)?;
        let next = (rows.len() >= limit.max(1))
            .then(|| rows.last().map(|r| r.seq + 1))
            .flatten();
        let readings = rows
            .into_iter()
            .filter_map(|r| match r.row {
                Ok(SpoolRow::Reading(r)) if r.late == 0 && r.event_time_ms >= from_event_ms => {
                    StoredReading::from_row(r).ok()
                }
                _ => None,
            })
            .collect();
        Ok((readings, next))
    }

    /// Feeds the spooled on-time readings with an event time from `from_event_ms`, decoded by
    /// `decode`, into the dataflow's `input` as replays (counted in windows, not stored
    /// again), in spool order, a batch of 10,000 at a time. Returns how many were fed; a
    /// payload that no longer decodes is logged and left out.
    pub async fn feed_readings(
        &self,
        from_event_ms: u64,
        input: &Feed,
        decode: DecodeStored,
    ) -> Result<u64, StoreError> {
        let (mut next, mut fed) = (Some(0u64), 0u64);
        while let Some(from_seq) = next {
            let spool = self.clone();
            let (batch, after) = tokio::task::spawn_blocking(move || {
                spool.spooled_readings(from_seq, 10_000, from_event_ms)
            })
            .await
            .map_err(|source| SpoolError::Task {
                path: self.inner.path.clone(),
                source,
            })??;
            next = after;
            for stored in batch {
                fed += u64::from(send_replay(stored, decode, input).await?);
            }
        }
        Ok(fed)
    }

    /// The windows a start without ClickHouse left out and nobody has recomputed yet.
    pub fn window_gap(&self) -> Option<WindowGap> {
        *lock(&self.inner.gap)
    }

    /// Records (or, with `None`, clears) the windows left out, durably.
    pub async fn set_window_gap(&self, gap: Option<WindowGap>) -> Result<(), SpoolError> {
        let inner = Arc::clone(&self.inner);
        let written = tokio::task::spawn_blocking(move || {
            inner.with_db(|db| {
                let tx = db.begin_write()?;
                {
                    let mut meta = tx.open_table(META)?;
                    match gap {
                        Some(g) => {
                            meta.insert(GAP_FROM, g.from_ms)?;
                            meta.insert(GAP_UNTIL, g.until_ms)?;
                            meta.insert(GAP_TO, g.to_ms)?;
                        }
                        None => {
                            for key in [GAP_FROM, GAP_UNTIL, GAP_TO] {
                                meta.remove(key)?;
                            }
                        }
                    }
                }
                tx.commit()?;
                Ok(())
            })
        })
        .await
        .map_err(|source| SpoolError::Task {
            path: self.inner.path.clone(),
            source,
        })?;
        written?;
        *lock(&self.inner.gap) = gap;
        Ok(())
    }

    /// The sequence number of the last row appended so far.
    pub fn appended_through(&self) -> u64 {
        self.inner.last_at_open + lock(&self.inner.pending).accepted
    }

    /// Waits until every row through sequence number `seq` is in ClickHouse.
    pub async fn inserted_through(&self, seq: u64) {
        while lock(&self.inner.inserted).through < seq {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The spool file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Brings the spool's gauges up to date (call it periodically).
    pub fn refresh_metrics(&self) {
        let b = self.backlog();
        let m = &self.inner.metrics;
        m.rows.set(b.rows as i64);
        m.bytes.set(b.bytes as i64);
        m.oldest_seconds.set((b.oldest_ms / 1000) as i64);
        if let Ok(meta) = std::fs::metadata(&self.inner.path) {
            m.file_bytes.set(meta.len() as i64);
        }
    }

    /// Commits what is pending, calls its acknowledgements, and stops taking rows: the last
    /// step of a shutdown before the sources commit.
    pub async fn close(&self) {
        lock(&self.inner.pending).closed = true;
        self.inner.wake.notify_one();
        let _ = self.inner.flushed.subscribe().wait_for(|f| *f).await;
    }

    /// Commits what is pending, deletes what is inserted, stops the committer and closes the
    /// file, even if other handles remain (they then refuse rows). For the end of a run.
    pub async fn shutdown(&self) {
        self.close().await;
        self.deleted().await;
        self.inner.stopping.store(true, Ordering::Relaxed);
        self.inner.wake.notify_one();
        let thread = lock(&self.inner.committer).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        self.inner
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }

    /// Waits until every entry whose rows are all inserted so far is deleted from the file, so
    /// a restart does not insert them again (the rows of an entry partly inserted are, and the
    /// tables' replacing engines collapse them).
    pub async fn deleted(&self) {
        loop {
            let deletable_below = self.inner.deletable().0;
            if self.inner.deleted_through.load(Ordering::Relaxed) + 1 >= deletable_below {
                return;
            }
            self.inner.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Feeds the spooled rows to `writers` in order, each deleted from the spool once it is
    /// inserted, until `stop` is set and everything committed by then has been handed over.
    /// `caught_up` is set once the rows the previous run left are all inserted. While
    /// ClickHouse is down this waits on the writers' full queues: bound a shutdown's wait on it.
    pub async fn drain(
        &self,
        writers: Writers,
        mut stop: watch::Receiver<bool>,
        caught_up: watch::Sender<bool>,
    ) {
        let inner = &self.inner;
        let mut committed = inner.committed.subscribe();
        let left_by_last_run = *committed.borrow();
        let mut next = lock(&inner.inserted).through + 1;
        loop {
            if !*caught_up.borrow() && lock(&inner.inserted).through >= left_by_last_run {
                caught_up.send_replace(true);
            }
            let upto = *committed.borrow_and_update();
            if next > upto {
                if *stop.borrow() {
                    return;
                }
                tokio::select! {
                    _ = committed.changed() => {}
                    _ = stop.changed() => {}
                    // For `caught_up`, which the writers' acknowledgements move.
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
            // One step: a batch of committed rows read and handed to the writers.
            let step = tracing::debug_span!("spool_drain_step", from = next, upto, rows = Empty);
            if !self
                .drain_step(&writers, &mut next, upto)
                .instrument(step)
                .await
            {
                return;
            }
        }
    }

    /// Reads up to `drain_batch_rows` committed rows from `next` through `upto` and queues
    /// them for their writers, moving `next` past them. `false`: the drain must stop.
    async fn drain_step(&self, writers: &Writers, next: &mut u64, upto: u64) -> bool {
        let inner = &self.inner;
        let read = {
            let inner = Arc::clone(inner);
            let (from, limit) = (*next, inner.drain_batch_rows);
            tokio::task::spawn_blocking(move || inner.read(from, upto, limit)).await
        };
        let rows = match read {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::error!(error = %DisplayChain(&e), "cannot read the spool; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                return true;
            }
            Err(e) => {
                tracing::error!(error = %DisplayChain(&e), "spool read task failed");
                return false;
            }
        };
        tracing::Span::current().record("rows", rows.len());
        for SpooledRow { seq, len, row } in rows {
            *next = seq + 1;
            let on_time = match &row {
                Ok(SpoolRow::Reading(r)) if r.late == 0 => r.event_time_ms,
                _ => 0,
            };
            let ack = {
                let inner = Arc::clone(inner);
                Ack::new(move || inner.inserted(seq, len, on_time))
            };
            match row {
                Ok(row) => {
                    if let Err(e) = row.send(writers, ack).await {
                        tracing::error!(error = %DisplayChain(&e), "spooled row not queued; it stays in the spool");
                        return false;
                    }
                }
                Err((reason, bytes)) => {
                    let inner = Arc::clone(inner);
                    let _ = tokio::task::spawn_blocking(move || {
                        inner.quarantine(seq, &reason, &bytes);
                    })
                    .await;
                    ack.done();
                }
            }
        }
        true
    }
}

impl Inner {
    fn with_db<R>(
        &self,
        f: impl FnOnce(&Database) -> Result<R, redb::Error>,
    ) -> Result<R, SpoolError> {
        let db = self
            .db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match db.as_ref() {
            Some(db) => f(db).map_err(|source| SpoolError::File {
                path: self.path.clone(),
                source,
            }),
            None => Err(SpoolError::ShutDown {
                path: self.path.clone(),
            }),
        }
    }

    /// Up to `limit` rows from `from` through `upto`.
    fn read(&self, from: u64, upto: u64, limit: usize) -> Result<Vec<SpooledRow>, SpoolError> {
        self.with_db(|db| {
            let tx = db.begin_read()?;
            let table = tx.open_table(ROWS)?;
            // The entry holding `from` starts at or before it.
            let start = match table.range(..=from)?.next_back() {
                Some(entry) => entry?.0.value(),
                None => from,
            };
            let mut out = Vec::new();
            'entries: for entry in table.range(start..=upto)? {
                let (k, v) = entry?;
                for (seq, record) in (k.value()..).zip(segment::records(v.value())) {
                    if seq < from || seq > upto {
                        continue;
                    }
                    if out.len() >= limit {
                        break 'entries;
                    }
                    // `len` as counted at open: a record's bytes; none for a cut entry's rest.
                    let (len, row) = match record {
                        Ok(bytes) => match SpoolRow::decode(bytes) {
                            Ok((_, row)) => (bytes.len(), Ok(row)),
                            Err(reason) => (bytes.len(), Err((reason, bytes.to_vec()))),
                        },
                        Err((reason, bytes)) => (0, Err((reason.to_owned(), bytes.to_vec()))),
                    };
                    out.push(SpooledRow {
                        seq,
                        len: len as u64,
                        row,
                    });
                }
            }
            Ok(out)
        })
    }

    /// Keeps an unreadable row for an operator; it leaves the spool like an inserted one.
    fn quarantine(&self, seq: u64, reason: &str, bytes: &[u8]) {
        self.metrics.unreadable.inc();
        tracing::error!(seq, reason, path = %self.path.display(),
            "a spooled row cannot be read by this version; kept in the spool's `unreadable` table");
        let kept = self.with_db(|db| {
            let tx = db.begin_write()?;
            {
                // Numbered on their own: sequence numbers start again once the spool is empty.
                let mut unreadable = tx.open_table(UNREADABLE)?;
                let key = unreadable.last()?.map_or(1, |(k, _)| k.value() + 1);
                unreadable.insert(key, bytes)?;
            }
            tx.commit()?;
            Ok(())
        });
        if let Err(e) = kept {
            tracing::error!(seq, error = %DisplayChain(&e), "cannot keep an unreadable spooled row");
        }
    }

    /// Entries below this sequence number may be deleted (all their rows are in ClickHouse),
    /// and the newest on-time reading among the rows inserted, or a newer one.
    fn deletable(&self) -> (u64, u64) {
        // The entry holding the oldest row not inserted, read before `inserted`, which moves
        // first: an older entry here only deletes less.
        let front = lock(&self.commits).front().map(|&(seq, _)| seq);
        let (through, newest) = {
            let inserted = lock(&self.inserted);
            (inserted.through, inserted.newest_on_time)
        };
        let below = if through >= *self.committed.borrow() {
            through + 1
        } else {
            front.map_or(through + 1, |seq| seq.min(through + 1))
        };
        (below, newest)
    }

    /// Records that row `seq` (of `len` bytes, an on-time reading of event time `on_time_ms`
    /// or 0) is in ClickHouse.
    fn inserted(&self, seq: u64, len: u64, on_time_ms: u64) {
        let before = self.bytes.fetch_sub(len, Ordering::Relaxed);
        self.rows.fetch_sub(1, Ordering::Relaxed);
        self.metrics.drained.inc();
        // Ingest waits only while the spool is full: wake it as it stops being so.
        if before >= self.max_bytes && before - len < self.max_bytes {
            self.room.notify_waiters();
        }
        let mut inserted = lock(&self.inserted);
        if !inserted.mark(seq, on_time_ms) {
            return;
        }
        let through = inserted.through;
        drop(inserted);
        // The front commit holds the oldest row not yet inserted (when there is one).
        let mut commits = lock(&self.commits);
        let mut whole_commits_inserted = false;
        while commits.len() > 1 && commits[1].0 <= through + 1 {
            commits.pop_front();
            whole_commits_inserted = true;
        }
        drop(commits);
        // The committer deletes up to `through` with its next commit, or within its idle
        // timeout; woken once a commit's rows are all in, not for every row.
        if whole_commits_inserted {
            self.wake.notify_one();
        }
    }

    /// The committer: writes what gathered while the previous commit synced, in one
    /// transaction that also deletes what has been inserted since, then acknowledges.
    fn run_committer(self: Arc<Self>, mut next_seq: u64) {
        let mut deleted_through = self.deleted_through.load(Ordering::Relaxed);
        let mut newest_deleted = lock(&self.inserted).newest_on_time;
        let mut last_started: Option<Instant> = None;
        loop {
            let (mut rows, acks, newest_on_time, closing) = {
                let mut pending = lock(&self.pending);
                loop {
                    let trim = self.deletable().0 > deleted_through + 1;
                    let flush = pending.closed && !*self.flushed.borrow();
                    if !pending.rows.is_empty() || flush || trim {
                        // Rows arriving meanwhile join this commit (see `commit_interval_ms`).
                        let wait = last_started.map_or(Duration::ZERO, |at| {
                            self.commit_interval.saturating_sub(at.elapsed())
                        });
                        if wait.is_zero() || flush {
                            break;
                        }
                        pending = self
                            .wake
                            .wait_timeout(pending, wait)
                            .map_or_else(|e| e.into_inner().0, |(p, _)| p);
                        continue;
                    }
                    if Arc::strong_count(&self) == 1 || self.stopping.load(Ordering::Relaxed) {
                        return;
                    }
                    pending = self
                        .wake
                        .wait_timeout(pending, Duration::from_millis(500))
                        .map_or_else(|e| e.into_inner().0, |(p, _)| p);
                }
                (
                    std::mem::take(&mut pending.rows),
                    std::mem::take(&mut pending.acks),
                    std::mem::take(&mut pending.newest_on_time),
                    pending.closed,
                )
            };
            // What is deleted with this commit; its newest reading is recorded with it (or a
            // newer one inserted meanwhile: later is on the safe side).
            let (delete_below, trimmed_newest) = self.deletable();
            let trim_through = delete_below - 1;
            let started = Instant::now();
            last_started = Some(started);
            let first = next_seq;
            let result = self.with_db(|db| {
                let tx = db.begin_write()?;
                {
                    let mut table = tx.open_table(ROWS)?;
                    if !rows.is_empty() {
                        table.insert(first, rows.finish())?;
                    }
                    if trim_through > deleted_through {
                        table.retain_in(deleted_through + 1..=trim_through, |_, _| false)?;
                        if trimmed_newest > newest_deleted {
                            tx.open_table(META)?
                                .insert(NEWEST_DELETED, trimmed_newest)?;
                        }
                    }
                    if newest_on_time > self.newest_on_time.load(Ordering::Relaxed) {
                        tx.open_table(META)?
                            .insert(NEWEST_ON_TIME, newest_on_time)?;
                    }
                }
                tx.commit()?;
                Ok(())
            });
            match result {
                Ok(()) => {
                    self.metrics
                        .commit_seconds
                        .observe(started.elapsed().as_secs_f64());
                    if trim_through > deleted_through {
                        newest_deleted = newest_deleted.max(trimmed_newest);
                        deleted_through = trim_through;
                        self.deleted_through.store(trim_through, Ordering::Relaxed);
                    }
                    self.newest_on_time
                        .fetch_max(newest_on_time, Ordering::Relaxed);
                    if !rows.is_empty() {
                        next_seq += u64::from(rows.rows());
                        self.metrics.appended.inc_by(u64::from(rows.rows()));
                        let through = lock(&self.inserted).through;
                        let mut commits = lock(&self.commits);
                        // Entries wholly inserted, the last one's too, which stayed at the
                        // front with nothing after it.
                        commits.push_back((first, ioc_schemas::now_ms()));
                        while commits.len() > 1 && commits[1].0 <= through + 1 {
                            commits.pop_front();
                        }
                        drop(commits);
                        self.committed.send_replace(next_seq - 1);
                        for ack in acks {
                            ack.done();
                        }
                    } else {
                        self.committed.send_modify(|_| {});
                    }
                }
                Err(e) => {
                    // Nothing was committed (a full disk, say): keep the rows, in order, and
                    // try again. Their acks wait, so the sources hold back meanwhile, and
                    // dropping them instead would stall MQTT's in-order acknowledgements.
                    self.metrics.commit_failures.inc();
                    tracing::error!(error = %DisplayChain(&e), rows = rows.rows(), path = %self.path.display(),
                        "cannot write to the spool; retrying in 1 s");
                    let mut pending = lock(&self.pending);
                    let newer = std::mem::replace(&mut pending.rows, rows);
                    pending.rows.extend(newer);
                    let newer = std::mem::replace(&mut pending.acks, acks);
                    pending.acks.extend(newer);
                    pending.newest_on_time = pending.newest_on_time.max(newest_on_time);
                    drop(pending);
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
            if closing {
                self.flushed.send_replace(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::record::tests::dead_letter;
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ioc-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn open(dir: &Path) -> Spool {
        Spool::open(
            dir,
            &SpoolConfig::default(),
            SpoolMetrics::new(&Registry::new()).unwrap(),
        )
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acks_follow_the_commit_and_rows_survive_a_reopen() {
        let dir = temp_dir("reopen");
        let acked = Arc::new(AtomicUsize::new(0));
        {
            let spool = open(&dir);
            for i in 0..1000 {
                let acked = Arc::clone(&acked);
                spool.append(
                    &dead_letter(i),
                    Some(Ack::new(move || {
                        acked.fetch_add(1, Ordering::SeqCst);
                    })),
                );
            }
            spool.close().await;
            assert_eq!(
                acked.load(Ordering::SeqCst),
                1000,
                "every ack once committed"
            );
            assert_eq!(spool.backlog().rows, 1000);
            assert!(spool.backlog().bytes > 1000 * 20);
            // Closed: a row appended now is refused and its ack never called.
            spool.append(&dead_letter(5000), Some(Ack::new(|| panic!("acked"))));
            assert_eq!(spool.backlog().rows, 1000);
        }
        // The committer lets go of the file once the last handle is gone.
        let spool = loop {
            match Spool::open(
                &dir,
                &SpoolConfig::default(),
                SpoolMetrics::new(&Registry::new()).unwrap(),
            ) {
                Ok(s) => break s,
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        assert_eq!(spool.backlog().rows, 1000);
        let read = spool.inner.read(1, 1000, 10_000).unwrap();
        assert_eq!(read.len(), 1000);
        assert_eq!(read[0].seq, 1);
        assert_eq!(read[999].row.as_ref().unwrap(), &dead_letter(999));
        assert_eq!(
            spool.inner.read(998, 1000, 2).unwrap()[1]
                .row
                .as_ref()
                .unwrap(),
            &dead_letter(998),
            "from the middle of a commit"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Appends `rows` dead letters and waits for their commit.
    async fn commit(spool: &Spool, rows: std::ops::Range<u64>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let last = rows.end - 1;
        let mut tx = Some(tx);
        for i in rows {
            let ack = (i == last).then(|| tx.take()).flatten().map(|tx| {
                Ack::new(move || {
                    let _ = tx.send(());
                })
            });
            spool.append(&dead_letter(i), ack);
        }
        rx.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_is_deleted_once_all_its_rows_are_inserted() {
        let dir = temp_dir("trim");
        {
            let spool = open(&dir);
            commit(&spool, 1..4).await;
            commit(&spool, 4..7).await;
            let read = spool.inner.read(1, 6, 10).unwrap();
            assert_eq!(
                read.iter().map(|r| r.seq).collect::<Vec<_>>(),
                [1, 2, 3, 4, 5, 6]
            );
            // Inserted out of order: the first commit is whole, the second is not (4 is not in).
            for seq in [2, 3, 1, 5] {
                spool.inner.inserted(seq, read[seq as usize - 1].len, 0);
            }
            spool.deleted().await;
            assert_eq!(spool.backlog().rows, 2);
            let left = spool.inner.read(1, 6, 10).unwrap();
            assert_eq!(left.iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 5, 6]);
            spool.shutdown().await;
        }
        // A restart inserts the second commit again, 5 included.
        let spool = open(&dir);
        assert_eq!(spool.backlog().rows, 3);
        assert_eq!(spool.appended_through(), 6);
        let read = spool.inner.read(1, 6, 10).unwrap();
        assert_eq!(read.first().map(|r| r.seq), Some(4));
        assert_eq!(read[2].row.as_ref().unwrap(), &dead_letter(6));
        for r in &read {
            spool.inner.inserted(r.seq, r.len, 0);
        }
        assert_eq!(
            spool.backlog(),
            SpoolBacklog {
                rows: 0,
                bytes: 0,
                oldest_ms: 0
            }
        );
        spool.deleted().await;
        assert!(spool.inner.read(1, u64::MAX, 10).unwrap().is_empty());
        spool.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_arriving_within_the_commit_interval_share_one_commit() {
        let dir = temp_dir("interval");
        let config = SpoolConfig {
            commit_interval_ms: 400,
            ..SpoolConfig::default()
        };
        let spool =
            Spool::open(&dir, &config, SpoolMetrics::new(&Registry::new()).unwrap()).unwrap();
        // The first commit goes at once; the rows after it wait for the interval to pass,
        // however they trickle in.
        commit(&spool, 1..2).await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut tx = Some(tx);
        for i in 2..6 {
            let ack = (i == 5).then(|| tx.take()).flatten().map(|tx| {
                Ack::new(move || {
                    let _ = tx.send(());
                })
            });
            spool.append(&dead_letter(i), ack);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        rx.await.unwrap();
        let entries: Vec<u64> = lock(&spool.inner.commits).iter().map(|c| c.0).collect();
        assert_eq!(entries, [1, 2], "rows 2 to 5 committed as one entry");
        assert_eq!(spool.inner.read(1, 5, 10).unwrap().len(), 5);
        spool.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_unreadable_row_is_kept_aside_not_dropped() {
        let dir = temp_dir("unreadable");
        let spool = open(&dir);
        commit(&spool, 0..1).await;
        // Entries this version cannot read: a record of a later format, as an earlier version
        // wrote them (one per entry), and a segment whose last row is cut short.
        let mut later_format = dead_letter(1).encode(0);
        later_format[0] = 99;
        let mut cut = Segment::default();
        cut.push(&dead_letter(2), 0);
        cut.push(&dead_letter(3), 0);
        let cut = cut.finish().to_vec();
        spool
            .inner
            .with_db(|db| {
                let tx = db.begin_write()?;
                {
                    let mut rows = tx.open_table(ROWS)?;
                    rows.insert(2, later_format.as_slice())?;
                    rows.insert(3, &cut[..cut.len() - 1])?;
                }
                tx.commit()?;
                Ok(())
            })
            .unwrap();
        let read = spool.inner.read(1, 4, 10).unwrap();
        assert_eq!(read.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(read[2].row.as_ref().unwrap(), &dead_letter(2));
        for r in &read[1..] {
            if let Err((reason, bytes)) = &r.row {
                spool.inner.quarantine(r.seq, reason, bytes);
            }
        }
        let (reason, _) = read[1].row.as_ref().unwrap_err();
        assert_eq!(reason, "record format 99 is not 1 to 6");
        let kept: Vec<(u64, Vec<u8>)> = spool
            .inner
            .with_db(|db| {
                let tx = db.begin_read()?;
                let table = tx.open_table(UNREADABLE)?;
                let rows = table
                    .iter()?
                    .map(|e| e.map(|(k, v)| (k.value(), v.value().to_vec())))
                    .collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0], (1, later_format));
        assert_eq!(kept[1].0, 2);
        assert!(!kept[1].1.is_empty() && cut[..cut.len() - 1].ends_with(&kept[1].1));
        assert_eq!(spool.inner.metrics.unreadable.get(), 2);
        spool.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn rows_spooled_one_per_entry_by_an_earlier_version_read_back() {
        let dir = temp_dir("earlier");
        {
            let spool = open(&dir);
            spool
                .inner
                .with_db(|db| {
                    let tx = db.begin_write()?;
                    {
                        let mut rows = tx.open_table(ROWS)?;
                        for seq in [7, 8] {
                            rows.insert(seq, dead_letter(seq).encode(seq).as_slice())?;
                        }
                    }
                    tx.commit()?;
                    Ok(())
                })
                .unwrap();
            spool.shutdown().await;
        }
        let spool = open(&dir);
        assert_eq!(spool.backlog().rows, 2);
        assert_eq!(spool.appended_through(), 8);
        let read = spool.inner.read(7, 8, 10).unwrap();
        assert_eq!(read.iter().map(|r| r.seq).collect::<Vec<_>>(), [7, 8]);
        assert_eq!(read[1].row.as_ref().unwrap(), &dead_letter(8));
        assert_eq!(
            spool.backlog().bytes,
            read.iter().map(|r| r.len).sum::<u64>()
        );
        spool.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn reading(event_time_ms: u64, late: bool) -> SpoolRow {
        SpoolRow::Reading(ReadingRow {
            message_id: format!("m-{event_time_ms}"),
            device_id: "d".into(),
            kind: 1,
            district: 1,
            event_time: (event_time_ms / 1000) as u32,
            event_time_ms,
            received_at: 0,
            received_at_ms: 0,
            transport: 1,
            source: "t".into(),
            late: u8::from(late),
            payload: "{}".into(),
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_newest_on_time_reading_and_the_window_gap_outlive_the_rows() {
        let dir = temp_dir("meta");
        let gap = WindowGap {
            from_ms: 1_000,
            until_ms: 5_001,
            to_ms: 65_001,
        };
        {
            let spool = open(&dir);
            assert_eq!(spool.newest_on_time_event_ms(), None);
            assert_eq!(spool.window_gap(), None);
            spool.append(&reading(5_000, false), None);
            spool.append(&reading(9_000, true), None);
            spool.append(&reading(3_000, false), None);
            spool.append(&dead_letter(1), None);
            assert_eq!(spool.appended_through(), 4);
            spool.close().await;
            assert_eq!(
                spool.newest_on_time_event_ms(),
                Some(5_000),
                "late ones aside"
            );
            spool.set_window_gap(Some(gap)).await.unwrap();
            let (replay, next) = spool.spooled_readings(1, 10, 4_000).unwrap();
            assert_eq!(next, None);
            assert_eq!(
                replay.iter().map(|r| r.received_at_ms).collect::<Vec<_>>(),
                vec![0],
                "the on-time reading from 4,000 only"
            );
            assert_eq!(spool.spooled_readings(1, 2, 0).unwrap().1, Some(3));
            assert_eq!(spool.newest_on_time_deleted_ms(), None);
            // Everything inserted and trimmed: the facts stay.
            for r in spool.inner.read(1, 4, 10).unwrap() {
                let on_time = match r.row {
                    Ok(SpoolRow::Reading(r)) if r.late == 0 => r.event_time_ms,
                    _ => 0,
                };
                spool.inner.inserted(r.seq, r.len, on_time);
            }
            spool.inserted_through(4).await;
            spool.shutdown().await;
        }
        let spool = open(&dir);
        assert_eq!(spool.backlog().rows, 0);
        assert_eq!(spool.appended_through(), 0, "an empty spool numbers afresh");
        assert_eq!(spool.newest_on_time_event_ms(), Some(5_000));
        assert_eq!(spool.newest_on_time_deleted_ms(), Some(5_000));
        assert_eq!(spool.window_gap(), Some(gap));
        let later = WindowGap {
            from_ms: 3_000,
            until_ms: 9_001,
            to_ms: 69_001,
        };
        assert_eq!(
            gap.merge(later),
            WindowGap {
                from_ms: 1_000,
                until_ms: 9_001,
                to_ms: 69_001
            }
        );
        spool.set_window_gap(None).await.unwrap();
        spool.shutdown().await;
        assert_eq!(open(&dir).window_gap(), None, "cleared for good");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn ingest_waits_while_the_spool_is_full() {
        let dir = temp_dir("full");
        let config = SpoolConfig {
            max_bytes: 100,
            ..SpoolConfig::default()
        };
        let spool =
            Spool::open(&dir, &config, SpoolMetrics::new(&Registry::new()).unwrap()).unwrap();
        spool.wait_for_room().await;
        for i in 0..10 {
            spool.append(&dead_letter(i), None);
        }
        spool.close().await;
        let waiting = tokio::spawn({
            let spool = spool.clone();
            async move { spool.wait_for_room().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        for r in spool.inner.read(1, 10, 100).unwrap() {
            spool.inner.inserted(r.seq, r.len, 0);
        }
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("room once the rows are inserted")
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
