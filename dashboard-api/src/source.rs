//! The history source: how the API reads what it does not keep itself, the stored KPI rows
//! and dead letters. The process that owns the storage implements [`HistorySource`] and gives
//! it to [`ApiState::set_history_source`](crate::ApiState::set_history_source); the API knows
//! nothing of what is behind it, only the queries here and the errors it can tell apart.

use std::future::Future;
use std::pin::Pin;

use ioc_schemas::{DeadLetter, District, EpochMs, Kpi, KpiFamily, RejectCode, Scope, Transport};

/// The most KPI rows the API asks for in one query (`limit` of `GET /api/v1/kpis/{family}`).
pub const KPI_HISTORY_MAX_ROWS: u32 = 10_000;

/// The most dead letters the API asks for in one query (`limit` of
/// `GET /api/v1/dead-letters`).
pub const DEAD_LETTERS_MAX_ROWS: u32 = 1_000;

/// Which KPI rows of a family to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpiHistoryQuery {
    /// The family.
    pub family: KpiFamily,
    /// Window starts from here (epoch ms, inclusive)...
    pub from_ms: EpochMs,
    /// ...to here (exclusive).
    pub to_ms: EpochMs,
    /// Only this entity ([`Kpi::entity_id`]): the junction, station, gauge, bridge or device
    /// id, or for aggregate rows the district or department slug or `da_nang`.
    pub entity: Option<String>,
    /// Only rows of this district.
    pub district: Option<District>,
    /// Only rows of this scope (asked of traffic and health only, the families with
    /// aggregates).
    pub scope: Option<Scope>,
    /// Only windows of this size (ms), e.g. 300000 for the 5-minute ones.
    pub window_size_ms: Option<u64>,
    /// At most this many rows, 1 to [`KPI_HISTORY_MAX_ROWS`].
    pub limit: u32,
}

/// Which dead letters to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterQuery {
    /// Only this rejection class.
    pub code: Option<RejectCode>,
    /// Only this transport.
    pub transport: Option<Transport>,
    /// Only letters received before this (epoch ms, exclusive), to page back.
    pub before_ms: Option<EpochMs>,
    /// At most this many, 1 to [`DEAD_LETTERS_MAX_ROWS`].
    pub limit: u32,
}

/// What a [`HistorySource`] read resolves to.
pub type HistoryFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, HistoryError>> + Send + 'a>>;

/// A cause of a [`HistoryError`], as the source has it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a [`HistorySource`] read failed. The API answers from memory while the source is
/// [`Unavailable`](HistoryError::Unavailable), `400 invalid_query` to a
/// [`BadQuery`](HistoryError::BadQuery) and `503 unavailable` to a
/// [`Failed`](HistoryError::Failed) read. Each variant shows its cause as it is.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The source cannot answer now (down, overloaded, timed out); asking again later may.
    #[error(transparent)]
    Unavailable(BoxError),
    /// The source cannot answer this query (a filter it does not support); asking again will
    /// not help.
    #[error(transparent)]
    BadQuery(BoxError),
    /// The source failed for good (a row it cannot read, a broken schema).
    #[error(transparent)]
    Failed(BoxError),
}

impl HistoryError {
    /// Whether asking again later may succeed: only while the source is unavailable.
    pub fn is_retryable(&self) -> bool {
        match self {
            HistoryError::Unavailable(_) => true,
            HistoryError::BadQuery(_) | HistoryError::Failed(_) => false,
        }
    }
}

/// Where the API reads stored history: KPI rows for `GET /api/v1/kpis/{family}` and dead
/// letters for `GET /api/v1/dead-letters`. Object-safe (the API holds an
/// `Arc<dyn HistorySource>`); each read is a boxed future, so no async-trait machinery is
/// needed.
pub trait HistorySource: std::fmt::Debug + Send + Sync {
    /// The newest version of each KPI row matching `query`, oldest window first, at most
    /// `query.limit`.
    fn kpi_history<'a>(&'a self, query: &'a KpiHistoryQuery) -> HistoryFuture<'a, Vec<Kpi>>;

    /// The newest dead letters matching `query`, newest first, at most `query.limit`.
    fn dead_letters<'a>(&'a self, query: &'a DeadLetterQuery)
        -> HistoryFuture<'a, Vec<DeadLetter>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_show_their_cause_and_say_whether_to_retry() {
        let down = HistoryError::Unavailable("connection refused".into());
        assert!(down.is_retryable());
        assert_eq!(down.to_string(), "connection refused");
        assert!(!HistoryError::BadQuery("no scope".into()).is_retryable());
        assert!(!HistoryError::Failed("bad row".into()).is_retryable());
    }
}
