//! The dispatcher's configuration (`[webhooks]` in the daemon's config file).

use ioc_schemas::Department;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::WebhookError;
use super::subscription::{validate_id, SubscriptionFilter};

/// How webhooks are delivered, and the subscriptions the config file declares. The outbox
/// path is given to [`Dispatcher::open`](super::Dispatcher::open) separately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Whether webhook URLs may point at loopback, link-local, private (RFC 1918, ULA),
    /// carrier-grade NAT, unspecified, multicast or reserved addresses. Off in production
    /// (server-side request forgery); on for tests and a receiver on the same host.
    pub allow_private_urls: bool,
    /// Attempts per delivery before it is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// The backoff before the second attempt is drawn from `0..=backoff_initial_ms`; it
    /// doubles with every attempt (full jitter).
    pub backoff_initial_ms: u64,
    /// The backoff ceiling, ms (also caps a receiver's `Retry-After`).
    pub backoff_max_ms: u64,
    /// Timeout of one HTTP attempt (connect, request and response), ms.
    pub request_timeout_ms: u64,
    /// Attempts in flight at once per subscriber.
    pub per_subscriber_concurrency: usize,
    /// Deliveries a subscriber's task holds in memory (queued or waiting for their backoff);
    /// more wait in the durable outbox and are read back when there is room. Never dropped.
    pub per_subscriber_queue: usize,
    /// After a secret is rotated, how long the old one keeps signing too, s.
    pub secret_grace_s: u64,
    /// Delivered and dead deliveries older than this are purged from the outbox, hours
    /// (0 keeps them forever).
    pub retention_h: u64,
    /// Subscriptions declared in the config file: upserted at every start (the config wins
    /// over API changes), and the ones no longer declared are removed. The API cannot change
    /// or delete them, but can rotate their secret and redeliver.
    pub subscriptions: Vec<SubscriptionSpec>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_private_urls: false,
            max_attempts: 12,
            backoff_initial_ms: 5_000,
            backoff_max_ms: 3_600_000,
            request_timeout_ms: 10_000,
            per_subscriber_concurrency: 2,
            per_subscriber_queue: 256,
            secret_grace_s: 86_400,
            retention_h: 24 * 7,
            subscriptions: Vec::new(),
        }
    }
}

/// A subscription declared in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    /// Its id: 1 to 64 of `a-z`, `0-9`, `_`, `-`.
    pub id: String,
    /// The department it belongs to.
    pub department: Department,
    /// Where deliveries are POSTed: `http` or `https`.
    pub url: String,
    /// Its signing secret, `whsec_<base64 of 24 to 64 bytes>`. When absent one is generated
    /// at the first start and only an API `rotate-secret` reveals it. Changing it in the
    /// config rotates it (the old one keeps signing for `secret_grace_s`).
    #[serde(default)]
    pub secret: Option<String>,
    /// Which alerts it receives (every field optional; empty means all).
    #[serde(default)]
    pub filter: SubscriptionFilter,
    /// Whether it receives deliveries (a disabled one keeps its pending deliveries).
    #[serde(default = "enabled_default")]
    pub enabled: bool,
}

fn enabled_default() -> bool {
    true
}

impl WebhookConfig {
    /// Checks every field; the error names the first one at fault. URLs are checked (and
    /// resolved) when the dispatcher opens.
    pub fn validate(&self) -> Result<(), WebhookError> {
        let bad = |m: &str| Err(WebhookError::InvalidConfig(m.to_owned()));
        if self.max_attempts == 0 {
            return bad("max_attempts must be at least 1");
        }
        if self.backoff_initial_ms == 0 {
            return bad("backoff_initial_ms must be at least 1");
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            return bad("backoff_max_ms must be at least backoff_initial_ms");
        }
        if self.request_timeout_ms == 0 {
            return bad("request_timeout_ms must be at least 1");
        }
        if !(1..=64).contains(&self.per_subscriber_concurrency) {
            return bad("per_subscriber_concurrency must be 1 to 64");
        }
        if !(1..=100_000).contains(&self.per_subscriber_queue) {
            return bad("per_subscriber_queue must be 1 to 100000");
        }
        let mut seen = std::collections::HashSet::new();
        for spec in &self.subscriptions {
            validate_id(&spec.id).map_err(|e| WebhookError::config_entry("subscriptions", &e))?;
            if !seen.insert(spec.id.as_str()) {
                return Err(WebhookError::InvalidConfig(format!(
                    "subscriptions: id {} is declared twice",
                    spec.id
                )));
            }
            spec.filter.validate().map_err(|e| {
                WebhookError::config_entry(format!("subscriptions.{}", spec.id), &e)
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_parses_from_toml() {
        WebhookConfig::default().validate().unwrap();
        let text = r#"
            max_attempts = 5
            backoff_initial_ms = 100
            [[subscriptions]]
            id = "tnmt-air"
            department = "environment"
            url = "https://hooks.example.vn/ioc"
            secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            filter = { categories = ["air_quality"], min_severity = "major", districts = ["hai_chau"] }
        "#;
        let config: WebhookConfig = toml::from_str(text).unwrap();
        config.validate().unwrap();
        assert_eq!(config.max_attempts, 5);
        assert_eq!(
            config.backoff_max_ms,
            WebhookConfig::default().backoff_max_ms
        );
        assert_eq!(config.subscriptions.len(), 1);
        assert!(config.subscriptions[0].enabled);
        assert!(toml::from_str::<WebhookConfig>("max_atempts = 5").is_err());
    }

    #[test]
    fn bad_values_are_named() {
        let mut c = WebhookConfig {
            max_attempts: 0,
            ..WebhookConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_attempts"));
        c.max_attempts = 3;
        c.backoff_max_ms = 1;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("backoff_max_ms"));
        c.backoff_max_ms = 10_000;
        c.per_subscriber_queue = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("per_subscriber_queue"));
        c.per_subscriber_queue = 10;
        let spec = SubscriptionSpec {
            id: "Bad Id".into(),
            department: Department::Police,
            url: "https://x.example".into(),
            secret: None,
            filter: SubscriptionFilter::default(),
            enabled: true,
        };
        c.subscriptions = vec![spec.clone()];
        assert!(c.validate().is_err());
        let good = SubscriptionSpec {
            id: "police".into(),
            ..spec
        };
        c.subscriptions = vec![good.clone(), good];
        assert!(c.validate().unwrap_err().to_string().contains("twice"));
    }
}
