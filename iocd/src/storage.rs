//! The ClickHouse side of the pipeline: reaching ClickHouse (at start-up or later), draining
//! the spool into it, and recomputing the windows a start without it had to leave out.
//!
//! Nothing on the live path waits for any of this: the sources, the dataflow, the WebSocket
//! and the alerts run on the spool whether ClickHouse is reached or not.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ioc_dashboard_api::ApiState;
use ioc_schemas::Device;
use ioc_store::{
    ClickHouseConfig, DisplayChain, Spool, Store, StoreError, StoreMetrics, WindowGap,
};
use tokio::sync::watch;
use tracing::Instrument;

use crate::config::Config;
use crate::history::StoreHistory;
use crate::registry::LocalCopy;

/// Why ClickHouse was last found unreachable (`None`: not tried yet, or reached).
pub(crate) type Unreachable = Arc<Mutex<Option<String>>>;

fn note(unreachable: &Unreachable, why: Option<String>) {
    *unreachable
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = why;
}

/// What ClickHouse was last found to be, for `/healthz`.
pub(crate) fn unreachable_reason(unreachable: &Unreachable) -> Option<String> {
    unreachable
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// Connects to ClickHouse (and migrates its schema), retrying while it is unreachable, until
/// `stop` flips (`Ok(None)`). A permanent error (a schema that cannot be prepared) is returned.
pub(crate) async fn connect_store(
    config: &ClickHouseConfig,
    metrics: &StoreMetrics,
    unreachable: &Unreachable,
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<Store>, StoreError> {
    let mut delay = Duration::from_millis(200);
    loop {
        match Store::connect(config.clone(), metrics.clone()).await {
            Ok(store) => {
                note(unreachable, None);
                return Ok(Some(store));
            }
            Err(e) if e.is_retryable() => {
                note(unreachable, Some(DisplayChain(&e).to_string()));
                tracing::warn!(error = %DisplayChain(&e), url = %config.url, "clickhouse not reachable; retrying");
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return Ok(None),
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(e) => {
                note(unreachable, Some(DisplayChain(&e).to_string()));
                return Err(e);
            }
        }
    }
}

/// The store task's inputs.
pub(crate) struct StoreSide {
    /// ClickHouse, if start-up reached it; otherwise the task keeps trying.
    pub reached: Option<Store>,
    pub config: ClickHouseConfig,
    pub metrics: StoreMetrics,
    pub unreachable: Unreachable,
    pub spool: Spool,
    pub state: ApiState,
    /// Told the store once it is reached.
    pub store_tx: watch::Sender<Option<Store>>,
    /// Set by the shutdown once the spool is closed: drain what is committed, then stop.
    pub drain_stop: watch::Receiver<bool>,
    /// Set once the rows the last run spooled are in ClickHouse.
    pub caught_up: watch::Sender<bool>,
    /// The process is stopping: give up reaching ClickHouse.
    pub stop: watch::Receiver<bool>,
    /// Set once the spool may be drained: a start without ClickHouse first reads back the
    /// readings it rebuilds windows from, which the drain would delete once inserted.
    pub may_drain: watch::Receiver<bool>,
}

/// Reaches ClickHouse if start-up did not, then drains the spool into it until `drain_stop`,
/// and waits for the writers' last inserts.
pub(crate) async fn run_store_side(side: StoreSide) -> Result<(), StoreError> {
    let StoreSide {
        reached,
        config,
        metrics,
        unreachable,
        spool,
        state,
        store_tx,
        drain_stop,
        caught_up,
        mut stop,
        mut may_drain,
    } = side;
    let store = match reached {
        Some(store) => store,
        None => loop {
            match connect_store(&config, &metrics, &unreachable, &mut stop).await {
                Ok(Some(store)) => {
                    tracing::info!("clickhouse reached; draining the spool into it");
                    break store;
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    // Live on and keep spooling: an operator can fix the schema meanwhile.
                    tracing::error!(error = %DisplayChain(&e), "cannot prepare the clickhouse schema; retrying in 30 s");
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => return Ok(()),
                        () = tokio::time::sleep(Duration::from_secs(30)) => {}
                    }
                }
            }
        },
    };
    // The API reads history through its own interface; it never sees the store.
    state.set_history_source(Arc::new(StoreHistory::new(store.clone())));
    store_tx.send_replace(Some(store.clone()));
    if config.retention.enabled {
        let every = Duration::from_secs(config.retention.check_every_s);
        tokio::spawn(
            keep_retention(store.clone(), every, stop.clone())
                .instrument(tracing::info_span!("retention")),
        );
    }
    tokio::select! {
        _ = may_drain.wait_for(|m| *m) => {}
        _ = stop.wait_for(|s| *s) => return Ok(()),
    }
    let (writers, tasks) = store.writers();
    spool.drain(writers, drain_stop, caught_up).await;
    tasks.join().await?;
    spool.deleted().await;
    Ok(())
}

/// Drops the partitions past their table's retention (`clickhouse.retention`) now and every
/// `every` until `stop`; a failed check is logged and tried again at the next.
async fn keep_retention(store: Store, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = store.enforce_retention(ioc_schemas::now_ms()).await {
            tracing::warn!(error = %DisplayChain(&e), "retention check failed; trying again at the next");
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// How a start without ClickHouse rebuilds the windows open at the last stop from the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpoolRebuild {
    /// The spooled on-time readings from this event time on are fed back in.
    pub replay_from: u64,
    /// Windows starting here or later have all their readings in the spool (or still to come):
    /// they are put out. The ones before are left out, recorded as a [`WindowGap`].
    pub live_from: u64,
}

/// What a start does about the windows open at the last stop without ClickHouse: rebuild them
/// from the spool, as far as it holds their readings, and record those it cannot (merged with
/// any an earlier start left) in the spool. A start that reached ClickHouse rebuilds from it
/// and only picks up what an earlier start left.
pub(crate) async fn plan_window_gap(
    spool: &Spool,
    reached: bool,
    config: &Config,
) -> anyhow::Result<(Option<WindowGap>, Option<SpoolRebuild>)> {
    let earlier = spool.window_gap();
    let newest = spool.newest_on_time_event_ms();
    let (false, true, Some(newest)) = (reached, config.restart.rebuild_windows, newest) else {
        return Ok((earlier, None));
    };
    let replay_from = config
        .dataflow
        .rebuild_from(newest, config.restart.rebuild_margin_ms);
    // The readings after the newest one that left for ClickHouse are all in the spool.
    let live_from = spool
        .newest_on_time_deleted_ms()
        .map_or(replay_from, |t| (t + 1).max(replay_from));
    let rebuild = SpoolRebuild {
        replay_from,
        live_from,
    };
    if live_from == replay_from {
        return Ok((earlier, Some(rebuild)));
    }
    let new = WindowGap {
        from_ms: replay_from,
        until_ms: live_from,
        to_ms: live_from + config.dataflow.longest_window_ms(),
    };
    let gap = earlier.map_or(new, |g| g.merge(new));
    spool.set_window_gap(Some(gap)).await?;
    tracing::warn!(
        from = %ioc_schemas::format_rfc3339_ms(gap.from_ms),
        until = %ioc_schemas::format_rfc3339_ms(gap.until_ms),
        "started without clickhouse: the windows starting in this range need readings only \
         clickhouse holds; they are left out of the live view and recomputed once it is back"
    );
    Ok((Some(gap), Some(rebuild)))
}

/// The gap filler's inputs.
pub(crate) struct GapFill {
    pub gap: WindowGap,
    pub store: watch::Receiver<Option<Store>>,
    pub spool: Spool,
    /// The end of the newest final window the live dataflow has put out.
    pub final_until: Arc<AtomicU64>,
    pub config: Config,
    pub devices: BTreeMap<String, Device>,
    pub copy: LocalCopy,
}

/// Recomputes the windows of `gap` from ClickHouse once every reading they hold is there: the
/// live windows have closed past them (so their readings have all been spooled) and the drain
/// has inserted everything spooled by then. Windows of each size are done as soon as they can
/// be (the 1-minute ones first, the 5-minute KPI windows later); once the longest are, the gap
/// is cleared from the spool. Retries on failure; a process stopped first leaves the gap
/// recorded for the next start (recomputing a window again changes nothing).
pub(crate) async fn fill_window_gap(fill: GapFill) {
    let GapFill {
        gap,
        mut store,
        spool,
        final_until,
        config,
        devices,
        copy,
    } = fill;
    let Some(store) = store
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|s| s.clone())
    else {
        return;
    };
    // One pass per window size (distinct, smallest first; the KPIs' 5-minute ones included).
    let mut bounds: Vec<u64> = config
        .dataflow
        .effective_windows()
        .iter()
        .map(|w| (gap.until_ms + w.size_ms).min(gap.to_ms))
        .collect();
    bounds.dedup();
    if bounds.last() != Some(&gap.to_ms) {
        bounds.push(gap.to_ms);
    }
    for to_ms in bounds {
        while final_until.load(Ordering::Relaxed) < to_ms {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        spool.inserted_through(spool.appended_through()).await;
        let range = WindowGap { to_ms, ..gap };
        loop {
            let devices = copy.load().unwrap_or_else(|| devices.clone());
            let started = std::time::Instant::now();
            let filled =
                crate::backfill::fill_gap(&store, &config, devices.into_values().collect(), range)
                    .await;
            match filled {
                Ok(report) => {
                    tracing::info!(
                        readings = report.readings,
                        windows = report.windows,
                        ending_by = %ioc_schemas::format_rfc3339_ms(to_ms),
                        seconds = started.elapsed().as_secs_f64(),
                        "recomputed the windows left out while clickhouse was unreachable"
                    );
                    break;
                }
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "cannot recompute the windows left out yet; retrying in 10 s"
                    );
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
            }
        }
    }
    if let Err(e) = spool.set_window_gap(None).await {
        tracing::warn!(error = %DisplayChain(&e), "cannot clear the recomputed windows from the spool; they will be recomputed again");
    }
}
