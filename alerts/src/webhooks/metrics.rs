//! The dispatcher's Prometheus metrics. No subscription, department or device ids in labels.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::delivery::AttemptOutcome;
use super::error::WebhookError;

/// The metrics; created with the dispatcher, registered with
/// [`Dispatcher::register_metrics`](super::Dispatcher::register_metrics).
#[derive(Debug, Clone)]
pub(crate) struct WebhookMetrics {
    /// `ioc_alerts_webhook_attempts_total{outcome}`, for registration.
    attempts: IntCounterVec,
    /// Its `outcome="delivered"` counter, resolved once (no label lookup per attempt).
    delivered: IntCounter,
    /// Its `outcome="retry"` counter.
    retried: IntCounter,
    /// Its `outcome="dead"` counter.
    dead_attempts: IntCounter,
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

impl WebhookMetrics {
    pub(crate) fn new() -> Result<Self, WebhookError> {
        let attempts = IntCounterVec::new(
            Opts::new(
                "ioc_alerts_webhook_attempts_total",
                "Webhook HTTP attempts, by outcome (delivered, retry, dead).",
            ),
            &["outcome"],
        )
        .map_err(WebhookError::Metrics)?;
        // Every outcome is exported from the start, at 0.
        let of = |outcome: AttemptOutcome| attempts.with_label_values(&[outcome.as_str()]);
        let (delivered, retried, dead_attempts) = (
            of(AttemptOutcome::Delivered),
            of(AttemptOutcome::Retry),
            of(AttemptOutcome::Dead),
        );
        Ok(WebhookMetrics {
            attempts,
            delivered,
            retried,
            dead_attempts,
            dead: IntCounter::new(
                "ioc_alerts_webhook_dead_total",
                "Webhook deliveries dead-lettered after their last attempt failed.",
            )
            .map_err(WebhookError::Metrics)?,
            pending: IntGauge::new(
                "ioc_alerts_webhook_pending",
                "Webhook deliveries pending in the outbox.",
            )
            .map_err(WebhookError::Metrics)?,
            latency: Histogram::with_opts(
                HistogramOpts::new(
                    "ioc_alerts_webhook_latency_seconds",
                    "Duration of webhook HTTP attempts, to the answer or the error.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
            )
            .map_err(WebhookError::Metrics)?,
            overflow: IntCounter::new(
                "ioc_alerts_webhook_queue_overflow_total",
                "Deliveries left in the outbox (not dropped) because their subscriber's \
                 in-memory queue was full; read back when it has room.",
            )
            .map_err(WebhookError::Metrics)?,
            subscriptions: IntGauge::new(
                "ioc_alerts_webhook_subscriptions",
                "Enabled webhook subscriptions.",
            )
            .map_err(WebhookError::Metrics)?,
        })
    }

    pub(crate) fn register(&self, registry: &Registry) -> Result<(), WebhookError> {
        registry
            .register(Box::new(self.attempts.clone()))
            .map_err(WebhookError::Metrics)?;
        registry
            .register(Box::new(self.dead.clone()))
            .map_err(WebhookError::Metrics)?;
        registry
            .register(Box::new(self.pending.clone()))
            .map_err(WebhookError::Metrics)?;
        registry
            .register(Box::new(self.latency.clone()))
            .map_err(WebhookError::Metrics)?;
        registry
            .register(Box::new(self.overflow.clone()))
            .map_err(WebhookError::Metrics)?;
        registry
            .register(Box::new(self.subscriptions.clone()))
            .map_err(WebhookError::Metrics)?;
        Ok(())
    }

    pub(crate) fn attempt(&self, outcome: AttemptOutcome, latency_s: f64) {
        match outcome {
            AttemptOutcome::Delivered => self.delivered.inc(),
            AttemptOutcome::Retry => self.retried.inc(),
            AttemptOutcome::Dead => self.dead_attempts.inc(),
        }
        self.latency.observe(latency_s);
        if outcome == AttemptOutcome::Dead {
            self.dead.inc();
        }
    }

    pub(crate) fn set_pending(&self, pending: u64) {
        self.pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
    }
}
