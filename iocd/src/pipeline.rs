//! Wires ingest, the dataflow, the store and the API into one running pipeline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ioc_dashboard_api::{ApiState, LiveFeed};
use ioc_dataflow::{DataflowMetrics, Outputs, SystemClock};
use ioc_ingest::IngestMetrics;
use ioc_schemas::{Ack, DeadLetter, IngestedReading, WindowResult};
use ioc_store::{DeadLetterRow, ReadingRow, Store, StoreMetrics, WindowRow, Writers};
use prometheus::IntCounterVec;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config::Config;

/// Where the dataflow's records go: the store (when configured) and the live feed.
#[derive(Clone)]
struct PipelineOutputs {
    writers: Option<Writers>,
    feed: LiveFeed,
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
    fn raw_reading(&self, reading: IngestedReading, late: bool, ack: Option<Ack>) {
        match &self.writers {
            Some(w) => {
                if let Err(e) = w
                    .readings
                    .blocking_send(ReadingRow::new(&reading, late), ack)
                {
                    tracing::error!(error = %e, "reading not queued for storage; the source will redeliver it");
                }
            }
            None => self.unstored("reading", ack),
        }
    }

    fn dead_letter(&self, letter: DeadLetter, ack: Option<Ack>) {
        match &self.writers {
            Some(w) => {
                if let Err(e) = w
                    .dead_letters
                    .blocking_send(DeadLetterRow::from(&letter), ack)
                {
                    tracing::error!(error = %e, "dead letter not queued for storage; the source will redeliver it");
                }
            }
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
        let row = self.writers.as_ref().map(|_| WindowRow::from(&result));
        self.feed.publish(result);
        if let (Some(w), Some(row)) = (&self.writers, row) {
            if let Err(e) = w.windows.blocking_send(row, None) {
                tracing::error!(error = %e, "window result not queued for storage");
            }
        }
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
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let registry = prometheus::Registry::new();
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

    for component in ["mqtt", "clickhouse", "dataflow"] {
        state.health().set_component(component, false, "starting");
    }

    let (stop_tx, mut stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: draining the pipeline");
        let _ = stop_tx.send(true);
    });
    let api = tokio::spawn(ioc_dashboard_api::serve(listener, state.clone(), {
        let mut stop = stop_rx.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    }));

    let store = match config.clickhouse.clone() {
        Some(cfg) => match connect_store(cfg, store_metrics, &state, &mut stop_rx).await? {
            Some(store) => Some(store),
            None => return finish_api(api).await,
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
    let (writers, writer_tasks) = match &store {
        Some(s) => {
            let (w, t) = s.writers();
            (Some(w), Some(t))
        }
        None => (None, None),
    };

    let (input_tx, input_rx) = mpsc::channel(config.dataflow.input_capacity);
    let outputs = PipelineOutputs {
        writers,
        feed: state.feed().clone(),
        unstored,
    };
    let dataflow = ioc_dataflow::spawn(
        config.dataflow.clone(),
        input_rx,
        outputs,
        dataflow_metrics,
        Arc::new(SystemClock),
    )?;
    state.health().set_component(
        "dataflow",
        true,
        format!("{} workers", config.dataflow.workers),
    );

    let (drained_tx, drained_rx) = watch::channel(false);
    let mqtt = tokio::spawn(ioc_ingest::run_mqtt(
        config.mqtt.clone(),
        input_tx,
        ingest_metrics.clone(),
        {
            let mut stop = stop_rx.clone();
            async move {
                let _ = stop.wait_for(|s| *s).await;
            }
        },
        {
            let mut drained = drained_rx;
            async move {
                let _ = drained.wait_for(|d| *d).await;
            }
        },
    ));
    let health = state.clone();
    let health_task = tokio::spawn(async move {
        loop {
            let up = ingest_metrics.connected.get() == 1;
            health.health().set_component(
                "mqtt",
                up,
                if up { "connected" } else { "not connected" },
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });

    // The dataflow ends once ingest has stopped and its queue is drained.
    let dataflow_result = tokio::task::spawn_blocking(move || dataflow.join()).await;
    health_task.abort();
    if let Some(tasks) = writer_tasks {
        let timeout = Duration::from_millis(config.shutdown.flush_timeout_ms);
        match tokio::time::timeout(timeout, tasks.join()).await {
            Ok(Ok(())) => tracing::info!("pending batches flushed to clickhouse"),
            Ok(Err(e)) => tracing::error!(error = %e, "a store writer failed"),
            Err(_) => tracing::warn!(
                "clickhouse flush timed out; unstored messages stay unacknowledged and will be redelivered"
            ),
        }
    }
    let _ = drained_tx.send(true);
    mqtt.await.context("mqtt task")??;
    dataflow_result.context("dataflow task")??;
    finish_api(api).await
}

async fn finish_api(
    api: tokio::task::JoinHandle<Result<(), ioc_dashboard_api::ApiError>>,
) -> anyhow::Result<()> {
    api.await.context("http task")??;
    Ok(())
}
