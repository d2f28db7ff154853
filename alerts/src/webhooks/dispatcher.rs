//! The dispatcher: turns notified alert events into durable deliveries, and delivers them
//! with one task per subscriber.
//!
//! Each enabled subscription has its own task, its own bounded queue and its own limit of
//! attempts in flight, so a slow or dead endpoint only ever holds up its own deliveries. A
//! task keeps at most `per_subscriber_queue` deliveries in memory (due now or waiting for
//! their backoff); more stay in the outbox (never dropped) and are read back when there is
//! room. The outbox is the truth: a task's memory is rebuilt from it at start.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use ioc_schemas::EpochMs;
use prometheus::Registry;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

use super::config::WebhookConfig;
use super::delivery::{
    AttemptLog, AttemptOutcome, Delivery, DeliveryAttempt, DeliveryQuery, DeliveryState,
};
use super::error::WebhookError;
use super::metrics::WebhookMetrics;
use super::now_ms;
use super::outbox::{AttemptChange, NewDelivery, Outbox, Scheduled, StoredDelivery, PURGE_BATCH};
use super::payload::{payload_body, webhook_id, WebhookEventType};
use super::signing::{generate_secret, secret_key, secure_random, signature_header};
use super::ssrf::{self, GuardedResolver};
use super::subscription::{
    validate_id, StoredSecret, StoredSubscription, Subscription, SubscriptionRequest,
    SubscriptionSource,
};
use crate::model::AlertEvent;

/// How long [`Dispatcher::open`] waits for a previous dispatcher of the same file (in this
/// process, being dropped) to let go of it.
const OPEN_LOCK_WAIT: Duration = Duration::from_secs(5);
/// How long a delivery task waits after the outbox failed to read, ms.
const STORE_RETRY_MS: u64 = 1_000;
/// The most bytes of a refusing answer's body kept in the attempt's error.
const ERROR_BODY_BYTES: usize = 200;

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

/// What the delivery tasks share.
struct Shared {
    outbox: Arc<Outbox>,
    config: WebhookConfig,
    log: Arc<dyn AttemptLog>,
    metrics: WebhookMetrics,
    client: reqwest::Client,
    stopping: AtomicBool,
}

impl Shared {
    /// Runs an outbox call on the blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, WebhookError>
    where
        T: Send + 'static,
        F: FnOnce(&Outbox) -> Result<T, WebhookError> + Send + 'static,
    {
        let outbox = Arc::clone(&self.outbox);
        tokio::task::spawn_blocking(move || f(&outbox))
            .await
            .map_err(|e| WebhookError::Store(format!("outbox task failed: {e}")))?
    }
}

