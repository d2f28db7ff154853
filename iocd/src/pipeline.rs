//! Wires ingest, the dataflow, the store and the API into one running pipeline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ioc_dashboard_api::{ApiState, LiveFeed, UnknownDevices};
use ioc_dataflow::DataflowConfig;
use ioc_dataflow::{DataflowMetrics, Outputs, SystemClock};
use ioc_ingest::decode_reading;
use ioc_ingest::IngestMetrics;
use ioc_schemas::{
    Ack, DeadLetter, District, Ingested, IngestedReading, Kind, Kpi, SourceMark, SourceState,
    ValidationLimits, WindowResult,
};
use ioc_store::{
    DeadLetterRow, LateReadingRow, ReadingRow, ReplayCursor, Spool, SpoolMetrics, SpoolRow, Store,
    StoreMetrics, WindowRow,
};
use prometheus::IntCounterVec;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config::Config;

/// Where the dataflow's records go: the spool in front of ClickHouse (when one is configured)
/// and the live feed. Nothing here waits for storage: the spool takes rows without blocking.
#[derive(Clone)]
struct PipelineOutputs {
    spool: Option<Spool>,
    feed: LiveFeed,
    unknown: UnknownDevices,
    /// The alert manager, when alerts are on.
    alerts: Option<ioc_alerts::Alerts>,
    /// `ioc_pipeline_unstored_total{record}`: records acknowledged without a store (demo).
    unstored: IntCounterVec,
}

impl PipelineOutputs {
    fn unstored(&self, record: &str, ack: Option<Ack>) {
        self.unstored.with_label_values(&[record]).inc();
        if let Some(ack) = ack {
            ack.done();
        }
    }
}

impl Outputs for PipelineOutputs {
    fn raw_reading(&self, reading: IngestedReading, late_behind: Option<u64>, ack: Option<Ack>) {
        // Rules on readings follow event time: a late reading is stored but not evaluated.
        if let (Some(alerts), None) = (&self.alerts, late_behind) {
            alerts.observe_reading(&reading.reading, reading.district);
        }
        let Some(spool) = &self.spool else {
            return self.unstored("reading", ack);
        };
        let row = SpoolRow::Reading(ReadingRow::new(&reading, late_behind.is_some()));
        match late_behind {
            None => spool.append(&row, ack),
            Some(watermark) => {
                // Rows are committed in order: acknowledging the ledger entry covers both.
                spool.append(&row, None);
                spool.append(
                    &SpoolRow::LateReading(LateReadingRow::new(&reading, watermark)),
                    ack,
                );
            }
        }
    }

    fn dead_letter(&self, letter: DeadLetter, ack: Option<Ack>) {
        match &self.spool {
            Some(spool) => spool.append(&SpoolRow::DeadLetter(DeadLetterRow::from(&letter)), ack),
            None => self.unstored("dead_letter", ack),
        }
    }

    fn duplicate(&self, _reading: IngestedReading, ack: Option<Ack>) {
        // The first copy is stored (or on its way); this one needs nothing but its receipt.
        if let Some(ack) = ack {
            ack.done();
        }
    }

    fn window(&self, result: WindowResult) {
        if let Some(spool) = &self.spool {
            spool.append(&SpoolRow::Window(WindowRow::from(&result)), None);
        }
        self.feed.publish(result);
    }

    fn kpi(&self, kpi: Kpi) {
        if let Some(alerts) = &self.alerts {
            alerts.observe_kpi(&kpi);
        }
        if let Some(spool) = &self.spool {
            spool.append(&SpoolRow::from(&kpi), None);
        }
        self.feed.publish_kpi(kpi);
    }

    fn unknown_device(&self, device_id: &str, kind: Kind, district: District, event_ms: u64) {
        self.unknown.record(device_id, kind, district, event_ms);
    }
}

