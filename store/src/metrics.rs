//! Prometheus metrics of the writers, labelled by table (and failure kind).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::StoreRow;

/// Every table a writer inserts into: each table-labelled series is exported from the start,
/// at 0, so a dashboard sees a table before its first row.
pub(crate) const TABLES: [&str; 14] = [
    crate::ReadingRow::TABLE,
    crate::LateReadingRow::TABLE,
    crate::DeadLetterRow::TABLE,
    crate::WindowRow::TABLE,
    crate::DeviceRow::TABLE,
    crate::AlertEventRow::TABLE,
    crate::WebhookAttemptRow::TABLE,
    crate::TrafficKpiRow::TABLE,
    crate::CameraKpiRow::TABLE,
    crate::AqiKpiRow::TABLE,
    crate::WaterKpiRow::TABLE,
    crate::HydrologyKpiRow::TABLE,
    crate::BridgeKpiRow::TABLE,
    crate::HealthKpiRow::TABLE,
];

/// The `kind` of a failed insert.
const FAILURE_KINDS: [&str; 2] = ["retryable", "permanent"];

/// The store's metrics.
#[derive(Clone)]
pub struct StoreMetrics {
    /// Rows durably inserted, by table.
    pub(crate) rows_written: IntCounterVec,
    /// Rows left out of a batch because a later row of the same batch replaces them.
    pub(crate) rows_replaced: IntCounterVec,
    /// Latency of successful inserts, by table.
    pub(crate) batch_seconds: HistogramVec,
    /// Failed insert attempts, by table and `kind` (`retryable` or `permanent`).
    pub(crate) batch_failures: IntCounterVec,
    /// Rows accepted by a writer and not yet inserted, by table.
    pub(crate) queue_rows: IntGaugeVec,
    /// 1 while a table's current batch keeps failing, by table.
    pub(crate) failing: IntGaugeVec,
    /// Partitions dropped for being past their table's retention, by table.
    pub(crate) retention_dropped: IntCounterVec,
}

/// One table's series, resolved once so a writer task never looks a label up.
#[derive(Debug, Clone)]
pub(crate) struct TableMetrics {
    pub(crate) rows_written: IntCounter,
    pub(crate) rows_replaced: IntCounter,
    pub(crate) batch_seconds: Histogram,
    pub(crate) retryable_failures: IntCounter,
    pub(crate) permanent_failures: IntCounter,
    pub(crate) queue_rows: IntGauge,
    pub(crate) failing: IntGauge,
}

impl StoreMetrics {
    /// The series of `table`.
    pub(crate) fn table(&self, table: &str) -> TableMetrics {
        TableMetrics {
            rows_written: self.rows_written.with_label_values(&[table]),
            rows_replaced: self.rows_replaced.with_label_values(&[table]),
            batch_seconds: self.batch_seconds.with_label_values(&[table]),
            retryable_failures: self
                .batch_failures
                .with_label_values(&[table, FAILURE_KINDS[0]]),
            permanent_failures: self
                .batch_failures
                .with_label_values(&[table, FAILURE_KINDS[1]]),
            queue_rows: self.queue_rows.with_label_values(&[table]),
            failing: self.failing.with_label_values(&[table]),
        }
    }

    /// The tables whose current batch is failing to insert (ClickHouse down or refusing).
    pub fn failing_tables(&self) -> Vec<String> {
        use prometheus::core::Collector;
        self.failing
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .filter(|m| m.get_gauge().get_value() > 0.0)
            .filter_map(|m| m.get_label().first().map(|l| l.value().to_owned()))
            .collect()
    }

    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let rows_written = IntCounterVec::new(
            Opts::new(
                "ioc_store_rows_written_total",
                "Rows durably inserted into ClickHouse.",
            ),
            &["table"],
        )?;
        let rows_replaced = IntCounterVec::new(
            Opts::new(
                "ioc_store_rows_replaced_total",
                "Rows left out of a batch because a later row of the same batch replaces them \
                 (a newer version of the same window), as the table would on merging.",
            ),
            &["table"],
        )?;
        let batch_seconds = HistogramVec::new(
            HistogramOpts::new(
                "ioc_store_batch_seconds",
                "Time taken by a successful batch insert.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["table"],
        )?;
        let batch_failures = IntCounterVec::new(
            Opts::new(
                "ioc_store_batch_failures_total",
                "Failed batch insert attempts; every failed batch is retried.",
            ),
            &["table", "kind"],
        )?;
        let queue_rows = IntGaugeVec::new(
            Opts::new(
                "ioc_store_queue_rows",
                "Rows accepted by a writer and not yet inserted.",
            ),
            &["table"],
        )?;
        let failing = IntGaugeVec::new(
            Opts::new(
                "ioc_store_failing_batches",
                "1 while the table's current batch keeps failing to insert.",
            ),
            &["table"],
        )?;
        let retention_dropped = IntCounterVec::new(
            Opts::new(
                "ioc_store_retention_partitions_dropped_total",
                "Partitions dropped for being past their table's retention limit.",
            ),
            &["table"],
        )?;
        for table in TABLES {
            rows_written.with_label_values(&[table]);
            rows_replaced.with_label_values(&[table]);
            batch_seconds.with_label_values(&[table]);
            queue_rows.with_label_values(&[table]);
            failing.with_label_values(&[table]);
            retention_dropped.with_label_values(&[table]);
            for kind in FAILURE_KINDS {
                batch_failures.with_label_values(&[table, kind]);
            }
        }
        registry.register(Box::new(retention_dropped.clone()))?;
        registry.register(Box::new(failing.clone()))?;
        registry.register(Box::new(rows_written.clone()))?;
        registry.register(Box::new(rows_replaced.clone()))?;
        registry.register(Box::new(batch_seconds.clone()))?;
        registry.register(Box::new(batch_failures.clone()))?;
        registry.register(Box::new(queue_rows.clone()))?;
        Ok(StoreMetrics {
            rows_written,
            rows_replaced,
            batch_seconds,
            batch_failures,
            queue_rows,
            failing,
            retention_dropped,
        })
    }
}

impl std::fmt::Debug for StoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreMetrics")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_once_per_registry() {
        let registry = Registry::new();
        let m = StoreMetrics::new(&registry).unwrap();
        m.rows_written.with_label_values(&["readings"]).inc_by(3);
        m.batch_failures
            .with_label_values(&["readings", "permanent"])
            .inc();
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        assert!(names.contains(&"ioc_store_rows_written_total".to_owned()));
        assert!(names.contains(&"ioc_store_batch_failures_total".to_owned()));
        assert!(
            StoreMetrics::new(&registry).is_err(),
            "duplicate registration"
        );
    }

    #[test]
    fn every_table_is_exported_from_the_start() {
        let registry = Registry::new();
        StoreMetrics::new(&registry).unwrap();
        let families = registry.gather();
        let series = |name: &str| {
            families
                .iter()
                .find(|f| f.name() == name)
                .map_or(0, |f| f.get_metric().len())
        };
        for name in [
            "ioc_store_rows_written_total",
            "ioc_store_batch_seconds",
            "ioc_store_queue_rows",
            "ioc_store_failing_batches",
            "ioc_store_retention_partitions_dropped_total",
        ] {
            assert_eq!(series(name), TABLES.len(), "{name}");
        }
        assert_eq!(
            series("ioc_store_batch_failures_total"),
            TABLES.len() * FAILURE_KINDS.len()
        );
        // Retention names its tables itself: each is one of the writers'.
        for (table, _) in crate::RetentionConfig::default().limits() {
            assert!(TABLES.contains(&table), "{table}");
        }
    }
}
