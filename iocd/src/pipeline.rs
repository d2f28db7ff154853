//! Wires ingest, the dataflow, the store and the API into one running pipeline.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ioc_dashboard_api::{ApiState, LiveFeed, UnknownDevices};
use ioc_dataflow::{DataflowMetrics, Observation, Outputs, SystemClock};
use ioc_ingest::IngestMetrics;
use ioc_schemas::{
    Ack, DeadLetter, District, Ingested, IngestedReading, Kind, Kpi, SourceMark, SourceState,
    WindowResult,
};
use ioc_store::{
    DeadLetterRow, DisplayChain, Spool, SpoolMetrics, SpoolRow, Store, StoreMetrics, WindowRow,
};
use prometheus::{IntCounter, IntCounterVec};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::config::Config;
use crate::registry::{ChangeStore, LocalCopy};
use crate::storage::{
    connect_store, run_store_side, GapFill, SpoolRebuild, StoreSide, Unreachable,
};

/// Where the dataflow's records go: the spool in front of ClickHouse (when one is configured)
/// and the live feed. Nothing here waits for storage: the spool takes rows without blocking.
#[derive(Clone)]
struct PipelineOutputs {
    /// The end of the newest final window put out.
    final_until: Arc<AtomicU64>,
    spool: Option<Spool>,
    feed: LiveFeed,
    unknown: UnknownDevices,
    /// The alert manager, when alerts are on.
    alerts: Option<ioc_alerts::Alerts>,
    /// `ioc_pipeline_unstored_total{record}`: records acknowledged without a store (demo);
    /// present when there is no spool.
    unstored: Option<Unstored>,
}

/// `ioc_pipeline_unstored_total` by `record`, resolved once: it counts per message.
#[derive(Clone)]
struct Unstored {
    readings: IntCounter,
    dead_letters: IntCounter,
}

impl Unstored {
    /// Counts a record acknowledged without being stored, and acknowledges it.
    fn count(counter: Option<&IntCounter>, ack: Option<Ack>) {
        if let Some(counter) = counter {
            counter.inc();
        }
        if let Some(ack) = ack {
            ack.done();
        }
    }
}

impl Outputs for PipelineOutputs {
    fn raw_reading(&self, reading: IngestedReading, late_behind: Option<u64>, ack: Option<Ack>) {
        match &self.spool {
            Some(spool) => spool.append_reading(reading, late_behind, ack),
            None => Unstored::count(self.unstored.as_ref().map(|u| &u.readings), ack),
        }
    }

    fn dead_letter(&self, letter: DeadLetter, ack: Option<Ack>) {
        self.feed.publish_dead_letter(&letter);
        match &self.spool {
            Some(spool) => spool.append(&SpoolRow::DeadLetter(DeadLetterRow::from(&letter)), ack),
            None => Unstored::count(self.unstored.as_ref().map(|u| &u.dead_letters), ack),
        }
    }

    fn duplicate(&self, _reading: IngestedReading, ack: Option<Ack>) {
        // The first copy is stored (or on its way); this one needs nothing but its receipt.
        if let Some(ack) = ack {
            ack.done();
        }
    }

