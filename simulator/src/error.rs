//! The simulator's error type.

/// What can go wrong while simulating or publishing.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    /// The configuration is not usable; the message names the field.
    #[error("invalid simulator config: {0}")]
    InvalidConfig(String),
    /// The broker refused the connection for a reason a retry will not fix (bad client id,
    /// credentials, authorisation or protocol version).
    #[error("mqtt broker refused the connection: {0}")]
    Refused(String),
    /// The MQTT event loop stopped while publishes were still being handed to it.
    #[error("mqtt event loop stopped unexpectedly")]
    EventLoopStopped,
    /// Not every publish was acknowledged by the broker before the drain timeout.
    #[error("{unacked} of {sent} publishes not acknowledged by the broker within {timeout_ms} ms")]
    Unacknowledged {
        /// Messages handed to the client.
        sent: u64,
        /// Messages without a PUBACK.
        unacked: u64,
        /// How long the drain waited.
        timeout_ms: u64,
    },
}

impl SimulatorError {
    /// Whether running the same call again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            SimulatorError::InvalidConfig(_) | SimulatorError::Refused(_) => false,
            // The broker may be back, or the connection may hold this time.
            SimulatorError::EventLoopStopped | SimulatorError::Unacknowledged { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_retry_is_classified() {
        let e = SimulatorError::Unacknowledged {
            sent: 10,
            unacked: 3,
            timeout_ms: 500,
        };
        assert_eq!(
            e.to_string(),
            "3 of 10 publishes not acknowledged by the broker within 500 ms"
        );
        assert!(e.is_retryable());
        let e = SimulatorError::InvalidConfig("rate_per_s must be positive".into());
        assert!(e.to_string().starts_with("invalid simulator config"));
        assert!(!e.is_retryable());
        assert!(!SimulatorError::Refused("bad client id".into()).is_retryable());
        assert!(SimulatorError::EventLoopStopped.is_retryable());
    }
}
