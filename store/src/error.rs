//! The crate's error types, the retryable/permanent split of ClickHouse failures, and
//! [`DisplayChain`] for showing an error with its causes.

use std::path::PathBuf;

/// What can go wrong talking to ClickHouse, or reading back what was stored.
///
/// A variant's text says what was being done; the cause is its [`source`]
/// (`std::error::Error::source`), so show the whole chain with [`DisplayChain`].
///
/// [`source`]: std::error::Error::source
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The configured database name would need quoting; it is interpolated into DDL.
    #[error(
        "invalid database name `{0}`: use ascii letters, digits and `_`, not starting with a digit"
    )]
    InvalidDatabaseName(String),
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// ClickHouse (or the network to it) failed; `context` says what was being done.
    #[error("clickhouse {context}")]
    ClickHouse {
        /// What was being done, such as `migration 1 (initial tables)`.
        context: String,
        /// The client's error.
        #[source]
        source: clickhouse::error::Error,
    },
    /// A writer's task has stopped, so its queue takes no more rows.
    #[error("the {table} writer has stopped")]
    Closed {
        /// The table the writer fills.
        table: &'static str,
    },
    /// A stored row holds a value this version cannot read (such as an unknown enum code).
    #[error("unreadable row in {table}: {reason}")]
    Decode {
        /// The table read.
        table: &'static str,
        /// What is wrong with the row.
        reason: String,
    },
    /// A stored row, as JSON, does not read back as what was written.
    #[error("unreadable row in {table}")]
    Json {
        /// The table read.
        table: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A writer's task panicked or was cancelled.
    #[error("the {table} writer task failed")]
    WriterTask {
        /// The table the writer fills.
        table: &'static str,
        /// The panic or cancellation.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The dataflow's input closed while stored readings were fed back into it.
    #[error("the dataflow stopped while replaying")]
    ReplayStopped,
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

impl StoreError {
    /// Whether trying again later may succeed, per variant:
    ///
    /// - `ClickHouse`: network failures, timeouts, 5xx answers that are not a ClickHouse
    ///   exception, and exceptions of an overloaded or recovering server pass; schema and SQL
    ///   errors do not ([`is_retryable_clickhouse`]).
    /// - `InvalidDatabaseName`, `Config`: the same settings fail again.
    /// - `Closed`: a stopped writer never takes rows again; new writers are needed.
    /// - `Decode`, `Json`: the stored row stays as it is.
    /// - `WriterTask`: a panic is a program fault; a cancellation happens only at shutdown.
    /// - `ReplayStopped`: the dataflow that was fed is gone.
    /// - `Spool`: see [`SpoolError::is_retryable`].
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::ClickHouse { source, .. } => is_retryable_clickhouse(source),
            StoreError::Spool(e) => e.is_retryable(),
            StoreError::InvalidDatabaseName(_)
            | StoreError::Config(_)
            | StoreError::Closed { .. }
            | StoreError::Decode { .. }
            | StoreError::Json { .. }
            | StoreError::WriterTask { .. }
            | StoreError::ReplayStopped => false,
        }
    }

    pub(crate) fn clickhouse(context: impl Into<String>, source: clickhouse::error::Error) -> Self {
        StoreError::ClickHouse {
            context: context.into(),
            source,
        }
    }
}

/// What went wrong with the spool file; the cause is the error's source.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The folder could not be made, or the committer thread started.
    #[error("spool {path}: {context}")]
    Io {
        /// The spool file.
        path: PathBuf,
        /// What was being done.
        context: &'static str,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be opened, read or written: disk full, permissions, another
    /// process holding it, a damaged file.
    #[error("spool {path}")]
    File {
        /// The spool file.
        path: PathBuf,
        /// redb's error.
        #[source]
        source: redb::Error,
    },
    /// [`Spool::shutdown`](crate::Spool::shutdown) has closed the file.
    #[error("spool {path} is shut down")]
    ShutDown {
        /// The spool file.
        path: PathBuf,
    },
    /// The blocking task that wrote the file panicked or was cancelled.
    #[error("spool {path}: the writing task failed")]
    Task {
        /// The spool file.
        path: PathBuf,
        /// The panic or cancellation.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl SpoolError {
    /// Whether trying again later may succeed: never without an operator. A spool that cannot
    /// be written (disk full, permissions, a damaged file, another process holding it) needs
    /// someone to act; a shut-down spool stays shut; a failed task is a program fault.
    pub fn is_retryable(&self) -> bool {
        match self {
            SpoolError::Io { .. }
            | SpoolError::File { .. }
            | SpoolError::ShutDown { .. }
            | SpoolError::Task { .. } => false,
        }
    }
}

/// Shows an error with every cause after it, `what failed: why: why that`. Errors here keep
/// their cause as a [`source`](std::error::Error::source) rather than in their text, so
/// whatever logs or reports one as text shows it through this:
/// `tracing::warn!(error = %DisplayChain(&e), ...)`. A cause whose text already ends the text
/// before it (some errors repeat their source) is not shown twice.
#[derive(Debug, Clone, Copy)]
pub struct DisplayChain<'a>(pub &'a (dyn std::error::Error + Send + Sync + 'a));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            let text = e.to_string();
            if !shown.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            shown = text;
            cause = e.source();
        }
        Ok(())
    }
}

