//! The dispatcher's Prometheus metrics. No subscription, department or device ids in labels.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::delivery::AttemptOutcome;
use super::error::WebhookError;

/// The metrics; created with the dispatcher, registered with
/// [`Dispatcher::register_metrics`](super::Dispatcher::register_metrics).
#[derive(Debug, Clone)]
pub(crate) struct WebhookMetrics {
    /// `ioc_alerts_webhook_attempts_total{outcome}`.
    attempts: IntCounterVec,
    /// `ioc_alerts_webhook_dead_total`.
    pub(crate) dead: IntCounter,
    /// `ioc_alerts_webhook_pending`.
    pub(crate) pending: IntGauge,
    /// `ioc_alerts_webhook_latency_seconds`.
    pub(crate) latency: Histogram,
    /// `ioc_alerts_webhook_queue_overflow_total`.
    pub(crate) overflow: IntCounter,
    /// `ioc_alerts_webhook_subscriptions`.
    pub(crate) subscriptions: IntGauge,
}

fn metric_error(e: prometheus::Error) -> WebhookError {
    WebhookError::Metrics(e.to_string())
}

impl WebhookMetrics {
    pub(crate) fn new() -> Result<Self, WebhookError> {
        let attempts = IntCounterVec::new(
            Opts::new(
                "ioc_alerts_webhook_attempts_total",
                "Webhook HTTP attempts, by outcome (delivered, retry, dead).",
            ),
            &["outcome"],
        )
        .map_err(metric_error)?;
        // Every outcome is exported from the start, at 0.
        for outcome in [
            AttemptOutcome::Delivered,
            AttemptOutcome::Retry,
            AttemptOutcome::Dead,
        ] {
            attempts.with_label_values(&[outcome.as_str()]);
        }
        Ok(WebhookMetrics {
            attempts,
            dead: IntCounter::new(
                "ioc_alerts_webhook_dead_total",
                "Webhook deliveries dead-lettered after their last attempt failed.",
            )
            .map_err(metric_error)?,
            pending: IntGauge::new(
                "ioc_alerts_webhook_pending",
                "Webhook deliveries pending in the outbox.",
            )
            .map_err(metric_error)?,
            latency: Histogram::with_opts(
                HistogramOpts::new(
                    "ioc_alerts_webhook_latency_seconds",
                    "Duration of webhook HTTP attempts, to the answer or the error.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
            )
            .map_err(metric_error)?,
            overflow: IntCounter::new(
                "ioc_alerts_webhook_queue_overflow_total",
                "Deliveries left in the outbox (not dropped) because their subscriber's \
                 in-memory queue was full; read back when it has room.",
            )
            .map_err(metric_error)?,
            subscriptions: IntGauge::new(
                "ioc_alerts_webhook_subscriptions",
                "Enabled webhook subscriptions.",
            )
            .map_err(metric_error)?,
        })
    }

    pub(crate) fn register(&self, registry: &Registry) -> Result<(), WebhookError> {
        registry
            .register(Box::new(self.attempts.clone()))
            .map_err(metric_error)?;
        registry
            .register(Box::new(self.dead.clone()))
            .map_err(metric_error)?;
        registry
            .register(Box::new(self.pending.clone()))
            .map_err(metric_error)?;
        registry
            .register(Box::new(self.latency.clone()))
            .map_err(metric_error)?;
        registry
            .register(Box::new(self.overflow.clone()))
            .map_err(metric_error)?;
        registry
            .register(Box::new(self.subscriptions.clone()))
            .map_err(metric_error)?;
        Ok(())
    }

    pub(crate) fn attempt(&self, outcome: AttemptOutcome, latency_s: f64) {
        self.attempts.with_label_values(&[outcome.as_str()]).inc();
        self.latency.observe(latency_s);
        if outcome == AttemptOutcome::Dead {
            self.dead.inc();
        }
    }

    pub(crate) fn set_pending(&self, pending: u64) {
        self.pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
    }
}
