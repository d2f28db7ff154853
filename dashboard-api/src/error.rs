//! The crate's error type.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What can go wrong starting or running the HTTP API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A setting is out of range.
    #[error("invalid http configuration: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("http server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// The API's metrics could not be registered (usually: registered twice).
    #[error("cannot register api metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The tokens file could not be read, parsed or written.
    #[error("tokens file {}: {reason}", path.display())]
    TokensFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// No random bytes for a new token.
    #[error("cannot read random bytes from /dev/urandom: {0}")]
    Random(#[source] std::io::Error),
}

impl ApiError {
    /// Whether trying again later may succeed: an address still in use (a previous process
    /// exiting), a server I/O failure or no randomness. Bad settings, a bad tokens file and
    /// metric registration are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Bind { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::AddrInUse | std::io::ErrorKind::AddrNotAvailable
            ),
            ApiError::Serve(_) | ApiError::Random(_) => true,
            ApiError::Config(_) | ApiError::Metrics(_) | ApiError::TokensFile { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_split() {
        let in_use = ApiError::Bind {
            addr: SocketAddr::from(([127, 0, 0, 1], 80)),
            source: std::io::ErrorKind::AddrInUse.into(),
        };
        assert!(in_use.is_retryable());
        assert_eq!(
            in_use.to_string(),
            "cannot listen on 127.0.0.1:80: address in use"
        );
        let denied = ApiError::Bind {
            addr: SocketAddr::from(([127, 0, 0, 1], 80)),
            source: std::io::ErrorKind::PermissionDenied.into(),
        };
        assert!(!denied.is_retryable());
        assert!(!ApiError::Config("x".into()).is_retryable());
    }
}
