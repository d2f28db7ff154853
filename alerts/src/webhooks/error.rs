//! The webhook dispatcher's error type.

/// What can go wrong while managing subscriptions or delivering webhooks. Each variant says
/// what failed; its source, when it has one, why (print the chain, not only the top).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The configuration is not usable; the message names the field and says what is wrong
    /// with it (a subscription's refusal included: it is the verdict, not a cause).
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
    #[error("url host does not resolve: {host}")]
    Unresolvable {
        /// The host name.
        host: String,
        /// The resolver's answer.
        #[source]
        source: std::io::Error,
    },
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
    #[error("outbox store error")]
    Store(#[source] redb::Error),
    /// The outbox file could not be made readable by its owner only.
    #[error("outbox store error: outbox permissions")]
    Permissions(#[source] std::io::Error),
    /// An outbox call on the blocking pool panicked, or was cancelled by the runtime
    /// shutting down.
    #[error("outbox store error: outbox task failed")]
    Task(#[source] tokio::task::JoinError),
    /// The outbox file is held open by another dispatcher (in this or another process).
    #[error("outbox already open: the file is open elsewhere")]
    StoreLocked,
    /// A stored record could not be (de)serialised.
    #[error("outbox record error")]
    Record(#[source] serde_json::Error),
    /// An event's webhook payload could not be serialised.
    #[error("outbox record error: payload of {event_id}")]
    Payload {
        /// The alert event.
        event_id: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The HTTP client could not be built.
    #[error("http client error")]
    Client(#[source] reqwest::Error),
    /// The metrics could not be registered (already registered in that registry?).
    #[error("metrics registration failed")]
    Metrics(#[source] prometheus::Error),
    /// The system's secure random source failed, so no secret can be generated.
    #[error("secure random source failed")]
    Random,
    /// The dispatcher is shutting down and takes no new work.
    #[error("webhook dispatcher is shutting down")]
    ShuttingDown,
}

impl WebhookError {
    /// Whether running the same call again may succeed: an outbox failure that may pass (I/O,
    /// a transaction in the way), a lock the other dispatcher lets go of when it closes, a
    /// name that may resolve later, the random source coming back. Bad config, subscriptions
    /// and URLs, missing or conflicting ids, unreadable records, a corrupt outbox, a panicked
    /// outbox call, the client and the metrics fail the same way again; a dispatcher shutting
    /// down takes no more work.
    pub fn is_retryable(&self) -> bool {
        match self {
            WebhookError::Store(e) => crate::storage::redb_is_transient(e),
            WebhookError::StoreLocked
            | WebhookError::Unresolvable { .. }
            | WebhookError::Random => true,
            WebhookError::InvalidConfig(_)
            | WebhookError::InvalidSubscription { .. }
            | WebhookError::UrlNotAllowed(_)
            | WebhookError::NotFound { .. }
            | WebhookError::Conflict(_)
            | WebhookError::Permissions(_)
            | WebhookError::Task(_)
            | WebhookError::Record(_)
            | WebhookError::Payload { .. }
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

    /// [`WebhookError::InvalidConfig`] of a config entry at `at` (`subscriptions.<id>.url`,
    /// ...) refused for `reason` (a verdict on the entry: it has no source of its own).
    pub(crate) fn config_entry(at: impl std::fmt::Display, reason: &WebhookError) -> Self {
        WebhookError::InvalidConfig(format!("{at}: {reason}"))
    }

    pub(crate) fn store(e: impl Into<redb::Error>) -> Self {
        match e.into() {
            redb::Error::DatabaseAlreadyOpen => WebhookError::StoreLocked,
            other => WebhookError::Store(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_error() -> serde_json::Error {
        serde_json::from_str::<u8>("x").unwrap_err()
    }

    #[test]
    fn messages_are_lowercase_and_retry_is_classified() {
        let cases = [
            WebhookError::InvalidConfig("max_attempts must be at least 1".into()),
            WebhookError::config_entry("subscriptions.a.url", &WebhookError::Random),
            WebhookError::invalid("url", "scheme must be http or https"),
            WebhookError::UrlNotAllowed("127.0.0.1 is loopback".into()),
            WebhookError::Unresolvable {
                host: "nowhere.invalid".into(),
                source: std::io::Error::other("no address"),
            },
            WebhookError::NotFound {
                kind: "delivery",
                id: "7".into(),
            },
            WebhookError::Conflict("subscription x exists".into()),
            WebhookError::Store(redb::Error::Io(std::io::ErrorKind::StorageFull.into())),
            WebhookError::Permissions(std::io::ErrorKind::PermissionDenied.into()),
            WebhookError::StoreLocked,
            WebhookError::Record(json_error()),
            WebhookError::Payload {
                event_id: "e".into(),
                source: json_error(),
            },
            WebhookError::Metrics(prometheus::Error::Msg("x".into())),
            WebhookError::Random,
            WebhookError::ShuttingDown,
        ];
        for e in &cases {
            let text = e.to_string();
            let first = text.chars().next().unwrap_or('x');
            assert!(first.is_lowercase(), "{text}");
        }
        assert!(
            WebhookError::Store(redb::Error::Io(std::io::ErrorKind::StorageFull.into()))
                .is_retryable()
        );
        assert!(!WebhookError::Store(redb::Error::Corrupted("x".into())).is_retryable());
        assert!(!WebhookError::UrlNotAllowed("x".into()).is_retryable());
        assert!(!WebhookError::ShuttingDown.is_retryable());
        assert_eq!(
            WebhookError::store(redb::DatabaseError::DatabaseAlreadyOpen).to_string(),
            "outbox already open: the file is open elsewhere"
        );
    }

    #[test]
    fn the_display_leaves_the_cause_to_the_source() {
        let e = WebhookError::Unresolvable {
            host: "nowhere.invalid".into(),
            source: std::io::Error::other("no address"),
        };
        assert_eq!(e.to_string(), "url host does not resolve: nowhere.invalid");
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("no address"));
        assert_eq!(
            crate::http::error_text(&e),
            "url host does not resolve: nowhere.invalid: no address"
        );
    }
}
