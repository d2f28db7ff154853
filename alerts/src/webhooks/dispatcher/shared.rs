//! What the dispatcher and its delivery tasks share: the outbox (called on the blocking
//! pool), the HTTP client, the metrics and each subscription as it is now; opening the outbox
//! and purging old deliveries from it.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ioc_schemas::now_ms;
use tracing::{info, warn};

use crate::webhooks::config::WebhookConfig;
use crate::webhooks::delivery::AttemptLog;
use crate::webhooks::error::WebhookError;
use crate::webhooks::metrics::WebhookMetrics;
use crate::webhooks::outbox::{Outbox, PURGE_BATCH};
use crate::webhooks::subscription::StoredSubscription;

/// How long [`open_outbox`] waits for a previous dispatcher of the same file (in this
/// process, being dropped) to let go of it.
const OPEN_LOCK_WAIT: Duration = Duration::from_secs(5);
/// How long a delivery task waits after the outbox failed to read, ms.
pub(super) const STORE_RETRY_MS: u64 = 1_000;

/// What the delivery tasks share.
pub(super) struct Shared {
    pub(super) outbox: Arc<Outbox>,
    pub(super) config: WebhookConfig,
    pub(super) log: Arc<dyn AttemptLog>,
    pub(super) metrics: WebhookMetrics,
    pub(super) client: reqwest::Client,
    pub(super) stopping: AtomicBool,
}

impl Shared {
    /// Runs an outbox call on the blocking pool, in the caller's span.
    pub(super) async fn blocking<T, F>(&self, f: F) -> Result<T, WebhookError>
    where
        T: Send + 'static,
        F: FnOnce(&Outbox) -> Result<T, WebhookError> + Send + 'static,
    {
        let outbox = Arc::clone(&self.outbox);
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| f(&outbox)))
            .await
            .map_err(WebhookError::Task)?
    }
}

/// What a delivery task reads at every attempt.
pub(super) struct SubRuntime {
    pub(super) id: String,
    /// The subscription now (URL, secrets), replaced when it changes.
    pub(super) target: RwLock<Arc<StoredSubscription>>,
    /// Whether the outbox may hold pending deliveries the task does not know of.
    pub(super) spilled: AtomicBool,
}

/// A lock's value to read, even if a panic poisoned it (the values are replaced whole).
pub(super) fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

/// A lock's value to write, even if a panic poisoned it.
pub(super) fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// A mutex's value, even if a panic poisoned it.
pub(super) fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens the outbox, waiting (up to [`OPEN_LOCK_WAIT`]) while another dispatcher of this
/// process still holds it.
pub(super) async fn open_outbox(path: &Path) -> Result<Outbox, WebhookError> {
    let started = Instant::now();
    loop {
        let owned = path.to_owned();
        let opened = tokio::task::spawn_blocking(move || Outbox::open(&owned))
            .await
            .map_err(WebhookError::Task)?;
        match opened {
            Err(WebhookError::StoreLocked) if started.elapsed() < OPEN_LOCK_WAIT => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// Purges old delivered and dead deliveries, every `retention / 24` (1 min to 1 h).
pub(super) async fn janitor(shared: Arc<Shared>) {
    let retention_ms = shared.config.retention_h.saturating_mul(3_600_000);
    if retention_ms == 0 {
        return;
    }
    let period = Duration::from_millis((retention_ms / 24).clamp(60_000, 3_600_000));
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let cutoff = now_ms().saturating_sub(retention_ms);
        loop {
            match shared.blocking(move |o| o.purge(cutoff)).await {
                Ok(n) if n >= PURGE_BATCH => continue,
                Ok(n) => {
                    if n > 0 {
                        info!(purged = n, "old webhook deliveries purged");
                    }
                    break;
                }
                Err(e) => {
                    warn!(
                        error = &e as &dyn std::error::Error,
                        "webhook outbox purge failed"
                    );
                    break;
                }
            }
        }
    }
}
