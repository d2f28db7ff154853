//! Numbered schema migrations, applied once each at start-up.
//!
//! A migration's text never changes once released: a later change to a table (such as a new
//! kind in an `Enum8`) is a new migration. The enum literals below are therefore written out,
//! and a test checks they still match the `ALL` lists of `ioc-schemas`.

use crate::config::{validate_identifier, ClickHouseConfig};
use crate::error::StoreError;

/// `kind` values, in `Kind::ALL` order.
pub(crate) const KIND_ENUM: &str =
    "Enum8('sensor' = 1, 'traffic_signal' = 2, 'camera_event' = 3, 'environment' = 4)";
/// `district` values, in `District::ALL` order.
pub(crate) const DISTRICT_ENUM: &str = "Enum8('hai_chau' = 1, 'thanh_khe' = 2, 'son_tra' = 3, \
     'ngu_hanh_son' = 4, 'lien_chieu' = 5, 'cam_le' = 6, 'hoa_vang' = 7)";
/// `transport` values: `Transport::Mqtt`, `Transport::Kafka`.
pub(crate) const TRANSPORT_ENUM: &str = "Enum8('mqtt' = 1, 'kafka' = 2)";
/// Dead-letter `code` values, in `RejectCode::ALL` order.
pub(crate) const REJECT_CODE_ENUM: &str = "Enum8('invalid_utf8' = 1, 'malformed_json' = 2, \
     'missing_field' = 3, 'wrong_type' = 4, 'unknown_field' = 5, 'unknown_kind' = 6, \
     'out_of_range' = 7, 'future_event_time' = 8, 'source_mismatch' = 9, \
     'payload_too_large' = 10)";

/// One numbered schema change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Applied in increasing order; recorded in `schema_migrations`.
    pub version: u32,
    /// A short description.
    pub name: &'static str,
    /// The DDL statements, each idempotent (`IF NOT EXISTS`) so a migration interrupted
    /// half-way can simply be run again.
    pub statements: Vec<String>,
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The database migrated.
    pub database: String,
    /// Versions applied by this run, in order.
    pub applied: Vec<u32>,
    /// Versions found already recorded.
    pub already_applied: Vec<u32>,
}

/// The statements that create the database and the migrations ledger.
pub fn bootstrap_sql(db: &str) -> Result<Vec<String>, StoreError> {
    validate_identifier(db)?;
    Ok(vec![
        format!("CREATE DATABASE IF NOT EXISTS {db}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (\
             version UInt32, name String, applied_at DateTime\
             ) ENGINE = MergeTree ORDER BY version"
        ),
    ])
}

/// Every migration for database `db`, in order (for applying, and for docs to print).
pub fn migrations(db: &str) -> Result<Vec<Migration>, StoreError> {
    validate_identifier(db)?;
    Ok(vec![
        Migration {
            version: 1,
            name: "readings, window_results, dead_letters",
            statements: vec![
                // One long table of every valid reading. Replaying a reading (same kind, device,
                // event time and message id) collapses to one row on merge or with FINAL,
                // keeping the latest copy received.
                format!(
                    "CREATE TABLE IF NOT EXISTS {db}.readings (\
                 message_id String, \
                 device_id String, \
                 kind {KIND_ENUM}, \
                 district {DISTRICT_ENUM}, \
                 event_time DateTime, \
                 event_time_ms UInt64, \
                 received_at DateTime, \
                 received_at_ms UInt64, \
                 transport {TRANSPORT_ENUM}, \
                 source String, \
                 late UInt8, \
                 payload String\
                 ) ENGINE = ReplacingMergeTree(received_at_ms) \
                 PARTITION BY toYYYYMMDD(event_time) \
                 ORDER BY (kind, device_id, event_time_ms, message_id)"
                ),
                // Window aggregates; a correction of a window carries a higher version and
                // replaces the earlier one.
                format!(
                    "CREATE TABLE IF NOT EXISTS {db}.window_results (\
                 kind {KIND_ENUM}, \
                 district {DISTRICT_ENUM}, \
                 device_id String, \
                 metric String, \
                 window_size_ms UInt64, \
                 window_start DateTime, \
                 window_start_ms UInt64, \
                 count UInt64, \
                 sum Float64, \
                 min Float64, \
                 max Float64, \
                 mean Float64, \
                 emitted_at DateTime, \
                 emitted_at_ms UInt64, \
                 version UInt32, \
                 is_final UInt8\
                 ) ENGINE = ReplacingMergeTree(version) \
                 PARTITION BY toYYYYMMDD(window_start) \
                 ORDER BY (kind, device_id, metric, window_size_ms, window_start_ms)"
                ),
                // Rejected inputs with their raw bytes (String holds any bytes).
                format!(
                    "CREATE TABLE IF NOT EXISTS {db}.dead_letters (\
                 received_at DateTime, \
                 received_at_ms UInt64, \
                 transport {TRANSPORT_ENUM}, \
                 source String, \
                 code {REJECT_CODE_ENUM}, \
                 reason String, \
                 payload String\
                 ) ENGINE = MergeTree \
                 PARTITION BY toYYYYMMDD(received_at) \
                 ORDER BY (received_at_ms, source)"
                ),
            ],
        },
        Migration {
            version: 2,
            name: "late_readings",
            statements: vec![
                // The late ledger: every reading that arrived later than the allowed lateness,
                // with the watermark it missed. The reading itself is in `readings` with late = 1.
                format!(
                    "CREATE TABLE IF NOT EXISTS {db}.late_readings (\
                 message_id String, \
                 device_id String, \
                 kind {KIND_ENUM}, \
                 district {DISTRICT_ENUM}, \
                 event_time DateTime, \
                 event_time_ms UInt64, \
                 received_at DateTime, \
                 received_at_ms UInt64, \
                 watermark_ms UInt64, \
                 late_by_ms UInt64, \
                 source String\
                 ) ENGINE = ReplacingMergeTree(received_at_ms) \
                 PARTITION BY toYYYYMMDD(event_time) \
                 ORDER BY (device_id, event_time_ms, message_id)"
                ),
            ],
        },
    ])
}