/// Connects to ClickHouse, retrying while it is unreachable, until `stop` flips.
async fn connect_store(
    config: ioc_store::ClickHouseConfig,
    metrics: StoreMetrics,
    state: &ApiState,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<Option<Store>> {
    let mut delay = Duration::from_millis(200);
    loop {
        match Store::connect(config.clone(), metrics.clone()).await {
            Ok(store) => {
                state.health().set_component(
                    "clickhouse",
                    true,
                    format!("database {}", config.database),
                );
                return Ok(Some(store));
            }
            Err(e) if e.is_retryable() => {
                state
                    .health()
                    .set_component("clickhouse", false, e.to_string());
                tracing::warn!(error = %e, url = %config.url, "clickhouse not reachable; retrying");
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return Ok(None),
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e).context("cannot prepare the clickhouse schema"),
        }
    }
}

/// Runs the pipeline until `shutdown` resolves, then drains it: ingest stops reading, the
/// dataflow emits what the watermark has closed, pending batches are flushed to ClickHouse
/// (bounded by `shutdown.flush_timeout_ms`), and only then are the last messages acknowledged.
pub async fn run(
    mut config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    crate::instance::fill_instance_ids(&mut config);
    let registry = prometheus::Registry::new();
    let auth = &config.http.auth;
    if auth.enabled && auth.tokens.is_empty() && auth.tokens_file.is_none() {
        tracing::warn!(
            "access control is on and no token is configured: the API answers 401 to everything \
             but /healthz and /metrics; add [[http.auth.tokens]] (see the README)"
        );
    }
    let state = ApiState::new(&config.http, registry.clone())?;
    let ingest_metrics = IngestMetrics::new(&registry)?;
    let dataflow_metrics = DataflowMetrics::new(&registry)?;
    let store_metrics = StoreMetrics::new(&registry)?;
    let unstored = IntCounterVec::new(
        prometheus::Opts::new(
            "ioc_pipeline_unstored_total",
            "Records acknowledged without being stored, because no ClickHouse is configured.",
        ),
        &["record"],
    )?;
    registry.register(Box::new(unstored.clone()))?;

    let sources_on = [
        ("mqtt", config.mqtt.enabled),
        ("kafka", config.kafka.enabled()),
    ];
    for (component, on) in [("clickhouse", true), ("dataflow", true)]
        .into_iter()
        .chain(sources_on)
    {
        if on {
            state.health().set_component(component, false, "starting");
        }
    }

    let (stop_tx, mut stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: draining the pipeline");
        let _ = stop_tx.send(true);
    });
    // The alert manager starts first: its REST API is served with the rest.
    let alerting = if config.alerts.enabled {
        Some(crate::alerting::Alerting::start(&config.alerts, &state, &registry).await?)
    } else {
        None
    };
    let alerts = alerting.as_ref().map(|a| a.alerts.clone());
    if alerts.is_some() {
        state.add_api_description(ioc_alerts::api_description());
    }
    let extra_routes = alerts
        .clone()
        .map(ioc_alerts::api::router)
        .unwrap_or_default();
    let api = tokio::spawn(ioc_dashboard_api::serve_with(
        listener,
        state.clone(),
        extra_routes,
        {
            let mut stop = stop_rx.clone();
            async move {
                let _ = stop.wait_for(|s| *s).await;
            }
        },
    ));

    if config.clickhouse.is_some() {
        state.expect_history_store();
    }
    // Every row bound for ClickHouse goes through the spool (opened before ClickHouse is
    // reached, so a bad spool folder fails at once).
    let spool = match &config.clickhouse {
        Some(_) => Some(open_spool(&config, &registry)?),
        None => None,
    };
    let store = match config.clickhouse.clone() {
        Some(cfg) => match connect_store(cfg, store_metrics.clone(), &state, &mut stop_rx).await? {
            Some(store) => Some(store),
            None => {
                if let Some(spool) = &spool {
                    spool.shutdown().await;
                }
                return finish_api(api).await;
            }
        },
        None => {
            state.health().set_component(
                "clickhouse",
                true,
                "not configured: results are not stored",
            );
            None
        }
    };
    if let Some(store) = &store {
        state.set_history_store(store.clone());
    }
    let health = state.clone();
    let (mqtt_on, kafka_on) = (config.mqtt.enabled, config.kafka.enabled());
    // From here on, so the start-up drain of the last run's spool shows too.
    let health_spool = spool.clone();
    let (connected, kafka_connected) = (
        ingest_metrics.connected.clone(),
        ingest_metrics.kafka_connected.clone(),
    );
    let health_task = tokio::spawn(async move {
        loop {
            if let Some(spool) = &health_spool {
                spool.refresh_metrics();
                let (ok, detail) = clickhouse_health(&store_metrics.failing_tables(), spool);
                health.health().set_component("clickhouse", ok, detail);
            }
            for (name, on, up) in [
                ("mqtt", mqtt_on, connected.get() == 1),
                ("kafka", kafka_on, kafka_connected.get() == 1),
            ] {
                if on {
                    let detail = if up { "connected" } else { "not connected" };
                    health.health().set_component(name, up, detail);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });

    let (drain_stop, drain_stop_rx) = watch::channel(false);
    let (writer_tasks, drain_task) = match (&store, &spool) {
        (Some(store), Some(spool)) => {
            let (writers, tasks) = store.writers();
            let (caught_up_tx, mut caught_up) = watch::channel(false);
            let drain = tokio::spawn({
                let spool = spool.clone();
                async move { spool.drain(writers, drain_stop_rx, caught_up_tx).await }
            });
            // What the last run spooled is stored before windows are rebuilt from ClickHouse.
            let left = spool.backlog().rows;
            let stopped = tokio::select! {
                _ = caught_up.wait_for(|c| *c) => false,
                _ = stop_rx.wait_for(|s| *s) => true,
            };
            if stopped {
                health_task.abort();
                drain.abort();
                spool.shutdown().await;
                return finish_api(api).await;
            }
            if left > 0 {
                tracing::info!(
                    rows = left,
                    "rows spooled by the last run are in clickhouse"
                );
            }
            (Some(tasks), Some(drain))
        }
        _ => (None, None),
    };

    let devices = crate::registry::initial_devices(&config.registry, store.as_ref()).await?;
    state.devices().replace_all(devices.values().cloned());
    let (to_dataflow, registry_changes) = mpsc::channel(config.registry.change_capacity);
    let (api_changes, change_requests) = mpsc::channel(16);
    state.set_registry_sender(api_changes);
    let registry_service = tokio::spawn(crate::registry::serve_changes(
        change_requests,
        store.clone(),
        to_dataflow,
    ));

    let alert_tasks = alerting.map(|a| a.forward(state.feed().clone(), spool.clone()));

    let (input_tx, input_rx) = mpsc::channel(config.dataflow.input_capacity);
    let outputs = PipelineOutputs {
        spool: spool.clone(),
        feed: state.feed().clone(),
        unknown: state.unknown_devices().clone(),
        alerts,
        unstored,
    };
    // Where a rebuild of the windows open at the last stop starts, if there is one to do.
    let rebuild = match (&store, config.restart.rebuild_windows) {
        (Some(store), true) => store
            .newest_on_time_event_ms()
            .await?
            .map(|newest| rebuild_from(newest, &config.dataflow, config.restart.rebuild_margin_ms)),
        _ => None,
    };
    // The stored windows the KPIs with long horizons need from before the rebuild.
    let kpi_history = match (&store, rebuild) {
        (Some(store), Some(from)) => {
            let (size, span) = (
                ioc_dataflow::kpi::device::BASE_WINDOW_MS,
                ioc_dataflow::kpi::device::HISTORY_SPAN_MS,
            );
            store
                .final_windows(
                    size,
                    from.saturating_sub(span),
                    from,
                    &ioc_dataflow::kpi::device::HISTORY_METRICS,
                )
                .await?
        }
        _ => Vec::new(),
    };
    if !kpi_history.is_empty() {
        tracing::info!(
            windows = kpi_history.len(),
            "restoring kpi state from stored windows"
        );
    }
    let dataflow = ioc_dataflow::spawn(
        config.dataflow.clone(),
        ioc_dataflow::RunOptions {
            emit_windows_from_ms: rebuild.unwrap_or(0),
            finish_open_windows: false,
            kpi_history,
        },
        input_rx,
        ioc_dataflow::RegistryFeed::live(devices.into_values().collect(), registry_changes),
        outputs,
        dataflow_metrics,
        Arc::new(SystemClock),
    )?;
    state.health().set_component(
        "dataflow",
        true,
        format!("{} workers", config.dataflow.workers),
    );

    if let (Some(store), Some(from)) = (&store, rebuild) {
        rebuild_open_windows(store, from, &input_tx, &registry).await?;
    }

    // The sources' records pass a gate that holds them while the spool is full, so a long
    // ClickHouse outage pushes back on the brokers, never on the dataflow.
    let input_tx = match &spool {
        Some(spool) => admit_while_spool_has_room(spool.clone(), input_tx),
        None => input_tx,
    };
    if config.kafka.enabled() {
        // Before any source starts: until the group assigns partitions, nothing else (MQTT
        // connects sooner) may move event time past the backlog those partitions hold.
        input_tx
            .send(Ingested::Source(SourceMark::kafka_group(
                SourceState::Assigned,
            )))
            .await
            .map_err(|_| anyhow::anyhow!("the dataflow stopped before the sources started"))?;
    }
    let (drained_tx, drained_rx) = watch::channel(false);
    let until = |rx: &watch::Receiver<bool>| {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|flag| *flag).await;
        }
    };
    let mut sources = Vec::new();
    if config.mqtt.enabled {
        sources.push((
            "mqtt",
            tokio::spawn(ioc_ingest::run_mqtt(
                config.mqtt.clone(),
                input_tx.clone(),
                ingest_metrics.clone(),
                until(&stop_rx),
                until(&drained_rx),
            )),
        ));
    }
    if config.kafka.enabled() {
        sources.push((
            "kafka",
            tokio::spawn(ioc_ingest::run_kafka(
                config.kafka.clone(),
                input_tx.clone(),
                ingest_metrics.clone(),
                until(&stop_rx),
                until(&drained_rx),
            )),
        ));
    }
    if sources.is_empty() {
        anyhow::bail!("no source configured: enable [mqtt] or set kafka.brokers");
    }
    // The sources hold the only senders: the dataflow ends when they stop.
    drop(input_tx);
    // The dataflow ends once ingest has stopped and its queue is drained.
    let dataflow_result = tokio::task::spawn_blocking(move || dataflow.join()).await;
    health_task.abort();
    state.clear_registry_sender();
    registry_service.abort();
    // Everything taken is in the spool once it has committed: only then may the sources
    // forget it. The drain to ClickHouse goes on for what the flush timeout allows; what is
    // left stays in the spool for the next start.
    if let Some(spool) = &spool {
        spool.close().await;
    }
    let _ = drained_tx.send(true);
    if let (Some(drain), Some(tasks), Some(spool)) = (drain_task, writer_tasks, &spool) {
        let timeout = Duration::from_millis(config.shutdown.flush_timeout_ms);
        let _ = drain_stop.send(true);
        let abort_drain = drain.abort_handle();
        let flushed = tokio::time::timeout(timeout, async {
            let _ = drain.await;
            let joined = tasks.join().await;
            spool.deleted().await;
            joined
        })
        .await;
        abort_drain.abort();
        let left = spool.backlog().rows;
        match flushed {
            Ok(Ok(())) if left == 0 => tracing::info!("the spool is drained into clickhouse"),
            Ok(Ok(())) => tracing::info!(rows = left, "rows left in the spool for the next start"),
            Ok(Err(e)) => tracing::error!(error = %e, "a store writer failed; rows stay in the spool"),
            Err(_) => tracing::warn!(
                rows = left,
                "clickhouse flush timed out; the rows not inserted stay in the spool for the next start"
            ),
        }
    }
    if let Some(spool) = &spool {
        if tokio::time::timeout(Duration::from_secs(10), spool.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(path = %spool.path().display(), "the spool did not close in 10 s");
        }
    }
    // The dataflow's handles on the alert manager are gone; the API's go with the server.
    for (name, source) in sources {
        source.await.with_context(|| format!("{name} task"))??;
    }
    dataflow_result.context("dataflow task")??;
    finish_api(api).await?;
    if let Some((manager, forwarders)) = alert_tasks {
        manager.join().await;
        for task in forwarders {
            let _ = task.await;
        }
    }
    Ok(())
}

/// Feeds stored readings into the dataflow as replays (counted in windows, not stored again),
/// calling `each` with the number read so far. Returns `(read, fed)`: a stored payload that no
/// longer decodes is logged and left out.
pub(crate) async fn feed_stored(
    cursor: &mut ReplayCursor,
    input: &mpsc::Sender<Ingested>,
    mut each: impl FnMut(u64),
) -> anyhow::Result<(u64, u64)> {
    // Stored readings were valid when they arrived; only their shape is checked again.
    let limits = ValidationLimits {
        max_future_ms: u64::MAX / 4,
        min_event_time_ms: 0,
    };
    let (mut rows, mut fed) = (0u64, 0u64);
    while let Some(stored) = cursor.next().await? {
        rows += 1;
        match decode_reading(stored.payload.as_bytes(), usize::MAX, 0, &limits) {
            Ok(reading) => {
                let record = Ingested::Replayed(IngestedReading {
                    reading,
                    district: stored.district,
                    transport: stored.transport,
                    source: stored.source,
                    received_at_ms: stored.received_at_ms,
                    payload: stored.payload,
                });
                input
                    .send(record)
                    .await
                    .map_err(|_| anyhow::anyhow!("the dataflow stopped while replaying"))?;
                fed += 1;
            }
            Err(e) => tracing::warn!(error = %e, "a stored reading no longer decodes; left out"),
        }
        each(rows);
    }
    Ok((rows, fed))
}

/// Where the rebuild starts: early enough that every window ending after `margin_ms` before the
/// watermark the stored readings imply starts after it, aligned down to every window's slide.
/// Windows starting before it are left out of the rebuild (they closed before the stop).
fn rebuild_from(newest_ms: u64, config: &DataflowConfig, margin_ms: u64) -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let windows = config.effective_windows();
    let span = windows
        .iter()
        .fold(1, |lcm, w| lcm / gcd(lcm, w.slide()) * w.slide());
    let longest = windows.iter().map(|w| w.size_ms).max().unwrap_or(0);
    let t = newest_ms
        .saturating_sub(config.allowed_lateness_ms)
        .saturating_sub(margin_ms)
        .saturating_sub(longest);
    t - t % span
}

