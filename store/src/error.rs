//! The crate's error type and the retryable/permanent split of ClickHouse failures.

/// What can go wrong talking to ClickHouse.
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
    #[error("clickhouse {context}: {source}")]
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
    /// A writer's task panicked or was cancelled.
    #[error("the {table} writer task failed: {reason}")]
    WriterTask {
        /// The table the writer fills.
        table: &'static str,
        /// The panic message or cancellation.
        reason: String,
    },
}

impl StoreError {
    /// Whether trying again later may succeed: network failures, timeouts, 5xx answers that
    /// are not a ClickHouse exception, and ClickHouse exceptions of an overloaded or
    /// recovering server. Schema and SQL errors, bad settings and closed writers are
    /// permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::ClickHouse { source, .. } => is_retryable_clickhouse(source),
            StoreError::InvalidDatabaseName(_)
            | StoreError::Config(_)
            | StoreError::Closed { .. }
            | StoreError::Decode { .. }
            | StoreError::WriterTask { .. } => false,
        }
    }

    pub(crate) fn clickhouse(context: impl Into<String>, source: clickhouse::error::Error) -> Self {
        StoreError::ClickHouse {
            context: context.into(),
            source,
        }
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
    fn closed_writers_are_permanent() {
        assert!(!StoreError::Closed { table: "readings" }.is_retryable());
        assert_eq!(
            StoreError::Closed { table: "readings" }.to_string(),
            "the readings writer has stopped"
        );
    }
}