    fn window(&self, result: WindowResult) {
        if result.is_final {
            self.final_until
                .fetch_max(result.window_end_ms(), Ordering::Relaxed);
        }
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

    fn reading(&self, o: &Observation) {
        // Rules on readings follow event time: only on-time readings come here.
        if let Some(alerts) = &self.alerts {
            if !alerts.watches_any(o.samples.iter().map(|(m, _)| m.as_str())) {
                return;
            }
            let samples: Vec<(&str, f64)> =
                o.samples.iter().map(|(m, v)| (m.as_str(), *v)).collect();
            alerts.observe_samples(&ioc_alerts::ReadingSamples {
                device_id: o.device_id.as_str(),
                kind: o.kind,
                district: o.topic_district,
                event_ms: o.event_ms,
                samples: &samples,
            });
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
    let kafka_assignment = kafka_assignment(&config)?;
    let registry = prometheus::Registry::new();
    let auth = &config.http.auth;
    if auth.enabled && auth.tokens.is_empty() && auth.tokens_file.is_none() {
        tracing::warn!(
            "access control is on and no token is configured: the API answers 401 to everything \
             but /healthz, /openapi.json, the page and (with metrics_public) /metrics; add \
             [[http.auth.tokens]] (see the README)"
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
    // At 0 from the start where they can move (Prometheus alerts on rate() need them).
    let unstored = match &config.clickhouse {
        None => Some(Unstored {
            readings: unstored.with_label_values(&["reading"]),
            dead_letters: unstored.with_label_values(&["dead_letter"]),
        }),
        Some(_) => None,
    };
    let rebuild_gauges = RebuildGauges::new(&registry)?;

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
    let stop_tx = Arc::new(stop_tx);
    {
        let stop_tx = Arc::clone(&stop_tx);
        let watch = async move {
            shutdown.await;
            tracing::info!("shutting down: draining the pipeline");
            stop_tx.send_replace(true);
        };
        tokio::spawn(watch.instrument(tracing::info_span!("shutdown_watch")));
    }
    // In a cluster the first process puts out windows, KPIs and alerts, and takes registry
    // changes; the others read their share of the sources and store its rows.
    let first = config.cluster.is_first();
    // The alert manager starts first: its REST API is served with the rest.
    let alerting = if config.alerts.enabled && first {
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
    let api = tokio::spawn(
        ioc_dashboard_api::serve_with(listener, state.clone(), extra_routes, {
            let mut stop = stop_rx.clone();
            async move {
                let _ = stop.wait_for(|s| *s).await;
            }
        })
        .instrument(tracing::info_span!("http_api")),
    );

    if config.clickhouse.is_some() {
        state.expect_history_store();
    }
    // Every row bound for ClickHouse goes through the spool (opened before ClickHouse is
    // reached, so a bad spool folder fails at once).
    let spool = match &config.clickhouse {
        Some(_) => Some(open_spool(&config, &registry)?),
        None => None,
    };
    let unreachable = Unreachable::default();
    let (store_tx, store_rx) = watch::channel(None::<Store>);
    let health_task = spawn_health(
        &state,
        &config,
        spool.clone(),
        &store_metrics,
        store_rx.clone(),
        unreachable.clone(),
        &ingest_metrics,
    );
    // ClickHouse, if it answers within `restart.clickhouse_wait_ms`; otherwise the live path
    // starts without it and the store task goes on trying.
    let store = match &config.clickhouse {
        Some(cfg) => {
            let wait = Duration::from_millis(config.restart.clickhouse_wait_ms);
            let reach = connect_store(cfg, &store_metrics, &unreachable, &mut stop_rx);
            match tokio::time::timeout(wait, reach).await {
                Ok(Ok(Some(store))) => Some(store),
                Ok(Ok(None)) => {
                    health_task.abort();
                    if let Some(spool) = &spool {
                        spool.shutdown().await;
                    }
                    return finish_api(api).await;
                }
                Ok(Err(e)) => return Err(e).context("cannot prepare the clickhouse schema"),
                Err(_) => {
                    tracing::warn!(
                        wait_ms = config.restart.clickhouse_wait_ms,
                        "clickhouse not reachable: going live without it; rows are spooled"
                    );
                    None
                }
            }
        }
        None => None,
    };

    let (drain_stop, drain_stop_rx) = watch::channel(false);
    // A start without ClickHouse reads the spool back before the drain may delete from it.
    let (may_drain, may_drain_rx) = watch::channel(store.is_some());
    let store_task = match (&config.clickhouse, &spool) {
        (Some(cfg), Some(spool)) => {
            let (caught_up_tx, mut caught_up) = watch::channel(false);
            let side = run_store_side(StoreSide {
                reached: store.clone(),
                config: cfg.clone(),
                metrics: store_metrics.clone(),
                unreachable: unreachable.clone(),
                spool: spool.clone(),
                state: state.clone(),
                store_tx,
                drain_stop: drain_stop_rx,
                caught_up: caught_up_tx,
                stop: stop_rx.clone(),
                may_drain: may_drain_rx,
            });
            let task = tokio::spawn(side.instrument(tracing::info_span!("store_side")));
            if store.is_some() {
                // What the last run spooled is stored before windows are rebuilt from
                // ClickHouse.
                let left = spool.backlog().rows;
                let stopped = tokio::select! {
                    _ = caught_up.wait_for(|c| *c) => false,
                    _ = stop_rx.wait_for(|s| *s) => true,
                };
                if stopped {
                    health_task.abort();
                    task.abort();
                    spool.shutdown().await;
                    return finish_api(api).await;
                }
                if left > 0 {
                    tracing::info!(
                        rows = left,
                        "rows spooled by the last run are in clickhouse"
                    );
                }
            }
            Some(task)
        }
        _ => None,
    };

    // The registry: the fleet file with ClickHouse's changes on top, or, when ClickHouse is
    // configured but not reached, the local copy the last run kept.
    let copy = LocalCopy::in_dir(&config.alerts.state_dir);
    let devices = match (&store, config.clickhouse.is_some(), copy.load()) {
        (None, true, Some(kept)) => {
            tracing::info!(
                devices = kept.len(),
                "device registry taken from the local copy until clickhouse is reached"
            );
            kept
        }
        _ => {
            let devices =
                crate::registry::initial_devices(&config.registry, store.as_ref()).await?;
            copy.save(&devices);
            devices
        }
    };
    state.devices().replace_all(devices.values().cloned());
    let (to_dataflow, registry_changes) = mpsc::channel(config.registry.change_capacity);
    let (api_changes, change_requests) = mpsc::channel(16);
    if first {
        state.set_registry_sender(api_changes);
    }
    let change_store = match &config.clickhouse {
        Some(_) => ChangeStore::ClickHouse(store_rx.clone()),
        None => ChangeStore::Unstored,
    };
    let registry_service = tokio::spawn(
        crate::registry::serve_changes(
            change_requests,
            change_store,
            to_dataflow,
            devices.clone(),
            copy.clone(),
        )
        .instrument(tracing::info_span!("registry_changes")),
    );

    let alert_tasks = alerting.map(|a| a.forward(state.feed().clone(), spool.clone()));

    let (input_tx, input_rx) = ioc_dataflow::feed(&config.dataflow, &config.cluster);
    let final_until = Arc::new(AtomicU64::new(0));
    let outputs = PipelineOutputs {
        final_until: Arc::clone(&final_until),
        spool: spool.clone(),
        feed: state.feed().clone(),
        unknown: state.unknown_devices().clone(),
        alerts,
        unstored,
    };
    // Where a rebuild of the windows open at the last stop starts, if there is one to do.
    // The first process reads every process's stored readings back; the dataflow takes each
    // to its device's worker.
    let rebuild = match (&store, config.restart.rebuild_windows && first) {
        (Some(store), true) => store.newest_on_time_event_ms().await?.map(|newest| {
            config
                .dataflow
                .rebuild_from(newest, config.restart.rebuild_margin_ms)
        }),
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
    // Windows a start without ClickHouse leaves out (or an earlier one left), recomputed once
    // ClickHouse holds their readings.
    let (gap, spool_rebuild) = match &spool {
        Some(spool) => crate::storage::plan_window_gap(spool, store.is_some(), &config).await?,
        None => (None, None),
    };
    let gap_task = match (gap.filter(|_| first), &spool) {
        (Some(gap), Some(spool)) => {
            let fill = crate::storage::fill_window_gap(GapFill {
                gap,
                store: store_rx.clone(),
                spool: spool.clone(),
                final_until,
                config: config.clone(),
                devices: devices.clone(),
                copy,
            });
            Some(tokio::spawn(
                fill.instrument(tracing::info_span!("window_gap_fill")),
            ))
        }
        _ => None,
    };
    let dataflow = ioc_dataflow::spawn(
        config.dataflow.clone(),
        ioc_dataflow::RunOptions {
            emit_windows_from_ms: rebuild.or(spool_rebuild.map(|r| r.live_from)).unwrap_or(0),
            finish_open_windows: false,
            kpi_history,
            reading_rules: config.alerts.enabled,
            cluster: config.cluster.clone(),
        },
        input_rx,
        ioc_dataflow::RegistryFeed::live(devices.into_values().collect(), registry_changes),
        outputs,
        dataflow_metrics,
        Arc::new(SystemClock),
    )?;
    // The dataflow ends once ingest has stopped and its queue is drained. Ending before that
    // (a worker failed; in a cluster, another process is gone) stops iocd with its error.
    let dataflow = {
        let (stop, health) = (Arc::clone(&stop_tx), state.clone());
        let span = tracing::info_span!("dataflow_join");
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let result = dataflow.join();
            if !*stop.borrow() {
                let why = match &result {
                    Err(e) => DisplayChain(e).to_string(),
                    Ok(()) => "it ended".to_owned(),
                };
                tracing::error!(error = %why, "the dataflow stopped while running; stopping iocd");
                health
                    .health()
                    .set_component("dataflow", false, format!("stopped: {why}"));
                stop.send_replace(true);
            }
            result
        })
    };
    let shape = match config.cluster.is_cluster() {
        true => format!(
            "{} workers; process {} of a cluster of {}",
            config.dataflow.workers,
            config.cluster.process,
            config.cluster.processes()
        ),
        false => format!("{} workers", config.dataflow.workers),
    };
    state.health().set_component("dataflow", true, shape);

    if let (Some(store), Some(from)) = (&store, rebuild) {
        rebuild_open_windows(store, from, &input_tx, &rebuild_gauges).await?;
    }
    if let (Some(spool), Some(plan)) = (&spool, spool_rebuild) {
        rebuild_from_spool(spool, plan, &input_tx).await?;
    }
    may_drain.send_replace(true);

    // The sources' records wait while the spool is full, so a long ClickHouse outage pushes
    // back on the brokers, never on the dataflow.
    let input_tx = match &spool {
        Some(spool) => input_tx.held_by(Arc::new(spool.clone())),
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
        let mqtt = ioc_ingest::run_mqtt(
            config.mqtt.clone(),
            input_tx.clone(),
            ingest_metrics.clone(),
            until(&stop_rx),
            until(&drained_rx),
        );
        let span = tracing::info_span!("mqtt_source", client_id = %config.mqtt.client_id);
        sources.push(("mqtt", tokio::spawn(mqtt.instrument(span))));
    }
    if config.kafka.enabled() {
        let kafka = ioc_ingest::run_kafka(
            config.kafka.clone(),
            kafka_assignment,
            input_tx.clone(),
            ingest_metrics.clone(),
            until(&stop_rx),
            until(&drained_rx),
        );
        let span = tracing::info_span!("kafka_consumer", group = %config.kafka.group_id);
        sources.push(("kafka", tokio::spawn(kafka.instrument(span))));
    }
    if sources.is_empty() {
        anyhow::bail!("no source configured: enable [mqtt] or set kafka.brokers");
    }
    // The sources hold the only senders: the dataflow ends when they stop.
    drop(input_tx);
    let dataflow_result = dataflow.await;
    health_task.abort();
    state.clear_registry_sender();
    registry_service.abort();
    // The alert manager's last events and webhook attempts go into the spool before it
    // closes. The dataflow's handles on the manager are gone; the API's go with the server.
    let api_result = finish_api(api).await;
    if let Some((manager, forwarders)) = alert_tasks {
        manager.join().await;
        for task in forwarders {
            let _ = task.await;
        }
    }
    // Everything taken is in the spool once it has committed: only then may the sources
    // forget it. The drain to ClickHouse goes on for what the flush timeout allows; what is
    // left stays in the spool for the next start.
    if let Some(spool) = &spool {
        spool.close().await;
    }
    let _ = drained_tx.send(true);
    if let Some(gap_task) = gap_task {
        // The gap stays recorded in the spool for the next start.
        gap_task.abort();
    }
    if let (Some(store_task), Some(spool)) = (store_task, &spool) {
        let timeout = Duration::from_millis(config.shutdown.flush_timeout_ms);
        let _ = drain_stop.send(true);
        let abort_store = store_task.abort_handle();
        // Waiting on a ClickHouse that is away or refusing inserts only delays the stop (the
        // demo once took 31 s for Ctrl-C after its server went): the rows are safe in the
        // spool either way.
        let unavailable = {
            let (store_rx, store_metrics) = (store_rx.clone(), store_metrics.clone());
            async move {
                loop {
                    if store_rx.borrow().is_none() || !store_metrics.failing_tables().is_empty() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        };
        let flushed = tokio::select! {
            flushed = tokio::time::timeout(timeout, store_task) => Some(flushed),
            () = unavailable => None,
        };
        abort_store.abort();
        let left = spool.backlog().rows;
        match flushed {
            None => tracing::warn!(
                rows = left,
                "clickhouse is unavailable; the rows not inserted stay in the spool for the next start"
            ),
            Some(Ok(Ok(Ok(())))) if left == 0 => {
                tracing::info!("the spool is drained into clickhouse")
            }
            Some(Ok(Ok(Ok(())))) => {
                tracing::info!(rows = left, "rows left in the spool for the next start")
            }
            Some(Ok(Ok(Err(e)))) => {
                tracing::error!(error = %DisplayChain(&e), "a store writer failed; rows stay in the spool")
            }
            Some(Ok(Err(e))) => {
                tracing::error!(error = %DisplayChain(&e), "the store task failed; rows stay in the spool")
            }
            Some(Err(_)) => tracing::warn!(
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
    // What the sources took is stored or stays with the broker; one that does not come to a
    // stop (its records stuck in a dataflow that failed) is left behind.
    for (name, source) in sources {
        match tokio::time::timeout(Duration::from_secs(10), source).await {
            Ok(ended) => ended.with_context(|| format!("{name} task"))??,
            Err(_) => tracing::warn!(
                source = name,
                "the source did not stop in 10 s; left behind"
            ),
        }
    }
    dataflow_result.context("dataflow task")??;
    api_result
}

/// How this process gets its Kafka partitions: in a cluster, the share of its workers (each
/// partition belongs to one worker of the cluster); otherwise all of them, or from the group
/// with `kafka.assignment = "group"`.
fn kafka_assignment(config: &Config) -> anyhow::Result<ioc_ingest::KafkaAssignment> {
    use ioc_ingest::{KafkaAssignment, PartitionAssignment};
    let cluster = config.cluster.is_cluster();
    Ok(match (config.kafka.assignment, cluster) {
        (PartitionAssignment::Group, true) => anyhow::bail!(
            "kafka.assignment = \"group\" cannot be used in a cluster, whose workers share the \
             partitions by index: leave it at \"static\""
        ),
        (PartitionAssignment::Group, false) => KafkaAssignment::Group,
        (PartitionAssignment::Static, true) => {
            let topology = config.cluster.topology(config.dataflow.workers);
            KafkaAssignment::Static(Arc::new(move |p| topology.owns_partition(p)))
        }
        (PartitionAssignment::Static, false) => KafkaAssignment::Static(Arc::new(|_| true)),
    })
}

/// Feeds the spooled on-time readings of the windows open at the last stop back into the
/// dataflow, for a start without ClickHouse (see [`SpoolRebuild`]).
async fn rebuild_from_spool(
    spool: &Spool,
    plan: SpoolRebuild,
    input: &ioc_dataflow::Feed,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let fed = spool
        .feed_readings(plan.replay_from, input, ioc_ingest::decode_stored)
        .await?;
    tracing::info!(
        readings = fed,
        from = %ioc_schemas::format_rfc3339_ms(plan.replay_from),
        windows_from = %ioc_schemas::format_rfc3339_ms(plan.live_from),
        seconds = started.elapsed().as_secs_f64(),
        "rebuilt open windows from the spool"
    );
    Ok(())
}

/// `ioc_pipeline_rebuild_rows` and `ioc_pipeline_rebuild_seconds`: 0 until a start-up
/// rebuild of open windows has run.
struct RebuildGauges {
    rows: prometheus::IntGauge,
    seconds: prometheus::Gauge,
}

impl RebuildGauges {
    fn new(registry: &prometheus::Registry) -> anyhow::Result<RebuildGauges> {
        let rows = prometheus::IntGauge::new(
            "ioc_pipeline_rebuild_rows",
            "Stored readings read back at start-up to rebuild open windows.",
        )?;
        let seconds = prometheus::Gauge::new(
            "ioc_pipeline_rebuild_seconds",
            "Time spent reading back stored readings at start-up.",
        )?;
        registry.register(Box::new(rows.clone()))?;
        registry.register(Box::new(seconds.clone()))?;
        Ok(RebuildGauges { rows, seconds })
    }
}

/// Feeds the stored readings of every window that may still have been open when the process
/// last stopped back into the dataflow, so those windows come out as if it had never stopped.
/// Readings the sources then deliver again are recognised as repeats.
async fn rebuild_open_windows(
    store: &Store,
    from: u64,
    input: &ioc_dataflow::Feed,
    gauges: &RebuildGauges,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut cursor = store.replay_on_time_readings(from)?;
    let (rows, replayed) = cursor
        .feed(input, ioc_ingest::decode_stored, |_| {})
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    gauges.rows.set(rows as i64);
    gauges.seconds.set(seconds);
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

/// Keeps `/healthz` up to date every 500 ms: ClickHouse and the spool, and the sources.
fn spawn_health(
    state: &ApiState,
    config: &Config,
    spool: Option<Spool>,
    store_metrics: &StoreMetrics,
    store: watch::Receiver<Option<Store>>,
    unreachable: Unreachable,
    ingest: &IngestMetrics,
) -> tokio::task::JoinHandle<()> {
    if spool.is_none() {
        state
            .health()
            .set_component("clickhouse", true, "not configured: results are not stored");
    }
    let health = state.clone();
    let store_metrics = store_metrics.clone();
    let sources = [
        ("mqtt", config.mqtt.enabled, ingest.connected.clone()),
        (
            "kafka",
            config.kafka.enabled(),
            ingest.kafka_connected.clone(),
        ),
    ];
    let refresh = async move {
        loop {
            if let Some(spool) = &spool {
                spool.refresh_metrics();
                let problem = if store.borrow().is_some() {
                    let failing = store_metrics.failing_tables();
                    (!failing.is_empty())
                        .then(|| format!("inserts into {} failing; retrying", failing.join(", ")))
                } else {
                    Some(match crate::storage::unreachable_reason(&unreachable) {
                        Some(why) => format!("not reached: {why}; retrying"),
                        None => "connecting".to_owned(),
                    })
                };
                let (ok, detail) = clickhouse_health(problem.as_deref(), spool);
                health.health().set_component("clickhouse", ok, detail);
            }
            for (name, on, connected) in &sources {
                if *on {
                    let up = connected.get() == 1;
                    let detail = if up { "connected" } else { "not connected" };
                    health.health().set_component(name, up, detail);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::spawn(refresh.instrument(tracing::info_span!("health")))
}

/// The `clickhouse` health component: what, if anything, keeps rows out of ClickHouse, and
/// what the spool holds.
fn clickhouse_health(problem: Option<&str>, spool: &Spool) -> (bool, String) {
    let backlog = spool.backlog();
    let spooled = format!(
        "{} rows spooled ({:.1} MiB), oldest {}",
        backlog.rows,
        backlog.bytes as f64 / f64::from(1 << 20),
        age(backlog.oldest_ms)
    );
    match problem {
        None if backlog.rows == 0 => (true, "inserting".to_owned()),
        None => (true, format!("inserting; {spooled}")),
        Some(problem) => (
            false,
            format!("ClickHouse unavailable ({problem}); {spooled}"),
        ),
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