/// Feeds the stored readings of every window that may still have been open when the process
/// last stopped back into the dataflow, so those windows come out as if it had never stopped.
/// Readings the sources then deliver again are recognised as repeats.
async fn rebuild_open_windows(
    store: &Store,
    from: u64,
    input: &mpsc::Sender<Ingested>,
    registry: &prometheus::Registry,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut cursor = store.replay_on_time_readings(from)?;
    let (rows, replayed) = feed_stored(&mut cursor, input, |_| {}).await?;
    let seconds = started.elapsed().as_secs_f64();
    let rows_gauge = prometheus::IntGauge::new(
        "ioc_pipeline_rebuild_rows",
        "Stored readings read back at start-up to rebuild open windows.",
    )?;
    let seconds_gauge = prometheus::Gauge::new(
        "ioc_pipeline_rebuild_seconds",
        "Time spent reading back stored readings at start-up.",
    )?;
    rows_gauge.set(rows as i64);
    seconds_gauge.set(seconds);
    registry.register(Box::new(rows_gauge))?;
    registry.register(Box::new(seconds_gauge))?;
    tracing::info!(
        rows,
        replayed,
        from = %ioc_schemas::format_rfc3339_ms(from),
        seconds,
        "rebuilt open windows from stored readings"
    );
    Ok(())
}

