//! Retention: iocd drops whole partitions once they are older than their table's limit.
//!
//! Every table with a time is partitioned by day (raw data: `toYYYYMMDD`) or by month (KPIs and
//! alert events: `toYYYYMM`), so a limit is enforced by dropping partitions, which is cheap and
//! exact to the day. ClickHouse's own `TTL` is not used: 18.16 has none, and one mechanism on
//! every server version keeps the behaviour the same. A partition goes once its last day is
//! more than the limit's days before today (UTC).

use ioc_schemas::KpiFamily;
use prometheus::IntCounterVec;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::history::kpi_table;

/// How long each table keeps its rows (`[clickhouse.retention]`). A limit of 0 days keeps a
/// table's rows for ever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Whether iocd drops old partitions.
    pub enabled: bool,
    /// How often iocd looks for partitions past their limit, in seconds (and once at start).
    pub check_every_s: u64,
    /// Raw readings (`readings`), in days.
    pub readings_days: u32,
    /// Readings that came too late (`late_readings`), in days.
    pub late_readings_days: u32,
    /// Rejected input (`dead_letters`), in days.
    pub dead_letters_days: u32,
    /// Window results (`window_results`), in days.
    pub window_results_days: u32,
    /// Every KPI table (`kpi_*`, monthly partitions), in days.
    pub kpi_days: u32,
    /// The alert lifecycle (`alert_events`, monthly partitions), in days.
    pub alert_events_days: u32,
    /// Webhook delivery attempts (`webhook_attempts`), in days.
    pub webhook_attempts_days: u32,
}

impl Default for RetentionConfig {
    /// Raw data for a quarter, windows for a year and a month, aggregates and alerts for years.
    fn default() -> Self {
        RetentionConfig {
            enabled: true,
            check_every_s: 3_600,
            readings_days: 90,
            late_readings_days: 90,
            dead_letters_days: 30,
            window_results_days: 400,
            kpi_days: 1_830,
            alert_events_days: 730,
            webhook_attempts_days: 90,
        }
    }
}

impl RetentionConfig {
    /// Each table with a limit, and the limit in days.
    pub fn limits(&self) -> Vec<(&'static str, u32)> {
        let mut limits = vec![
            ("readings", self.readings_days),
            ("late_readings", self.late_readings_days),
            ("dead_letters", self.dead_letters_days),
            ("window_results", self.window_results_days),
            ("alert_events", self.alert_events_days),
            ("webhook_attempts", self.webhook_attempts_days),
        ];
        limits.extend(KpiFamily::ALL.map(|f| (kpi_table(f).0, self.kpi_days)));
        limits.retain(|(_, days)| *days > 0);
        limits
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.enabled && self.check_every_s == 0 {
            return Err(StoreError::Config(
                "clickhouse.retention.check_every_s must be at least 1".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The last day (days since the epoch) a partition id holds: `YYYYMMDD` a day, `YYYYMM` a
/// month; `None` for any other id (such a partition is never dropped).
pub fn last_day_of_partition(id: &str) -> Option<i64> {
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i64 = id.get(0..4)?.parse().ok()?;
    let month: u32 = id.get(4..6)?.parse().ok()?;
    if !(1..=12).contains(&month) {
        return None;
    }
    match id.len() {
        8 => {
            let day: u32 = id.get(6..8)?.parse().ok()?;
            (1..=31)
                .contains(&day)
                .then(|| days_from_civil(year, month, day))
        }
        6 => {
            let (next_year, next_month) = if month == 12 {
                (year + 1, 1)
            } else {
                (year, month + 1)
            };
            Some(days_from_civil(next_year, next_month, 1) - 1)
        }
        _ => None,
    }
}

/// Whether a partition whose last day is `last_day` is past a limit of `days`, today being
/// `today` (days since the epoch).
pub fn expired(last_day: i64, days: u32, today: i64) -> bool {
    last_day < today - i64::from(days)
}

/// A partition dropped for being past its table's limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedPartition {
    /// The table.
    pub table: &'static str,
    /// The partition id (`20260901`, `202601`).
    pub partition_id: String,
}

/// Drops every partition of `db` past its table's limit, `now_ms` being the time now; logs
/// and counts each (`ioc_store_retention_partitions_dropped_total{table}`). Retryable errors
/// leave the rest for the next check.
pub async fn enforce(
    client: &clickhouse::Client,
    db: &str,
    config: &RetentionConfig,
    now_ms: u64,
    dropped_total: &IntCounterVec,
) -> Result<Vec<DroppedPartition>, StoreError> {
    let today = i64::try_from(now_ms / 86_400_000).unwrap_or(i64::MAX);
    let parts: Vec<(String, String)> = client
        .query(
            "SELECT DISTINCT table, partition_id FROM system.parts \
             WHERE database = ? AND active ORDER BY table, partition_id",
        )
        .bind(db)
        .fetch_all()
        .await
        .map_err(|e| StoreError::clickhouse("listing partitions for retention", e))?;
    let mut dropped = Vec::new();
    for (table, days) in config.limits() {
        for (_, id) in parts.iter().filter(|(t, _)| t == table) {
            let Some(last_day) = last_day_of_partition(id) else {
                continue;
            };
            if !expired(last_day, days, today) {
                continue;
            }
            // The id is digits only (checked above), so it is safe to interpolate.
            client
                .query(&format!(
                    "ALTER TABLE {db}.{table} DROP PARTITION ID '{id}'"
                ))
                .execute()
                .await
                .map_err(|e| StoreError::clickhouse(format!("dropping {table} {id}"), e))?;
            tracing::info!(
                table,
                partition = %id,
                limit_days = days,
                "retention: dropped a partition past its table's limit"
            );
            dropped_total.with_label_values(&[table]).inc();
            dropped.push(DroppedPartition {
                table,
                partition_id: id.clone(),
            });
        }
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_ids_give_their_last_day() {
        // 2026-12-06 is day 20,793 since the epoch.
        assert_eq!(days_from_civil(2026, 12, 6), 20_793);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(last_day_of_partition("20261206"), Some(20_793));
        // A month's partition lasts to its last day: February 2028 has 29.
        assert_eq!(
            last_day_of_partition("202802"),
            Some(days_from_civil(2028, 2, 29))
        );
        assert_eq!(
            last_day_of_partition("202612"),
            Some(days_from_civil(2026, 12, 31))
        );
        for other in ["all", "tuple()", "2026", "20261306", "2026120", "-2026120"] {
            assert_eq!(last_day_of_partition(other), None, "{other}");
        }
    }

    #[test]
    fn a_partition_expires_the_day_after_its_limit() {
        let today = days_from_civil(2026, 12, 6);
        // 90 days: 2026-09-07 is the oldest day kept.
        let kept = days_from_civil(2026, 9, 7);
        assert!(!expired(kept, 90, today));
        assert!(expired(kept - 1, 90, today));
        // A month goes only once its last day (30 November, 6 days back) has passed the limit.
        let november = last_day_of_partition("202611").unwrap();
        assert!(!expired(november, 6, today));
        assert!(expired(november, 5, today));
    }

    #[test]
    fn zero_keeps_for_ever_and_the_limits_cover_every_table() {
        let config = RetentionConfig {
            dead_letters_days: 0,
            ..RetentionConfig::default()
        };
        let tables: Vec<&str> = config.limits().into_iter().map(|(t, _)| t).collect();
        assert!(!tables.contains(&"dead_letters"));
        assert_eq!(tables.len(), 12);
        assert!(RetentionConfig {
            check_every_s: 0,
            ..RetentionConfig::default()
        }
        .validate()
        .is_err());
    }
}
