//! Wires the alert manager into the pipeline: the registry it looks devices up in, and where
//! its events and webhook attempts go (ClickHouse, when configured, and the WebSocket).

use std::sync::Arc;

use ioc_alerts::webhooks::{AttemptLog, DeliveryAttempt};
use ioc_alerts::{Alerts, AlertsConfig, AlertsTask, DeviceLookup};
use ioc_dashboard_api::{ApiState, DeviceDirectory, LiveFeed};
use ioc_schemas::{AlertEvent, Department};
use ioc_store::{department_code, AlertEventRow, Spool, SpoolRow, WebhookAttemptRow};
use prometheus::IntCounter;
use tokio::sync::mpsc;
use tracing::Instrument;

/// The API's device directory, which follows every registry change.
struct Registry(DeviceDirectory);

impl DeviceLookup for Registry {
    fn device(&self, id: &str) -> Option<(Department, u32)> {
        self.0
            .get(id)
            .map(|v| (v.device.department, v.device.expected_interval_s))
    }
}

/// Webhook attempts on their way to ClickHouse. The delivery tasks must never wait on the
/// store, so a full queue drops the row (the attempt itself is unaffected) and counts it in
/// `ioc_alerts_webhook_attempt_rows_dropped_total`.
struct AttemptRows {
    tx: mpsc::Sender<WebhookAttemptRow>,
    dropped: IntCounter,
}

impl AttemptLog for AttemptRows {
    fn attempt(&self, a: &DeliveryAttempt) {
        let row = WebhookAttemptRow {
            delivery_id: a.delivery_id.to_string(),
            webhook_id: a.webhook_id.clone(),
            subscription_id: a.subscription_id.clone(),
            department: department_code(a.department),
            url: a.url.clone(),
            attempt: a.attempt,
            at: u32::try_from(a.at_ms / 1000).unwrap_or(u32::MAX),
            at_ms: a.at_ms,
            status: a.status,
            latency_ms: a.latency_ms,
            error: a.error.clone(),
            outcome: a.outcome.as_str().to_owned(),
        };
        if self.tx.try_send(row).is_err() {
            self.dropped.inc();
        }
    }
}

/// The running alert manager and the queues the pipeline drains once the store is up.
#[derive(Debug)]
pub struct Alerting {
    /// The handle: observations in, REST commands.
    pub alerts: Alerts,
    /// The manager task.
    pub task: AlertsTask,
    events: mpsc::Receiver<AlertEvent>,
    attempts: mpsc::Receiver<WebhookAttemptRow>,
    /// The latest event of each alert open at start (restored from the state folder), for
    /// the WebSocket's snapshots.
    open_at_start: Vec<AlertEvent>,
}

/// Capacity of the queue of webhook attempt rows.
const ATTEMPT_QUEUE: usize = 10_000;

impl Alerting {
    /// Starts the manager (its rules, stored alerts and webhook outbox).
    pub async fn start(
        config: &AlertsConfig,
        state: &ApiState,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<Alerting> {
        let dropped = IntCounter::new(
            "ioc_alerts_webhook_attempt_rows_dropped_total",
            "Webhook attempt rows not stored because their queue to ClickHouse was full.",
        )?;
        registry.register(Box::new(dropped.clone()))?;
        let (tx, attempts) = mpsc::channel(ATTEMPT_QUEUE);
        let (alerts, task, events) = Alerts::start(
            config,
            Arc::new(Registry(state.devices().clone())),
            Arc::new(AttemptRows { tx, dropped }),
            registry,
        )
        .await?;
        let open = ioc_alerts::lifecycle::AlertFilter {
            open: Some(true),
            ..Default::default()
        };
        let open_at_start = alerts
            .list(open)
            .await?
            .iter()
            .map(ioc_alerts::lifecycle::latest_event)
            .collect();
        Ok(Alerting {
            alerts,
            task,
            events,
            attempts,
            open_at_start,
        })
    }

    /// Sends the alerts open at start, then every alert event, to the WebSocket and, with a
    /// store, every event and webhook attempt to ClickHouse, until the manager stops.
    /// Returns the manager task and the forwarding tasks, to await on shutdown.
    pub fn forward(
        self,
        feed: LiveFeed,
        spool: Option<Spool>,
    ) -> (AlertsTask, Vec<tokio::task::JoinHandle<()>>) {
        let Alerting {
            alerts,
            task,
            mut events,
            mut attempts,
            open_at_start,
        } = self;
        // Alerts an earlier run left open are in every snapshot from the start, as if this
        // process had raised them.
        for event in open_at_start {
            feed.publish_alert(event);
        }
        // The pipeline holds its own handles; the manager stops once they are dropped.
        drop(alerts);
        let event_spool = spool.clone();
        let events_task = tokio::spawn(
            async move {
                while let Some(event) = events.recv().await {
                    if let Some(spool) = &event_spool {
                        spool.append(&SpoolRow::AlertEvent(AlertEventRow::from(&event)), None);
                    }
                    feed.publish_alert(event);
                }
            }
            .instrument(tracing::info_span!("alert_events_out")),
        );
        let attempts_task = tokio::spawn(
            async move {
                while let Some(row) = attempts.recv().await {
                    if let Some(spool) = &spool {
                        spool.append(&SpoolRow::WebhookAttempt(row), None);
                    }
                }
            }
            .instrument(tracing::info_span!("webhook_attempts_out")),
        );
        (task, vec![events_task, attempts_task])
    }
}
