//! The webhook dispatcher's error type.

/// What can go wrong while managing subscriptions or delivering webhooks.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The configuration is not usable; the message names the field.
    #[error("invalid webhook config: {0}")]
    InvalidConfig(String),
    /// A subscription (from the API or the config) is not valid; the message names the field.
    #[error("invalid subscription: {message}")]
    InvalidSubscription {
        /// The field at fault (`url`, `id`, `filter.rules`, ...).
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A webhook URL points at an address the SSRF policy refuses (loopback, link-local,
    /// private, unspecified, ...) while `allow_private_urls` is off.
    #[error("url not allowed: {0}")]
    UrlNotAllowed(String),
    /// The URL's host does not resolve (now); it may later.
    #[error("url host does not resolve: {0}")]
    Unresolvable(String),
    /// No subscription or delivery with that id.
    #[error("{kind} not found: {id}")]
    NotFound {
        /// `subscription` or `delivery`.
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The request conflicts with the current state (an id already taken, a delivery still
    /// pending, a subscription managed by the config file).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The durable outbox (redb) failed.
    #[error("outbox store error: {0}")]
    Store(String),
    /// The outbox file is held open by another dispatcher (in this or another process).
    #[error("outbox already open: {0}")]
    StoreLocked(String),
    /// A stored record could not be (de)serialised.
    #[error("outbox record error: {0}")]
    Record(String),
    /// The HTTP client could not be built.
    #[error("http client error: {0}")]
    Client(String),
    /// The metrics could not be registered (already registered in that registry?).
    #[error("metrics registration failed: {0}")]
    Metrics(String),
    /// The system's secure random source failed, so no secret can be generated.
    #[error("secure random source failed")]
    Random,
    /// The dispatcher is shutting down and takes no new work.
    #[error("webhook dispatcher is shutting down")]
    ShuttingDown,
}

impl WebhookError {
    /// Whether running the same call again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            // I/O may recover; a lock is released when the other dispatcher closes; a name
            // may resolve later; the random source may be back.
            WebhookError::Store(_)
            | WebhookError::StoreLocked(_)
            | WebhookError::Unresolvable(_)
            | WebhookError::Random => true,
            WebhookError::InvalidConfig(_)
            | WebhookError::InvalidSubscription { .. }
            | WebhookError::UrlNotAllowed(_)
            | WebhookError::NotFound { .. }
            | WebhookError::Conflict(_)
            | WebhookError::Record(_)
            | WebhookError::Client(_)
            | WebhookError::Metrics(_)
            | WebhookError::ShuttingDown => false,
        }
    }

    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        WebhookError::InvalidSubscription {
            field,
            message: message.into(),
        }
    }

    pub(crate) fn store(e: impl Into<redb::Error>) -> Self {
        let e: redb::Error = e.into();
        match e {
            redb::Error::DatabaseAlreadyOpen => {
                WebhookError::StoreLocked("the file is open elsewhere".to_owned())
            }
            other => WebhookError::Store(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_retry_is_classified() {
        let cases = [
            WebhookError::InvalidConfig("max_attempts must be at least 1".into()),
            WebhookError::invalid("url", "scheme must be http or https"),
            WebhookError::UrlNotAllowed("127.0.0.1 is loopback".into()),
            WebhookError::Unresolvable("nowhere.invalid".into()),
            WebhookError::NotFound {
                kind: "delivery",
                id: "7".into(),
            },
            WebhookError::Conflict("subscription x exists".into()),
            WebhookError::Store("disk full".into()),
            WebhookError::StoreLocked("x".into()),
            WebhookError::Record("bad json".into()),
            WebhookError::Client("x".into()),
            WebhookError::Metrics("x".into()),
            WebhookError::Random,
            WebhookError::ShuttingDown,
        ];
        for e in &cases {
            let text = e.to_string();
            let first = text.chars().next().unwrap_or('x');
            assert!(first.is_lowercase(), "{text}");
        }
        assert!(WebhookError::Store("x".into()).is_retryable());
        assert!(!WebhookError::UrlNotAllowed("x".into()).is_retryable());
        assert!(!WebhookError::ShuttingDown.is_retryable());
        assert_eq!(
            WebhookError::store(redb::DatabaseError::DatabaseAlreadyOpen).to_string(),
            "outbox already open: the file is open elsewhere"
        );
    }
}
