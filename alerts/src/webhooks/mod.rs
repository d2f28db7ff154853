//! Webhook delivery to departments: subscriptions, a durable outbox, signed at-least-once delivery.
//!
//! Departments subscribe (config file or `/api/v1/subscriptions`) with a filter on category,
//! severity, district, rule and owning department. [`Dispatcher::notify`] writes one
//! delivery per matching subscription to a redb outbox (committed before it returns); each
//! subscription's own task POSTs it, signed in the Standard Webhooks style
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`), and
//! retries failures with exponential backoff and full jitter up to `max_attempts`, after which
//! the delivery is dead-lettered until redelivered by hand. Every attempt goes to the
//! [`AttemptLog`]. The outbox survives a restart: pending deliveries resume with the same
//! `webhook-id` and their backoff where it was.
//!
//! ```no_run
//! # async fn demo(event: ioc_alerts::AlertEvent) -> Result<(), ioc_alerts::webhooks::WebhookError> {
//! use std::sync::Arc;
//! use ioc_alerts::webhooks::{router, Dispatcher, NoopAttemptLog, WebhookConfig};
//!
//! let dispatcher = Dispatcher::open(
//!     std::path::Path::new("/var/lib/iocd/webhooks.redb"),
//!     WebhookConfig::default(),
//!     Arc::new(NoopAttemptLog),
//! )
//! .await?;
//! dispatcher.register_metrics(prometheus::default_registry())?;
//! let routes: axum::Router = router(dispatcher.clone());
//! dispatcher.notify(&event).await?;
//! dispatcher.shutdown().await;
//! # let _ = routes; Ok(()) }
//! ```

pub(crate) mod api;
mod config;
mod delivery;
mod dispatcher;
mod error;
mod metrics;
mod outbox;
mod payload;
pub mod signing;
mod ssrf;
mod subscription;

pub use api::router;
pub use config::{SubscriptionSpec, WebhookConfig};
pub use delivery::{
    AttemptLog, AttemptOutcome, Delivery, DeliveryAttempt, DeliveryQuery, DeliveryState,
    MemoryAttemptLog, NoopAttemptLog,
};
pub use dispatcher::{CreatedSubscription, Dispatcher, PutSubscription, RotatedSecret};
pub use error::WebhookError;
pub use payload::{payload_schema, webhook_id, WebhookEventType, WebhookPayload};
pub use ssrf::forbidden_reason;
pub use subscription::{Subscription, SubscriptionFilter, SubscriptionRequest, SubscriptionSource};
