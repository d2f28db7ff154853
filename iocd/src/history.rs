//! The API's history source backed by ClickHouse: [`StoreHistory`] answers the dashboard's
//! KPI history and dead-letter reads with [`ioc_store::Store`], so the web layer never sees
//! the store.

use ioc_dashboard_api::{
    DeadLetterQuery, HistoryError, HistoryFuture, HistorySource, KpiHistoryQuery,
};
use ioc_schemas::{DeadLetter, Kpi};
use ioc_store::{Store, StoreError};

/// [`HistorySource`] reading ClickHouse through the store.
#[derive(Debug, Clone)]
pub(crate) struct StoreHistory {
    store: Store,
}

impl StoreHistory {
    pub(crate) fn new(store: Store) -> Self {
        StoreHistory { store }
    }
}

/// The API's kind of failure for a store error: a passing one (ClickHouse down or
/// overloaded) makes the API answer from memory meanwhile; a query the store does not take
/// is the request's fault; anything else is for good.
fn history_error(error: StoreError) -> HistoryError {
    if error.is_retryable() {
        HistoryError::Unavailable(Box::new(error))
    } else if matches!(error, StoreError::Config(_)) {
        HistoryError::BadQuery(Box::new(error))
    } else {
        HistoryError::Failed(Box::new(error))
    }
}

impl HistorySource for StoreHistory {
    fn kpi_history<'a>(&'a self, query: &'a KpiHistoryQuery) -> HistoryFuture<'a, Vec<Kpi>> {
        Box::pin(async move {
            let query = ioc_store::KpiHistoryQuery {
                family: query.family,
                from_ms: query.from_ms,
                to_ms: query.to_ms,
                entity: query.entity.clone(),
                district: query.district,
                scope: query.scope,
                window_size_ms: query.window_size_ms,
                limit: query.limit,
            };
            self.store.kpi_history(&query).await.map_err(history_error)
        })
    }

    fn dead_letters<'a>(
        &'a self,
        query: &'a DeadLetterQuery,
    ) -> HistoryFuture<'a, Vec<DeadLetter>> {
        Box::pin(async move {
            let query = ioc_store::DeadLetterQuery {
                code: query.code,
                transport: query.transport,
                before_ms: query.before_ms,
                limit: query.limit,
            };
            self.store.dead_letters(&query).await.map_err(history_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_never_asks_for_more_rows_than_the_store_answers() {
        // The store caps a query's limit at its own maximum; the API flags an answer as
        // truncated when it holds `limit` rows, so the two maxima must agree.
        assert_eq!(
            ioc_dashboard_api::KPI_HISTORY_MAX_ROWS,
            ioc_store::KPI_HISTORY_MAX_ROWS
        );
        assert_eq!(
            ioc_dashboard_api::DEAD_LETTERS_MAX_ROWS,
            ioc_store::DEAD_LETTERS_MAX_ROWS
        );
    }

    #[test]
    fn store_errors_keep_their_kind() {
        let refused = history_error(StoreError::Config("the air family has no scope".into()));
        assert!(matches!(refused, HistoryError::BadQuery(_)), "{refused}");
        let closed = history_error(StoreError::Closed { table: "kpi_aqi" });
        assert!(matches!(closed, HistoryError::Failed(_)), "{closed}");
        assert!(!closed.is_retryable());
        let down = history_error(StoreError::ClickHouse {
            context: "reading kpi_aqi".into(),
            source: clickhouse::error::Error::TimedOut,
        });
        assert!(down.is_retryable(), "{down}");
    }
}
