//! `iocd backfill`: recomputes the windows and KPIs of a time range from the raw readings in
//! ClickHouse — late ones included — and writes them as new versions.
//!
//! iocd also recomputes, on its own, the windows a start without ClickHouse left out
//! ([`fill_gap`]), from on-time readings only, as the live run would have computed them.
//!
//! Readings later than the allowed lateness are stored raw and left out of the live windows;
//! a backfill counts them. A window's version grows with its count, so a recomputed window that
//! gained late readings supersedes the live one, and one that did not is written again with the
//! same version, changing nothing.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use ioc_dataflow::{DataflowMetrics, Outputs, RegistryFeed, RunOptions, SystemClock};
use ioc_schemas::{
    Ack, DeadLetter, Device, District, IngestedReading, Kind, Kpi, KpiFamily, WindowResult,
};
use ioc_store::{KpiWriter, Store, StoreMetrics, TableWriter, WindowGap, WindowRow};

use crate::config::Config;

/// Where the recomputed windows and KPIs go: those that fit in the range, to ClickHouse.
#[derive(Clone)]
struct BackfillOutputs {
    windows: TableWriter<WindowRow>,
    kpis: KpiWriter,
    range: WindowGap,
    written: Arc<AtomicU64>,
}

impl Outputs for BackfillOutputs {
    // The readings are stored already: only windows come out of a backfill.
    fn raw_reading(&self, _: IngestedReading, _: Option<u64>, _: Option<Ack>) {}
    fn dead_letter(&self, _: DeadLetter, _: Option<Ack>) {}
    fn duplicate(&self, _: IngestedReading, _: Option<Ack>) {}
    fn reading(&self, _: &ioc_dataflow::Observation) {}

    fn window(&self, result: WindowResult) {
        // A window reaching past the range has readings outside it: leave it alone.
        let r = &self.range;
        if !result.is_final
            || result.window_end_ms() > r.to_ms
            || !(r.from_ms..r.until_ms).contains(&result.window_start_ms)
        {
            return;
        }
        if let Err(e) = self.windows.blocking_send(WindowRow::from(&result), None) {
            tracing::error!(error = %e, "recomputed window not queued for storage");
            return;
        }
        self.written.fetch_add(1, Ordering::Relaxed);
    }

    fn kpi(&self, kpi: Kpi) {
        // Device health needs the devices' history before the range (when each was last
        // seen), which a backfill does not have: the live rows stand.
        let start = kpi.window_start_ms();
        let r = &self.range;
        if kpi.family() == KpiFamily::Health
            || !(r.from_ms..r.until_ms).contains(&start)
            || start + kpi.window_size_ms() > r.to_ms
        {
            return;
        }
        if let Err(e) = self.kpis.blocking_send(&kpi) {
            tracing::error!(error = %e, "recomputed kpi not queued for storage");
        }
    }

    // Unknown devices were reported when their readings first came.
    fn unknown_device(&self, _: &str, _: Kind, _: District, _: u64) {}
}

/// What a backfill did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackfillReport {
    /// Readings read back.
    pub readings: u64,
    /// Windows written.
    pub windows: u64,
}

/// A text progress bar on stderr.
fn progress(done: u64, total: u64, started: Instant) {
    let width = 40;
    let filled = (done * width).checked_div(total).unwrap_or(width);
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    let bar: String = (0..width)
        .map(|i| if i < filled { '#' } else { '.' })
        .collect();
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\rbackfill [{bar}] {percent:>3}% {done}/{total} readings, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let _ = err.flush();
}

/// Recomputes every window lying within `[from_ms, to_ms)` (aligned out to whole windows by
/// the caller or not: windows crossing either edge are left as they are).
pub async fn backfill(config: &Config, from_ms: u64, to_ms: u64) -> anyhow::Result<BackfillReport> {
    anyhow::ensure!(from_ms < to_ms, "--from must be before --to");
    let registry = prometheus::Registry::new();
    let ch = config.clickhouse.clone().unwrap_or_default();
    let store = Store::connect(ch, StoreMetrics::new(&registry)?)
        .await
        .context("cannot reach clickhouse")?;
    let devices = crate::registry::initial_devices(&config.registry, Some(&store)).await?;
    let range = WindowGap {
        from_ms,
        until_ms: to_ms,
        to_ms,
    };
    recompute(
        &store,
        config,
        devices.into_values().collect(),
        range,
        true,
        true,
    )
    .await
}

/// Recomputes the windows a start without ClickHouse left out, once ClickHouse holds their
/// readings, from the on-time ones (what the live run would have counted).
pub async fn fill_gap(
    store: &Store,
    config: &Config,
    devices: Vec<Device>,
    gap: WindowGap,
) -> anyhow::Result<BackfillReport> {
    let from = gap.from_ms;
    recompute(store, config, devices, gap, false, false)
        .await
        .with_context(|| format!("recomputing the windows from {from}"))
}

/// Feeds the stored readings of `range` through a dataflow of its own and stores the windows
/// and KPIs that lie within it.
async fn recompute(
    store: &Store,
    config: &Config,
    devices: Vec<Device>,
    range: WindowGap,
    with_late: bool,
    show_progress: bool,
) -> anyhow::Result<BackfillReport> {
    let registry = prometheus::Registry::new();
    let (from_ms, to_ms) = (range.from_ms, range.to_ms);
    let total = if show_progress {
        store.count_readings(from_ms, to_ms).await?
    } else {
        0
    };
    let (writers, tasks) = store.writers();
    let written = Arc::new(AtomicU64::new(0));
    let outputs = BackfillOutputs {
        windows: writers.windows.clone(),
        kpis: writers.kpis.clone(),
        range,
        written: Arc::clone(&written),
    };
    drop(writers);
    // One process: a backfill runs alone, whatever the cluster.
    let (tx, rx) = ioc_dataflow::feed(&config.dataflow, &RunOptions::default().cluster);
    let dataflow = ioc_dataflow::spawn(
        config.dataflow.clone(),
        RunOptions {
            emit_windows_from_ms: from_ms,
            finish_open_windows: true,
            ..RunOptions::default()
        },
        rx,
        RegistryFeed::fixed(devices),
        outputs,
        DataflowMetrics::new(&registry)?,
        Arc::new(SystemClock),
    )?;

    let started = Instant::now();
    let mut cursor = store.stored_readings(from_ms, to_ms, with_late)?;
    let report = |n| {
        if show_progress {
            progress(n, total, started);
        }
    };
    report(0);
    let (readings, _) = cursor
        .feed(&tx, ioc_ingest::decode_stored, |n| {
            if n % 1_000 == 0 {
                report(n);
            }
        })
        .await?;
    report(readings);
    drop(tx);
    tokio::task::spawn_blocking(move || dataflow.join())
        .await
        .context("dataflow task")??;
    tasks.join().await?;
    if show_progress {
        #[allow(clippy::print_stderr)]
        {
            eprintln!();
        }
    }
    Ok(BackfillReport {
        readings,
        windows: written.load(Ordering::Relaxed),
    })
}