/// Opens the spool: `spool.dir`, or `spool` in the state folder.
fn open_spool(config: &Config, registry: &prometheus::Registry) -> anyhow::Result<Spool> {
    let dir = if config.spool.dir.as_os_str().is_empty() {
        config.alerts.state_dir.join("spool")
    } else {
        config.spool.dir.clone()
    };
    Ok(Spool::open(
        &dir,
        &config.spool,
        SpoolMetrics::new(registry)?,
    )?)
}

/// A sender into `input` whose records wait while the spool is full.
fn admit_while_spool_has_room(
    spool: Spool,
    input: mpsc::Sender<Ingested>,
) -> mpsc::Sender<Ingested> {
    let (tx, mut rx) = mpsc::channel::<Ingested>(256);
    tokio::spawn(async move {
        while let Some(record) = rx.recv().await {
            spool.wait_for_room().await;
            if input.send(record).await.is_err() {
                break;
            }
        }
    });
    tx
}

/// The `clickhouse` health component: whether inserts work, and what the spool holds.
fn clickhouse_health(failing: &[String], spool: &Spool) -> (bool, String) {
    let backlog = spool.backlog();
    let spooled = format!(
        "{} rows spooled ({:.1} MiB), oldest {}",
        backlog.rows,
        backlog.bytes as f64 / f64::from(1 << 20),
        age(backlog.oldest_ms)
    );
    if failing.is_empty() {
        let detail = if backlog.rows == 0 {
            "inserting".to_owned()
        } else {
            format!("inserting; {spooled}")
        };
        (true, detail)
    } else {
        (
            false,
            format!(
                "ClickHouse unavailable (inserts into {} failing; retrying); {spooled}",
                failing.join(", ")
            ),
        )
    }
}

