//! The dispatcher: turns notified alert events into durable deliveries, and delivers them
//! with one task per subscriber.
//!
//! Each enabled subscription has its own task, its own bounded queue and its own limit of
//! attempts in flight, so a slow or dead endpoint only ever holds up its own deliveries. A
//! task keeps at most `per_subscriber_queue` deliveries in memory (due now or waiting for
//! their backoff); more stay in the outbox (never dropped) and are read back when there is
//! room. The outbox is the truth: a task's memory is rebuilt from it at start.

mod attempt;
mod shared;
mod worker;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ioc_alert_engine::model::AlertEvent;
use ioc_schemas::{now_ms, EpochMs};
use prometheus::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn, Instrument};

use self::shared::{janitor, lock, open_outbox, read, write, Shared};
use self::worker::{spawn_worker, Worker};
use super::config::{SubscriptionSpec, WebhookConfig};
use super::delivery::{AttemptLog, Delivery, DeliveryQuery};
use super::error::WebhookError;
use super::metrics::WebhookMetrics;
use super::outbox::{NewDelivery, Outbox, Scheduled};
use super::payload::{payload_body, webhook_id, WebhookEventType};
use super::signing::{generate_secret, secret_key, secure_random};
use super::ssrf::{self, GuardedResolver};
use super::subscription::{
    validate_id, StoredSecret, StoredSubscription, Subscription, SubscriptionRequest,
    SubscriptionSource,
};

/// A subscription just created, with its secret (shown this once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedSubscription {
    /// The subscription.
    pub subscription: Subscription,
    /// Its secret, in full. Only here and in [`RotatedSecret`].
    pub secret: String,
}

/// The answer to a secret rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RotatedSecret {
    /// The subscription, with its new secret's prefix.
    pub subscription: Subscription,
    /// The new secret, in full (shown this once).
    pub secret: String,
    /// Until when the previous secret keeps signing too, epoch ms (`None` without a grace
    /// period).
    pub previous_secret_expires_ms: Option<EpochMs>,
}

/// What [`Dispatcher::put_subscription`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutSubscription {
    /// The subscription as stored.
    pub subscription: Subscription,
    /// Whether it was created (rather than replaced).
    pub created: bool,
    /// When created, or when the request set a new secret: the secret, in full.
    pub secret: Option<String>,
}

/// Webhook delivery to departments: subscriptions, the durable outbox, the delivery tasks.
/// Cheap to clone (all clones are the same dispatcher). Dropping the last clone stops the
/// delivery tasks at once (attempts in flight are abandoned and made again at the next
/// start); [`Dispatcher::shutdown`] lets them finish.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subscriptions = read(&self.inner.subs).len();
        f.debug_struct("Dispatcher")
            .field("subscriptions", &subscriptions)
            .field("config", &self.inner.shared.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    shared: Arc<Shared>,
    /// Every subscription, as stored (the outbox's table, cached).
    subs: RwLock<BTreeMap<String, StoredSubscription>>,
    /// The delivery task of every enabled subscription.
    workers: Mutex<HashMap<String, Worker>>,
    /// Serialises the management calls, so the cache and the outbox agree.
    admin: tokio::sync::Mutex<()>,
    janitor: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let workers = std::mem::take(&mut *lock(&self.workers));
        for (_, worker) in workers {
            let _ = worker.stop.send(true);
            worker.join.abort();
        }
        if let Some(janitor) = lock(&self.janitor).take() {
            janitor.abort();
        }
    }
}