/// A subscriber's delivery task.
struct Worker {
    /// Deliveries due: (delivery id, due ms). Bounded by `per_subscriber_queue`; when full the
    /// delivery stays in the outbox and `spilled` tells the task to read it back.
    tx: mpsc::Sender<(u64, EpochMs)>,
    runtime: Arc<SubRuntime>,
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

/// What a delivery task reads at every attempt.
struct SubRuntime {
    id: String,
    /// The subscription now (URL, secrets), replaced when it changes.
    target: RwLock<Arc<StoredSubscription>>,
    /// Whether the outbox may hold pending deliveries the task does not know of.
    spilled: AtomicBool,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(|e| e.into_inner())
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
            .map_err(|e| WebhookError::Client(e.to_string()))?;
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
        *lock(&dispatcher.inner.janitor) = Some(tokio::spawn(janitor(Arc::clone(&shared))));
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
            match ssrf::check_url(&spec.url, config.allow_private_urls).await {
                Ok(_) => {}
                Err(WebhookError::Unresolvable(m)) => {
                    warn!(subscription = %spec.id, "webhook url does not resolve now ({m}); its deliveries will retry");
                }
                Err(e) => {
                    return Err(WebhookError::InvalidConfig(format!(
                        "subscriptions.{}.url: {e}",
                        spec.id
                    )))
                }
            }
            if let Some(secret) = &spec.secret {
                secret_key(secret).map_err(|e| {
                    WebhookError::InvalidConfig(format!("subscriptions.{}.secret: {e}", spec.id))
                })?;
            }
            let existing = read(&self.inner.subs).get(&spec.id).cloned();
            let stored = match existing {
                None => StoredSubscription {
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
                },
                Some(before) => {
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
                    if s == before {
                        continue;
                    }
                    s.updated_ms = now;
                    s
                }
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
}

/// Opens the outbox, waiting (up to [`OPEN_LOCK_WAIT`]) while another dispatcher of this
/// process still holds it.
async fn open_outbox(path: &Path) -> Result<Outbox, WebhookError> {
    let started = Instant::now();
    loop {
        let owned = path.to_owned();
        let opened = tokio::task::spawn_blocking(move || Outbox::open(&owned))
            .await
            .map_err(|e| WebhookError::Store(format!("outbox task failed: {e}")))?;
        match opened {
            Err(WebhookError::StoreLocked(_)) if started.elapsed() < OPEN_LOCK_WAIT => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// A new subscription id: `sub_` and 16 random hex digits.
fn generate_id() -> Result<String, WebhookError> {
    let mut bytes = [0u8; 8];
    secure_random(&mut bytes)?;
    Ok(format!("sub_{:016x}", u64::from_le_bytes(bytes)))
}

fn spawn_worker(shared: Arc<Shared>, sub: StoredSubscription) -> Worker {
    let (tx, rx) = mpsc::channel(shared.config.per_subscriber_queue);
    let (stop_tx, stop_rx) = watch::channel(false);
    let runtime = Arc::new(SubRuntime {
        id: sub.id.clone(),
        target: RwLock::new(Arc::new(sub)),
        // Read the outbox's pending deliveries at start.
        spilled: AtomicBool::new(true),
    });
    let join = tokio::spawn(run_worker(shared, Arc::clone(&runtime), rx, stop_rx));
    Worker {
        tx,
        runtime,
        stop: stop_tx,
        join,
    }
}

/// What an attempt leaves for its task.
enum Step {
    /// Try again at this time (epoch ms).
    Retry(EpochMs),
    /// Nothing more (delivered, dead, or no longer pending).
    Done,
}

/// A subscriber's delivery task: keeps up to `per_subscriber_queue` deliveries in memory,
/// ordered by due time, and runs up to `per_subscriber_concurrency` attempts at once.
async fn run_worker(
    shared: Arc<Shared>,
    runtime: Arc<SubRuntime>,
    mut rx: mpsc::Receiver<(u64, EpochMs)>,
    mut stop: watch::Receiver<bool>,
) {
    let cap = shared.config.per_subscriber_queue;
    let concurrency = shared.config.per_subscriber_concurrency;
    // (due ms, delivery id), soonest first.
    let mut timers: BTreeSet<(EpochMs, u64)> = BTreeSet::new();
    // Every delivery in `timers` or in flight.
    let mut known: HashSet<u64> = HashSet::new();
    let mut inflight: JoinSet<Step> = JoinSet::new();
    let mut inflight_ids: HashMap<tokio::task::Id, u64> = HashMap::new();
    // Deliveries handed over again while their previous attempt was still in flight (a
    // redelivery right after it died): scheduled again when that attempt ends.
    let mut again: HashMap<u64, EpochMs> = HashMap::new();
    loop {
        if *stop.borrow() {
            break;
        }
        if known.len() < cap && runtime.spilled.swap(false, Ordering::SeqCst) {
            let room = cap - known.len();
            let ask = room + known.len();
            let id = runtime.id.clone();
            match shared.blocking(move |o| o.pending_of(&id, ask)).await {
                Ok(list) => {
                    if list.len() >= ask {
                        // There may be more than fits.
                        runtime.spilled.store(true, Ordering::SeqCst);
                    }
                    let mut added = 0;
                    for (delivery_id, due) in list {
                        if added >= room {
                            break;
                        }
                        if known.insert(delivery_id) {
                            timers.insert((due, delivery_id));
                            added += 1;
                        }
                    }
                }
                Err(e) => {
                    warn!(subscription = %runtime.id, error = %e, "webhook outbox read failed");
                    runtime.spilled.store(true, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(STORE_RETRY_MS)).await;
                    continue;
                }
            }
        }
        let now = now_ms();
        while inflight.len() < concurrency {
            match timers.first().copied() {
                Some((due, id)) if due <= now => {
                    timers.remove(&(due, id));
                    let handle =
                        inflight.spawn(attempt(Arc::clone(&shared), Arc::clone(&runtime), id));
                    inflight_ids.insert(handle.id(), id);
                }
                _ => break,
            }
        }
        let wait = if inflight.len() < concurrency {
            timers.first().map(|&(due, _)| due.saturating_sub(now))
        } else {
            None
        };
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            message = rx.recv() => match message {
                Some((id, due)) => {
                    if known.contains(&id) {
                        if inflight_ids.values().any(|&v| v == id) {
                            again.insert(id, due);
                        }
                        // Otherwise already waiting here (read back from the outbox first).
                    } else if known.len() >= cap {
                        // Full: it stays in the outbox and is read back when there is room.
                        runtime.spilled.store(true, Ordering::SeqCst);
                        shared.metrics.overflow.inc();
                    } else {
                        known.insert(id);
                        timers.insert((due, id));
                    }
                }
                None => break,
            },
            Some(joined) = inflight.join_next_with_id(), if !inflight.is_empty() => {
                match joined {
                    Ok((task, step)) => {
                        let id = inflight_ids.remove(&task);
                        match (id, step) {
                            (Some(id), Step::Retry(due)) => {
                                again.remove(&id);
                                timers.insert((due, id));
                            }
                            (Some(id), Step::Done) => match again.remove(&id) {
                                Some(due) => {
                                    timers.insert((due, id));
                                }
                                None => {
                                    known.remove(&id);
                                }
                            },
                            (None, _) => {}
                        }
                    }
                    Err(e) => {
                        if let Some(id) = inflight_ids.remove(&e.id()) {
                            again.remove(&id);
                            known.remove(&id);
                        }
                        warn!(subscription = %runtime.id, error = %e, "webhook attempt task failed");
                        // The delivery is still pending in the outbox: read it back.
                        runtime.spilled.store(true, Ordering::SeqCst);
                    }
                }
            }
            () = tokio::time::sleep(Duration::from_millis(wait.unwrap_or(0))), if wait.is_some() => {}
        }
    }
    // Stopping: let the attempts in flight finish and record their outcome.
    while inflight.join_next().await.is_some() {}
    debug!(subscription = %runtime.id, "webhook delivery task stopped");
}

/// One attempt of one delivery: send, record the outcome in the outbox, log it.
async fn attempt(shared: Arc<Shared>, runtime: Arc<SubRuntime>, id: u64) -> Step {
    let store_retry = || now_ms() + STORE_RETRY_MS.min(shared.config.backoff_max_ms);
    let record = match shared.blocking(move |o| o.get_with_body(id)).await {
        Ok(Some(r)) if r.info.state == DeliveryState::Pending => r,
        Ok(_) => return Step::Done,
        Err(e) => {
            warn!(delivery = id, error = %e, "webhook outbox read failed");
            return Step::Retry(store_retry());
        }
    };
    let target = Arc::clone(&*read(&runtime.target));
    let number = record.info.attempts.saturating_add(1);
    let at_ms = now_ms();
    let started = Instant::now();
    let sent = send(&shared, &target, &record).await;
    let latency = started.elapsed();
    let finished_ms = now_ms();
    let success = sent.status.is_some_and(|s| (200..300).contains(&s));
    let outcome = if success {
        AttemptOutcome::Delivered
    } else if number >= shared.config.max_attempts {
        AttemptOutcome::Dead
    } else {
        AttemptOutcome::Retry
    };
    let next_attempt_ms = (outcome == AttemptOutcome::Retry)
        .then(|| finished_ms + backoff_ms(&shared.config, number, sent.retry_after_ms));
    let change = AttemptChange {
        attempts: number,
        at_ms,
        finished_ms,
        state: match outcome {
            AttemptOutcome::Delivered => DeliveryState::Delivered,
            AttemptOutcome::Retry => DeliveryState::Pending,
            AttemptOutcome::Dead => DeliveryState::Dead,
        },
        next_attempt_ms,
        status: sent.status,
        error: sent.error.clone(),
    };
    let expected = record.info.attempts;
    let recorded = shared
        .blocking(move |o| o.finish_attempt(id, expected, &change))
        .await;
    let step = match (&recorded, next_attempt_ms) {
        (Ok(Some(pending)), next) => {
            shared.metrics.set_pending(*pending);
            match next {
                Some(next) => Step::Retry(next),
                None => Step::Done,
            }
        }
        // Changed meanwhile (subscription deleted, redelivered): nothing more here.
        (Ok(None), _) => Step::Done,
        (Err(e), next) => {
            // The outbox still has it pending as before: retry (a delivered one is sent again
            // at the next start, which at-least-once allows).
            warn!(delivery = id, error = %e, "webhook attempt not recorded");
            match next {
                Some(next) => Step::Retry(next),
                None => Step::Done,
            }
        }
    };
    shared.metrics.attempt(outcome, latency.as_secs_f64());
    let logged = DeliveryAttempt {
        delivery_id: id,
        webhook_id: record.info.webhook_id.clone(),
        subscription_id: record.info.subscription_id.clone(),
        department: target.department,
        event_id: record.info.event_id.clone(),
        url: ssrf::redact_url(&target.url),
        attempt: number,
        at_ms,
        status: sent.status,
        latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
        error: sent.error,
        outcome,
        next_attempt_ms,
    };
    match outcome {
        AttemptOutcome::Delivered => debug!(delivery = id, attempt = number, "webhook delivered"),
        AttemptOutcome::Retry => {
            debug!(delivery = id, attempt = number, error = ?logged.error, "webhook attempt failed")
        }
        AttemptOutcome::Dead => {
            warn!(delivery = id, subscription = %logged.subscription_id, attempts = number, error = ?logged.error, "webhook delivery dead-lettered")
        }
    }
    shared.log.attempt(&logged);
    step
}

/// What an HTTP attempt got.
struct Sent {
    status: Option<u16>,
    error: Option<String>,
    retry_after_ms: Option<u64>,
}

impl Sent {
    fn failed(error: String) -> Sent {
        Sent {
            status: None,
            error: Some(error),
            retry_after_ms: None,
        }
    }
}

/// POSTs a delivery's body, signed with every secret valid now.
async fn send(shared: &Shared, target: &StoredSubscription, record: &StoredDelivery) -> Sent {
    // The SSRF policy again, at delivery time: IP literals here, names in the resolver.
    let url = match ssrf::check_syntax(&target.url, shared.config.allow_private_urls) {
        Ok(url) => url,
        Err(e) => return Sent::failed(e.to_string()),
    };
    let now = now_ms();
    let timestamp_s = now / 1000;
    let keys = target.signing_keys(now);
    if keys.is_empty() {
        return Sent::failed("the subscription has no valid secret".to_owned());
    }
    let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let signature = signature_header(
        &key_refs,
        &record.info.webhook_id,
        timestamp_s,
        record.body.as_bytes(),
    );
    let request = shared
        .client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header("webhook-id", record.info.webhook_id.as_str())
        .header("webhook-timestamp", timestamp_s.to_string())
        .header("webhook-signature", signature)
        .body(record.body.clone());
    match request.send().await {
        Ok(mut response) => {
            let status = response.status();
            if status.is_success() {
                return Sent {
                    status: Some(status.as_u16()),
                    error: None,
                    retry_after_ms: None,
                };
            }
            let retry_after_ms = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| s.saturating_mul(1000));
            let snippet = match response.chunk().await {
                Ok(Some(bytes)) => clean_snippet(&bytes),
                _ => String::new(),
            };
            let error = if snippet.is_empty() {
                format!("http status {}", status.as_u16())
            } else {
                format!("http status {}: {snippet}", status.as_u16())
            };
            Sent {
                status: Some(status.as_u16()),
                error: Some(error),
                retry_after_ms,
            }
        }
        Err(e) => Sent::failed(error_chain(e)),
    }
}

/// The start of an answer's body, on one line.
fn clean_snippet(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(ERROR_BODY_BYTES)];
    String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A request error and its causes, without the URL (it is logged apart, redacted).
fn error_chain(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    let e = e.without_url();
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    format!("{kind}: {}", parts.join(": "))
}

/// The delay before the attempt after attempt `number` (1-based): full jitter, uniform in
/// `0..=min(backoff_max, backoff_initial * 2^(number-1))`; at least a receiver's
/// `Retry-After` (itself capped by `backoff_max`).
pub(crate) fn backoff_ms(config: &WebhookConfig, number: u32, retry_after_ms: Option<u64>) -> u64 {
    let exponent = number.saturating_sub(1).min(63);
    let ceiling = config
        .backoff_initial_ms
        .saturating_mul(1u64 << exponent)
        .min(config.backoff_max_ms);
    let delay = random_below(ceiling.saturating_add(1));
    match retry_after_ms {
        Some(after) => delay.max(after.min(config.backoff_max_ms)),
        None => delay,
    }
}

/// Jitter only (not secrets): splitmix64 over a counter, seeded once from the secure random
/// source (or the clock).
fn random_below(bound: u64) -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    static SEED: OnceLock<u64> = OnceLock::new();
    if bound == 0 {
        return 0;
    }
    let seed = *SEED.get_or_init(|| {
        let mut bytes = [0u8; 8];
        match secure_random(&mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => now_ms() ^ u64::from(std::process::id()).rotate_left(32),
        }
    });
    let mut z = STATE
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(seed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    z % bound
}

/// Purges old delivered and dead deliveries, every `retention / 24` (1 min to 1 h).
async fn janitor(shared: Arc<Shared>) {
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
                    warn!(error = %e, "webhook outbox purge failed");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_an_exponential_ceiling() {
        let config = WebhookConfig {
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
            ..WebhookConfig::default()
        };
        for number in 1..=8u32 {
            let ceiling = (100u64 << (number - 1)).min(1_000);
            let draws: Vec<u64> = (0..2_000)
                .map(|_| backoff_ms(&config, number, None))
                .collect();
            assert!(draws.iter().all(|&d| d <= ceiling), "attempt {number}");
            // Spread over the whole range, not a constant.
            let max = draws.iter().copied().max().unwrap_or(0);
            let min = draws.iter().copied().min().unwrap_or(0);
            assert!(
                max > ceiling * 8 / 10 && min < ceiling / 5,
                "{number}: {min}..{max}"
            );
        }
        // Huge attempt numbers saturate at the ceiling instead of overflowing.
        assert!(backoff_ms(&config, u32::MAX, None) <= 1_000);
        // Retry-After is a floor, capped by the max.
        assert!(backoff_ms(&config, 1, Some(700)) >= 700);
        assert!(backoff_ms(&config, 1, Some(60_000)) <= 1_000);
    }

    #[test]
    fn generated_ids_are_valid() {
        let a = generate_id().unwrap();
        let b = generate_id().unwrap();
        assert_ne!(a, b);
        validate_id(&a).unwrap();
    }
}