/// `42 s`, `3.5 minutes`, `2.0 hours`.
fn age(ms: u64) -> String {
    let s = ms as f64 / 1000.0;
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.1} minutes", s / 60.0)
    } else {
        format!("{:.1} hours", s / 3600.0)
    }
}

async fn finish_api(
    api: tokio::task::JoinHandle<Result<(), ioc_dashboard_api::ApiError>>,
) -> anyhow::Result<()> {
    api.await.context("http task")??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rebuild_starts_a_window_before_the_watermark_on_every_slide() {
        use ioc_schemas::WindowSpec;
        let t = |h: u64, m: u64, s: u64| ((h * 60 + m) * 60 + s) * 1000;
        let tumbling = DataflowConfig {
            allowed_lateness_ms: 10_000,
            windows: vec![WindowSpec::MINUTE, WindowSpec::tumbling(900_000)],
            ..DataflowConfig::default()
        };
        // Newest 10:37:30 → watermark 10:37:20 → minus the 60 s margin and the 15-minute
        // window 10:21:20 → on a 15-minute boundary 10:15:00.
        assert_eq!(rebuild_from(t(10, 37, 30), &tumbling, 60_000), t(10, 15, 0));
        assert_eq!(rebuild_from(5_000, &tumbling, 60_000), 0);
        let sliding = DataflowConfig {
            windows: vec![WindowSpec::sliding(900_000, 60_000)],
            ..tumbling
        };
        // The same, on a boundary of both the minute slide and the 5-minute KPI base windows
        // that are always computed: 10:20:00.
        assert_eq!(rebuild_from(t(10, 37, 30), &sliding, 60_000), t(10, 20, 0));
    }
}
