//! The crate's error type.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What can go wrong starting or running the HTTP API. The cause, where there is a typed
/// one, is the [`source`](std::error::Error::source); the message does not repeat it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A setting is out of range.
    #[error("invalid http configuration: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("http server failed")]
    Serve(#[source] std::io::Error),
    /// The API's metrics could not be registered (usually: registered twice).
    #[error("cannot register api metrics")]
    Metrics(#[from] prometheus::Error),
    /// The tokens file could not be read or written.
    #[error("tokens file {}", path.display())]
    TokensFileIo {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The tokens file is not the JSON of a token list.
    #[error("tokens file {}", path.display())]
    TokensFileJson {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The tokens file holds a token that cannot be used (an invalid spec, a name taken).
    #[error("tokens file {}: {reason}", path.display())]
    TokensFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No random bytes for a new token.
    #[error("cannot read random bytes from /dev/urandom")]
    Random(#[source] std::io::Error),
}

impl ApiError {
    /// Whether trying again later may succeed: an address still in use (a previous process
    /// exiting), a server I/O failure, no randomness, or a tokens file that failed for a
    /// passing reason (a full disk, a timeout). Bad settings, a bad tokens file, one that
    /// cannot be opened (missing folder, permissions) and metric registration are permanent.
    pub fn is_retryable(&self) -> bool {
        use std::io::ErrorKind;
        match self {
            ApiError::Bind { source, .. } => matches!(
                source.kind(),
                ErrorKind::AddrInUse | ErrorKind::AddrNotAvailable
            ),
            ApiError::TokensFileIo { source, .. } => matches!(
                source.kind(),
                ErrorKind::Interrupted
                    | ErrorKind::TimedOut
                    | ErrorKind::WouldBlock
                    | ErrorKind::StorageFull
                    | ErrorKind::ResourceBusy
                    | ErrorKind::OutOfMemory
            ),
            ApiError::Serve(_) | ApiError::Random(_) => true,
            ApiError::Config(_)
            | ApiError::Metrics(_)
            | ApiError::TokensFileJson { .. }
            | ApiError::TokensFile { .. } => false,
        }
    }
}

/// `error` and its causes, `: `-separated (what a log line or an answer shows, now that a
/// message does not repeat its source).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
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
        assert_eq!(in_use.to_string(), "cannot listen on 127.0.0.1:80");
        assert_eq!(
            chain(&in_use),
            "cannot listen on 127.0.0.1:80: address in use"
        );
        let denied = ApiError::Bind {
            addr: SocketAddr::from(([127, 0, 0, 1], 80)),
            source: std::io::ErrorKind::PermissionDenied.into(),
        };
        assert!(!denied.is_retryable());
        assert!(!ApiError::Config("x".into()).is_retryable());
        let full = ApiError::TokensFileIo {
            path: "/t.json".into(),
            source: std::io::ErrorKind::StorageFull.into(),
        };
        assert!(full.is_retryable());
        assert_eq!(chain(&full), "tokens file /t.json: no storage space");
        let unreadable = ApiError::TokensFileIo {
            path: "/t.json".into(),
            source: std::io::ErrorKind::PermissionDenied.into(),
        };
        assert!(!unreadable.is_retryable());
    }
}