impl Dispatcher {
    /// Opens (or creates) the outbox at `outbox_path`, upserts the config's subscriptions
    /// (and removes config subscriptions no longer declared), and starts one delivery task per
    /// enabled subscription; each picks up its pending deliveries from the outbox, resuming
    /// their backoff where it was. Must run inside a Tokio runtime. If another dispatcher of
    /// the same file is being dropped in this process, waits up to 5 s for it to let go.
    ///
    /// Fails on an invalid config (a config URL the SSRF policy refuses included; a URL that
    /// does not resolve now is only logged), or when the outbox cannot be opened.
    pub async fn open(
        outbox_path: &Path,
        config: WebhookConfig,
        log: Arc<dyn AttemptLog>,
    ) -> Result<Dispatcher, WebhookError> {
        config.validate()?;
        // reqwest is built without a default crypto provider; another component may have
        // installed it already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let outbox = Arc::new(open_outbox(outbox_path).await?);
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(config.request_timeout_ms))
            .connect_timeout(Duration::from_millis(config.request_timeout_ms.min(10_000)))
            .user_agent(concat!("ioc-alerts-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private: config.allow_private_urls,
            }))
            .build()
            .map_err(WebhookError::Client)?;
        let shared = Arc::new(Shared {
            outbox,
            config,
            log,
            metrics: WebhookMetrics::new()?,
            client,
            stopping: AtomicBool::new(false),
        });
        let stored = shared.blocking(Outbox::subscriptions).await?;
        let dispatcher = Dispatcher {
            inner: Arc::new(Inner {
                shared: Arc::clone(&shared),
                subs: RwLock::new(stored.into_iter().map(|s| (s.id.clone(), s)).collect()),
                workers: Mutex::new(HashMap::new()),
                admin: tokio::sync::Mutex::new(()),
                janitor: Mutex::new(None),
            }),
        };
        dispatcher.apply_config().await?;
        let subs: Vec<StoredSubscription> =
            read(&dispatcher.inner.subs).values().cloned().collect();
        for sub in &subs {
            dispatcher.sync_worker(sub);
        }
        let pending = shared.blocking(Outbox::pending_count).await?;
        shared.metrics.set_pending(pending);
        *lock(&dispatcher.inner.janitor) = Some(tokio::spawn(
            janitor(Arc::clone(&shared)).instrument(tracing::info_span!("webhook_janitor")),
        ));
        info!(
            subscriptions = subs.len(),
            pending,
            path = %outbox_path.display(),
            "webhook dispatcher open"
        );
        Ok(dispatcher)
    }

    /// Registers the metrics (`ioc_alerts_webhook_*`) in `registry`. Call once per registry.
    pub fn register_metrics(&self, registry: &Registry) -> Result<(), WebhookError> {
        self.inner.shared.metrics.register(registry)
    }

    /// The configuration in force.
    pub fn config(&self) -> &WebhookConfig {
        &self.inner.shared.config
    }

    /// Queues an alert event for every enabled subscription whose filter matches its alert,
    /// when the event is to be notified (`event.notify`). The deliveries are committed to the
    /// outbox before this returns, then handed to the subscribers' tasks. Returns how many
    /// were created; an event already queued for a subscription (same webhook id) is not
    /// queued again. Errors: [`WebhookError::ShuttingDown`], outbox failures (retryable: the
    /// caller may notify again, duplicates are skipped).
    pub async fn notify(&self, event: &AlertEvent) -> Result<usize, WebhookError> {
        if !event.notify {
            return Ok(0);
        }
        self.check_running()?;
        let event_type = WebhookEventType::of(event.transition).as_str().to_owned();
        let new: Vec<NewDelivery> = read(&self.inner.subs)
            .values()
            .filter(|s| s.enabled && s.filter.matches(&event.alert))
            .map(|s| NewDelivery {
                webhook_id: webhook_id(&event.event_id, &s.id),
                subscription_id: s.id.clone(),
                department: s.department,
                event_id: event.event_id.clone(),
                event_type: event_type.clone(),
                alert_id: event.alert.id.clone(),
            })
            .collect();
        if new.is_empty() {
            return Ok(0);
        }
        let body = payload_body(event)?;
        let now = now_ms();
        let (created, pending) = self
            .inner
            .shared
            .blocking(move |o| o.enqueue(&new, &body, now))
            .await?;
        self.inner.shared.metrics.set_pending(pending);
        for scheduled in &created {
            self.hand_off(scheduled);
        }
        debug!(event = %event.event_id, deliveries = created.len(), "webhook deliveries queued");
        Ok(created.len())
    }

    /// Every subscription, by id.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        let now = now_ms();
        read(&self.inner.subs)
            .values()
            .map(|s| s.view(now))
            .collect()
    }

    /// One subscription.
    pub fn subscription(&self, id: &str) -> Option<Subscription> {
        read(&self.inner.subs).get(id).map(|s| s.view(now_ms()))
    }

    /// Creates a subscription (an id is generated when the request has none). Checks the URL
    /// (scheme, SSRF policy, resolution), the filter and the secret (generated when absent).
    /// Returns it with its secret, in full, this once.
    pub async fn create_subscription(
        &self,
        request: SubscriptionRequest,
    ) -> Result<CreatedSubscription, WebhookError> {
        let _admin = self.inner.admin.lock().await;
        self.check_running()?;
        let id = match &request.id {
            Some(id) => {
                validate_id(id)?;
                id.clone()
            }
            None => generate_id()?,
        };
        if read(&self.inner.subs).contains_key(&id) {
            return Err(WebhookError::Conflict(format!("subscription {id} exists")));
        }
        let stored = self.new_subscription(id, request).await?;
        let secret = stored.current_secret().unwrap_or_default().to_owned();
        let subscription = stored.view(now_ms());
        self.save(stored).await?;
        Ok(CreatedSubscription {
            subscription,
            secret,
        })
    }

    /// Creates or replaces the subscription `id` (the request's id, if any, must be `id`).
    /// On replace, a secret different from the current one rotates to it (the old one keeps
    /// signing for the grace period); without one the secret is kept. A config subscription
    /// cannot be replaced ([`WebhookError::Conflict`]).
    pub async fn put_subscription(
        &self,
        id: &str,
        request: SubscriptionRequest,
    ) -> Result<PutSubscription, WebhookError> {
        let _admin = self.inner.admin.lock().await;
        self.check_running()?;
        validate_id(id)?;
        if request.id.as_deref().is_some_and(|body_id| body_id != id) {
            return Err(WebhookError::invalid(
                "id",
                "the body's id differs from the path's",
            ));
        }
        let existing = read(&self.inner.subs).get(id).cloned();
        let Some(mut stored) = existing else {
            let stored = self.new_subscription(id.to_owned(), request).await?;
            let secret = stored.current_secret().map(str::to_owned);
            let subscription = stored.view(now_ms());
            self.save(stored).await?;
            return Ok(PutSubscription {
                subscription,
                created: true,
                secret,
            });
        };
        if stored.source == SubscriptionSource::Config {
            return Err(WebhookError::Conflict(format!(
                "subscription {id} is managed by the config file"
            )));
        }
        self.check_request(&request).await?;
        let now = now_ms();
        stored.department = request.department;
        stored.url = request.url;
        stored.filter = request.filter.normalized();
        stored.enabled = request.enabled;
        stored.updated_ms = now;
        let mut new_secret = None;
        if let Some(secret) = request.secret {
            if stored.current_secret() != Some(secret.as_str()) {
                stored.rotate_to(secret.clone(), now, self.grace_ms());
                new_secret = Some(secret);
            }
        }
        let subscription = stored.view(now);
        self.save(stored).await?;
        Ok(PutSubscription {
            subscription,
            created: false,
            secret: new_secret,
        })
    }

    /// Deletes a subscription made through the API; its pending deliveries become dead
    /// ("subscription deleted"). Errors: not found; a config subscription (conflict).
    pub async fn delete_subscription(&self, id: &str) -> Result<(), WebhookError> {
        let _admin = self.inner.admin.lock().await;
        self.check_running()?;
        let source = read(&self.inner.subs).get(id).map(|s| s.source);
        match source {
            None => {
                return Err(WebhookError::NotFound {
                    kind: "subscription",
                    id: id.to_owned(),
                })
            }
            Some(SubscriptionSource::Config) => {
                return Err(WebhookError::Conflict(format!(
                    "subscription {id} is managed by the config file"
                )))
            }
            Some(SubscriptionSource::Api) => {}
        }
        self.remove(id, "subscription deleted").await
    }

    /// Gives a subscription a new secret and returns it, in full, this once. The old one keeps
    /// signing too (`webhook-signature: v1,<new> v1,<old>`) for `secret_grace_s`.
    pub async fn rotate_secret(&self, id: &str) -> Result<RotatedSecret, WebhookError> {
        let _admin = self.inner.admin.lock().await;
        self.check_running()?;
        let existing = read(&self.inner.subs).get(id).cloned();
        let mut stored = existing.ok_or_else(|| WebhookError::NotFound {
            kind: "subscription",
            id: id.to_owned(),
        })?;
        let secret = generate_secret()?;
        let now = now_ms();
        stored.rotate_to(secret.clone(), now, self.grace_ms());
        let subscription = stored.view(now);
        self.save(stored).await?;
        info!(subscription = %id, "webhook secret rotated");
        Ok(RotatedSecret {
            previous_secret_expires_ms: subscription.previous_secret_expires_ms,
            subscription,
            secret,
        })
    }

    /// Deliveries, newest first (see [`DeliveryQuery`]; the limit is clamped to 1..=1000).
    pub async fn deliveries(&self, query: DeliveryQuery) -> Result<Vec<Delivery>, WebhookError> {
        self.inner.shared.blocking(move |o| o.list(&query)).await
    }

    /// One delivery and the exact body it sends.
    pub async fn delivery(&self, id: u64) -> Result<(Delivery, String), WebhookError> {
        let found = self
            .inner
            .shared
            .blocking(move |o| o.get_with_body(id))
            .await?;
        found
            .map(|d| (d.info, d.body))
            .ok_or_else(|| WebhookError::NotFound {
                kind: "delivery",
                id: id.to_string(),
            })
    }

    /// Sends a delivered or dead delivery again: back to pending, due now, attempts reset,
    /// same webhook id and body (a receiver that deduplicates by `webhook-id` ignores a
    /// redelivery of something it processed). Errors: not found, already pending (conflict),
    /// its subscription deleted (not found).
    pub async fn redeliver(&self, id: u64) -> Result<Delivery, WebhookError> {
        self.check_running()?;
        let now = now_ms();
        let (delivery, pending) = self
            .inner
            .shared
            .blocking(move |o| o.redeliver(id, now))
            .await?;
        self.inner.shared.metrics.set_pending(pending);
        self.hand_off(&Scheduled {
            id,
            subscription_id: delivery.subscription_id.clone(),
            due_ms: now,
        });
        info!(delivery = id, webhook_id = %delivery.webhook_id, "webhook redelivery queued");
        Ok(delivery)
    }

    /// Stops taking work, lets the attempts in flight finish (up to the request timeout and
    /// 5 s more), and stops the delivery tasks. Pending deliveries stay in the outbox for the
    /// next start. Management calls and [`Dispatcher::notify`] fail afterwards with
    /// [`WebhookError::ShuttingDown`]; the outbox file is released when the last clone of
    /// the dispatcher is dropped.
    pub async fn shutdown(&self) {
        self.inner.shared.stopping.store(true, Ordering::SeqCst);
        let workers = std::mem::take(&mut *lock(&self.inner.workers));
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(self.inner.shared.config.request_timeout_ms)
            + Duration::from_secs(5);
        for worker in workers.values() {
            let _ = worker.stop.send(true);
        }
        for (id, worker) in workers {
            let abort = worker.join.abort_handle();
            if tokio::time::timeout_at(deadline, worker.join)
                .await
                .is_err()
            {
                warn!(subscription = %id, "webhook delivery task did not stop in time");
                abort.abort();
            }
        }
        if let Some(janitor) = lock(&self.inner.janitor).take() {
            janitor.abort();
        }
        info!("webhook dispatcher stopped");
    }

    fn check_running(&self) -> Result<(), WebhookError> {
        if self.inner.shared.stopping.load(Ordering::SeqCst) {
            Err(WebhookError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    fn grace_ms(&self) -> u64 {
        self.inner.shared.config.secret_grace_s.saturating_mul(1000)
    }

    /// Checks what a request asks for: URL, filter, secret.
    async fn check_request(&self, request: &SubscriptionRequest) -> Result<(), WebhookError> {
        ssrf::check_url(&request.url, self.inner.shared.config.allow_private_urls).await?;
        request.filter.validate()?;
        if let Some(secret) = &request.secret {
            secret_key(secret)?;
        }
        Ok(())
    }

    async fn new_subscription(
        &self,
        id: String,
        request: SubscriptionRequest,
    ) -> Result<StoredSubscription, WebhookError> {
        self.check_request(&request).await?;
        let now = now_ms();
        let secret = match request.secret {
            Some(s) => s,
            None => generate_secret()?,
        };
        Ok(StoredSubscription {
            id,
            department: request.department,
            url: request.url,
            filter: request.filter.normalized(),
            enabled: request.enabled,
            source: SubscriptionSource::Api,
            created_ms: now,
            updated_ms: now,
            secrets: vec![StoredSecret {
                secret,
                created_ms: now,
                expires_ms: None,
            }],
            config_secret: None,
        })
    }

    /// Stores a subscription, then updates the cache and its delivery task.
    async fn save(&self, stored: StoredSubscription) -> Result<(), WebhookError> {
        let to_store = stored.clone();
        self.inner
            .shared
            .blocking(move |o| o.put_subscription(&to_store))
            .await?;
        write(&self.inner.subs).insert(stored.id.clone(), stored.clone());
        self.sync_worker(&stored);
        Ok(())
    }

    /// Removes a subscription (its pending deliveries die with `reason`) and its task.
    async fn remove(&self, id: &str, reason: &'static str) -> Result<(), WebhookError> {
        let owned = id.to_owned();
        let now = now_ms();
        let (_, pending) = self
            .inner
            .shared
            .blocking(move |o| o.delete_subscription(&owned, now, reason))
            .await?;
        self.inner.shared.metrics.set_pending(pending);
        write(&self.inner.subs).remove(id);
        if let Some(worker) = lock(&self.inner.workers).remove(id) {
            let _ = worker.stop.send(true);
        }
        self.count_enabled();
        info!(subscription = %id, reason, "webhook subscription removed");
        Ok(())
    }

    /// Starts, updates or stops a subscription's delivery task to match it.
    fn sync_worker(&self, stored: &StoredSubscription) {
        let mut workers = lock(&self.inner.workers);
        if !stored.enabled || self.inner.shared.stopping.load(Ordering::SeqCst) {
            if let Some(worker) = workers.remove(&stored.id) {
                let _ = worker.stop.send(true);
            }
        } else if let Some(worker) = workers.get(&stored.id) {
            *write(&worker.runtime.target) = Arc::new(stored.clone());
        } else {
            let worker = spawn_worker(Arc::clone(&self.inner.shared), stored.clone());
            workers.insert(stored.id.clone(), worker);
        }
        drop(workers);
        self.count_enabled();
    }

    fn count_enabled(&self) {
        let enabled = read(&self.inner.subs)
            .values()
            .filter(|s| s.enabled)
            .count();
        self.inner
            .shared
            .metrics
            .subscriptions
            .set(i64::try_from(enabled).unwrap_or(i64::MAX));
    }

    /// Hands a pending delivery to its subscriber's task. Never waits: when the task's queue
    /// is full the delivery stays in the outbox (counted in the overflow metric) and the task
    /// reads it back when it has room; with no task (disabled subscription) it waits in the
    /// outbox.
    fn hand_off(&self, scheduled: &Scheduled) {
        let workers = lock(&self.inner.workers);
        let Some(worker) = workers.get(&scheduled.subscription_id) else {
            return;
        };
        match worker.tx.try_send((scheduled.id, scheduled.due_ms)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                worker.runtime.spilled.store(true, Ordering::SeqCst);
                self.inner.shared.metrics.overflow.inc();
            }
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// Upserts the config's subscriptions and removes config subscriptions it no longer
    /// declares. Runs in `open`, before the tasks start.
    async fn apply_config(&self) -> Result<(), WebhookError> {
        let config = &self.inner.shared.config;
        let now = now_ms();
        for spec in &config.subscriptions {
            check_spec(spec, config.allow_private_urls).await?;
            let existing = read(&self.inner.subs).get(&spec.id).cloned();
            let stored = match existing {
                None => config_subscription(spec, now)?,
                Some(before) => match self.updated_by_config(&before, spec, now) {
                    Some(stored) => stored,
                    None => continue,
                },
            };
            let to_store = stored.clone();
            self.inner
                .shared
                .blocking(move |o| o.put_subscription(&to_store))
                .await?;
            write(&self.inner.subs).insert(stored.id.clone(), stored);
        }
        let declared: HashSet<&str> = config.subscriptions.iter().map(|s| s.id.as_str()).collect();
        let stale: Vec<String> = read(&self.inner.subs)
            .values()
            .filter(|s| s.source == SubscriptionSource::Config && !declared.contains(s.id.as_str()))
            .map(|s| s.id.clone())
            .collect();
        for id in stale {
            self.remove(&id, "subscription removed from the config")
                .await?;
        }
        Ok(())
    }

    /// A stored subscription as the config now declares it (a new secret in the config
    /// rotates to it); `None` when the config changes nothing.
    fn updated_by_config(
        &self,
        before: &StoredSubscription,
        spec: &SubscriptionSpec,
        now: EpochMs,
    ) -> Option<StoredSubscription> {
        let mut s = before.clone();
        s.department = spec.department;
        s.url = spec.url.clone();
        s.filter = spec.filter.clone().normalized();
        s.enabled = spec.enabled;
        s.source = SubscriptionSource::Config;
        if let Some(secret) = &spec.secret {
            if s.config_secret.as_deref() != Some(secret.as_str()) {
                if s.current_secret() != Some(secret.as_str()) {
                    s.rotate_to(secret.clone(), now, self.grace_ms());
                }
                s.config_secret = Some(secret.clone());
            }
        }
        if s == *before {
            return None;
        }
        s.updated_ms = now;
        Some(s)
    }
}

/// Checks a subscription the config declares: its URL against the SSRF policy (a host that
/// does not resolve now is only logged: its deliveries retry) and its secret.
async fn check_spec(spec: &SubscriptionSpec, allow_private: bool) -> Result<(), WebhookError> {
    match ssrf::check_url(&spec.url, allow_private).await {
        Ok(_) => {}
        Err(e @ WebhookError::Unresolvable { .. }) => {
            warn!(
                subscription = %spec.id,
                error = &e as &dyn std::error::Error,
                "webhook url does not resolve now; its deliveries will retry"
            );
        }
        Err(e) => {
            return Err(WebhookError::config_entry(
                format!("subscriptions.{}.url", spec.id),
                &e,
            ))
        }
    }
    if let Some(secret) = &spec.secret {
        secret_key(secret).map_err(|e| {
            WebhookError::config_entry(format!("subscriptions.{}.secret", spec.id), &e)
        })?;
    }
    Ok(())
}

/// A subscription the config declares, new: its secret the config's, or generated.
fn config_subscription(
    spec: &SubscriptionSpec,
    now: EpochMs,
) -> Result<StoredSubscription, WebhookError> {
    Ok(StoredSubscription {
        id: spec.id.clone(),
        department: spec.department,
        url: spec.url.clone(),
        filter: spec.filter.clone().normalized(),
        enabled: spec.enabled,
        source: SubscriptionSource::Config,
        created_ms: now,
        updated_ms: now,
        secrets: vec![StoredSecret {
            secret: match &spec.secret {
                Some(s) => s.clone(),
                None => generate_secret()?,
            },
            created_ms: now,
            expires_ms: None,
        }],
        config_secret: spec.secret.clone(),
    })
}

/// A new subscription id: `sub_` and 16 random hex digits.
fn generate_id() -> Result<String, WebhookError> {
    let mut bytes = [0u8; 8];
    secure_random(&mut bytes)?;
    Ok(format!("sub_{:016x}", u64::from_le_bytes(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid() {
        let a = generate_id().unwrap();
        let b = generate_id().unwrap();
        assert_ne!(a, b);
        validate_id(&a).unwrap();
    }
}