/// Creates the database and applies, in order, every migration not yet recorded in
/// `<db>.schema_migrations`. Running it again applies nothing.
pub async fn migrate(cfg: &ClickHouseConfig) -> Result<MigrationReport, StoreError> {
    let db = cfg.database.as_str();
    let server = cfg.server_client();
    for sql in bootstrap_sql(db)? {
        server
            .query(&sql)
            .execute()
            .await
            .map_err(|e| StoreError::clickhouse("creating the migrations ledger", e))?;
    }

    let mut recorded: Vec<u32> = server
        .query(&format!(
            "SELECT DISTINCT version FROM {db}.schema_migrations"
        ))
        .fetch_all()
        .await
        .map_err(|e| StoreError::clickhouse("reading schema_migrations", e))?;
    recorded.sort_unstable();

    let mut report = MigrationReport {
        database: db.to_owned(),
        applied: Vec::new(),
        already_applied: Vec::new(),
    };
    for m in migrations(db)? {
        if recorded.binary_search(&m.version).is_ok() {
            report.already_applied.push(m.version);
            continue;
        }
        let context = format!("migration {} ({})", m.version, m.name);
        for sql in &m.statements {
            server
                .query(sql)
                .execute()
                .await
                .map_err(|e| StoreError::clickhouse(context.clone(), e))?;
        }
        // Recorded only after every statement succeeded; a crash in between re-runs the
        // (idempotent) statements next time.
        server
            .query(&format!(
                "INSERT INTO {db}.schema_migrations (version, name, applied_at) \
                 VALUES (?, ?, now())"
            ))
            .bind(m.version)
            .bind(m.name)
            .execute()
            .await
            .map_err(|e| StoreError::clickhouse(context.clone(), e))?;
        tracing::info!(
            database = db,
            version = m.version,
            name = m.name,
            "applied migration"
        );
        report.applied.push(m.version);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioc_schemas::{District, Kind, RejectCode};

    fn enum8(names: impl IntoIterator<Item = &'static str>) -> String {
        let values: Vec<String> = names
            .into_iter()
            .enumerate()
            .map(|(i, n)| format!("'{n}' = {}", i + 1))
            .collect();
        format!("Enum8({})", values.join(", "))
    }

    #[test]
    fn enum_literals_match_the_schema_lists() {
        // A failure here means a variant was added: write a new migration that alters the
        // column, and update the literal, rather than editing migration 1.
        assert_eq!(KIND_ENUM, enum8(Kind::ALL.map(Kind::as_str)));
        assert_eq!(DISTRICT_ENUM, enum8(District::ALL.map(District::slug)));
        assert_eq!(
            REJECT_CODE_ENUM,
            enum8(RejectCode::ALL.map(RejectCode::as_str))
        );
        assert_eq!(
            TRANSPORT_ENUM,
            enum8([
                ioc_schemas::Transport::Mqtt.as_str(),
                ioc_schemas::Transport::Kafka.as_str()
            ])
        );
    }

    #[test]
    fn migrations_are_numbered_in_order_and_name_the_database() {
        let ms = migrations("ioc").unwrap();
        for (i, m) in ms.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            for s in &m.statements {
                assert!(s.contains("IF NOT EXISTS ioc."), "{s}");
            }
        }
        assert!(migrations("ioc.x").is_err());
        assert!(bootstrap_sql("x`y").is_err());
    }
}