/// ClickHouse exception codes that describe a passing condition rather than a wrong query.
const TRANSIENT_CODES: &[u32] = &[
    159, // TIMEOUT_EXCEEDED
    160, // TOO_SLOW
    173, // CANNOT_ALLOCATE_MEMORY
    202, // TOO_MANY_SIMULTANEOUS_QUERIES
    203, // NO_FREE_CONNECTION
    209, // SOCKET_TIMEOUT
    210, // NETWORK_ERROR
    236, // ABORTED
    241, // MEMORY_LIMIT_EXCEEDED
    242, // TABLE_IS_READ_ONLY (replica lost its coordination session)
    243, // NOT_ENOUGH_SPACE
    252, // TOO_MANY_PARTS
    285, // TOO_FEW_LIVE_REPLICAS
    319, // UNKNOWN_STATUS_OF_INSERT
    394, // QUERY_WAS_CANCELLED
    425, // SYSTEM_ERROR
    439, // CANNOT_SCHEDULE_TASK
    999, // KEEPER_EXCEPTION
];

/// Classifies a client error; see [`StoreError::is_retryable`].
pub fn is_retryable_clickhouse(error: &clickhouse::error::Error) -> bool {
    use clickhouse::error::Error;
    match error {
        Error::Network(_) | Error::TimedOut => true,
        Error::BadResponse(text) => is_retryable_response(text),
        _ => false,
    }
}

/// A non-200 answer: ClickHouse puts `Code: N` first in its exception text (18.16:
/// `Code: 60, e.displayText() = ...`; current: `Code: 60. DB::Exception: ...`). Without a
/// code the answer came from something else (a proxy, or the client's own `503 Service
/// Unavailable` when the body was empty), which is worth retrying.
fn is_retryable_response(text: &str) -> bool {
    match exception_code(text) {
        Some(code) => TRANSIENT_CODES.contains(&code),
        None => {
            let status: Option<u16> = text.get(..3).and_then(|s| s.parse().ok());
            status.is_none_or(|s| s >= 500 || s == 408 || s == 429)
        }
    }
}

/// The `N` of a leading `Code: N`.
fn exception_code(text: &str) -> Option<u32> {
    let rest = text.trim_start().strip_prefix("Code:")?.trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickhouse::error::Error;

    fn bad(text: &str) -> bool {
        is_retryable_clickhouse(&Error::BadResponse(text.to_owned()))
    }

    #[test]
    fn schema_and_sql_errors_are_permanent() {
        assert!(!bad("Code: 60, e.displayText() = DB::Exception: Table ioc.x doesn't exist., e.what() = DB::Exception"));
        assert!(!bad(
            "Code: 62. DB::Exception: Syntax error: failed at position 1. (SYNTAX_ERROR)"
        ));
        assert!(!bad(
            "Code: 33, e.displayText() = DB::Exception: Cannot read all data"
        ));
        assert!(!is_retryable_clickhouse(&Error::NotEnoughData));
        assert!(!is_retryable_clickhouse(&Error::Custom("x".into())));
    }

    #[test]
    fn overload_network_and_5xx_are_retryable() {
        assert!(bad(
            "Code: 252, e.displayText() = DB::Exception: Too many parts (300)"
        ));
        assert!(bad(
            "Code: 241. DB::Exception: Memory limit (total) exceeded"
        ));
        assert!(bad("503 Service Unavailable"));
        assert!(bad("<html>bad gateway</html>"));
        assert!(!bad("400 Bad Request"));
        assert!(is_retryable_clickhouse(&Error::TimedOut));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(is_retryable_clickhouse(&Error::Network(Box::new(io))));
    }

    #[test]
    fn exception_codes_parse_in_both_server_styles() {
        assert_eq!(exception_code("Code: 60, e.displayText()"), Some(60));
        assert_eq!(exception_code("Code: 60. DB::Exception"), Some(60));
        assert_eq!(exception_code("Code:81"), Some(81));
        assert_eq!(exception_code("503 Service Unavailable"), None);
    }

    #[test]
    fn a_chain_shows_every_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = StoreError::clickhouse("reading the devices", Error::Network(Box::new(io)));
        assert_eq!(e.to_string(), "clickhouse reading the devices");
        assert_eq!(
            DisplayChain(&e).to_string(),
            "clickhouse reading the devices: network error: refused"
        );
        assert!(e.is_retryable());
        let stopped = StoreError::ReplayStopped;
        assert_eq!(
            DisplayChain(&stopped).to_string(),
            "the dataflow stopped while replaying"
        );
    }

    #[test]
    fn closed_writers_are_permanent() {
        assert!(!StoreError::Closed { table: "readings" }.is_retryable());
        assert_eq!(
            StoreError::Closed { table: "readings" }.to_string(),
            "the readings writer has stopped"
        );
    }
}
