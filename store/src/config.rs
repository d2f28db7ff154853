//! ClickHouse connection and writer settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::retention::RetentionConfig;

/// Where ClickHouse is and how the batched writers behave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// The HTTP endpoint, such as `http://127.0.0.1:8123`.
    pub url: String,
    /// The database holding the tables; created by the migrations. ASCII letters, digits and
    /// `_` only, not starting with a digit (it is interpolated into DDL).
    pub database: String,
    /// The user to connect as.
    pub user: String,
    /// The user's password; empty for none.
    pub password: String,
    /// A batch is inserted once it holds this many rows.
    pub batch_max_rows: usize,
    /// A batch is inserted at the latest this long (ms) after its first row arrived. ClickHouse
    /// writes a part (a folder of files) per insert and merges them later, so about one
    /// insert a second per table is what it handles best; shorter waits make rows visible to
    /// queries sooner at a cost in ClickHouse's CPU. The live feed and alerts never wait for it.
    pub batch_max_wait_ms: u64,
    /// A batch of at least 1,000 rows (ClickHouse's own advice for an insert), or the one
    /// right after such a batch, is inserted once no row has arrived for this long (ms),
    /// without waiting out `batch_max_wait_ms`: the end of a burst or a catch-up reaches
    /// ClickHouse at once. A steady flow never goes this quiet, and a trickle never fills
    /// 1,000 rows, so neither makes more inserts. A flow in bursts of 1,000 rows or more, with
    /// quiet gaps shorter than `batch_max_wait_ms` between them, makes one or two inserts per
    /// burst; set this above the gaps, or to 0 (off), to insert such bursts together.
    pub batch_quiet_ms: u64,
    /// Rows queued per table before senders wait (backpressure).
    pub channel_capacity: usize,
    /// First back-off (ms) after a failed insert; doubles per failure.
    pub retry_initial_ms: u64,
    /// Longest back-off (ms) between retries; also the back-off after a permanent error.
    pub retry_max_ms: u64,
    /// Longest time (ms) one insert may take (sending the rows, then waiting for the server)
    /// before it is abandoned and retried, so a hung connection cannot stall a table.
    pub insert_timeout_ms: u64,
    /// How long each table keeps its rows (`[clickhouse.retention]`).
    pub retention: RetentionConfig,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".to_owned(),
            database: "ioc".to_owned(),
            user: "default".to_owned(),
            password: String::new(),
            batch_max_rows: 50_000,
            batch_max_wait_ms: 1_000,
            batch_quiet_ms: 50,
            channel_capacity: 20_000,
            retry_initial_ms: 100,
            retry_max_ms: 10_000,
            insert_timeout_ms: 30_000,
            retention: RetentionConfig::default(),
        }
    }
}

impl ClickHouseConfig {
    /// Checks the settings fit together and the database name is a plain identifier.
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |m: &str| Err(StoreError::Config(m.to_owned()));
        validate_identifier(&self.database)?;
        if self.batch_max_rows == 0 {
            return bad("clickhouse.batch_max_rows must be at least 1");
        }
        if self.channel_capacity == 0 {
            return bad("clickhouse.channel_capacity must be at least 1");
        }
        if self.retry_initial_ms == 0 || self.retry_initial_ms > self.retry_max_ms {
            return bad("clickhouse.retry_initial_ms must be at least 1 and at most retry_max_ms");
        }
        if self.insert_timeout_ms == 0 {
            return bad("clickhouse.insert_timeout_ms must be at least 1");
        }
        self.retention.validate()
    }

    /// A client for the configured database: RowBinary without schema validation (18.16 has
    /// no `RowBinaryWithNamesAndTypes`) and `wait_end_of_query=1` so that errors raised while
    /// the server processes the query are reported in the HTTP status, not mid-stream.
    pub fn client(&self) -> clickhouse::Client {
        self.server_client().with_database(self.database.clone())
    }

    /// A client without a default database, for `CREATE DATABASE` (a `database` parameter
    /// naming a missing database makes every query fail).
    pub(crate) fn server_client(&self) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(self.url.clone())
            .with_user(self.user.clone())
            .with_password(self.password.clone())
            .with_validation(false)
            .with_setting("wait_end_of_query", "1")
    }

    /// `None` when off.
    pub(crate) fn batch_quiet(&self) -> Option<Duration> {
        (self.batch_quiet_ms > 0).then(|| Duration::from_millis(self.batch_quiet_ms))
    }

    pub(crate) fn batch_max_wait(&self) -> Duration {
        Duration::from_millis(self.batch_max_wait_ms)
    }

    pub(crate) fn insert_timeout(&self) -> Duration {
        Duration::from_millis(self.insert_timeout_ms)
    }
}

/// Accepts `[A-Za-z_][A-Za-z0-9_]*` up to 64 bytes: names that need no quoting anywhere.
pub(crate) fn validate_identifier(name: &str) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && name.len() <= 64 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(StoreError::InvalidDatabaseName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_deserialise_from_nothing() {
        let cfg: ClickHouseConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg, ClickHouseConfig::default());
        cfg.validate().unwrap();
        assert_eq!(cfg.url, "http://127.0.0.1:8123");
        assert_eq!(cfg.database, "ioc");
        assert_eq!(cfg.batch_max_rows, 50_000);
        assert_eq!(cfg.channel_capacity, 20_000);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = serde_json::from_str::<ClickHouseConfig>(r#"{"batch_rows": 5}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn database_names_are_identifiers() {
        for ok in ["ioc", "_x", "ioc_test_store_12_3"] {
            validate_identifier(ok).unwrap();
        }
        for bad in [
            "",
            "1ioc",
            "ioc.x",
            "ioc; DROP",
            "ioc`",
            "iöc",
            &"a".repeat(65),
        ] {
            let e = validate_identifier(bad).unwrap_err();
            assert!(matches!(e, StoreError::InvalidDatabaseName(_)), "{bad}");
            assert!(!e.is_retryable());
        }
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        let cfg = ClickHouseConfig {
            retry_initial_ms: 20_000,
            ..ClickHouseConfig::default()
        };
        let e = cfg.validate().unwrap_err();
        assert!(e.to_string().contains("retry_initial_ms"), "{e}");
        let cfg = ClickHouseConfig {
            batch_max_rows: 0,
            ..ClickHouseConfig::default()
        };
        assert!(cfg.validate().is_err());
    }
}
