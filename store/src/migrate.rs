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

/// `department` values, in `Department::ALL` order.
pub(crate) const DEPARTMENT_ENUM: &str = "Enum8('transport' = 1, 'environment' = 2, \
     'police' = 3, 'construction' = 4, 'industry_trade' = 5, 'disaster_prevention' = 6, \
     'information' = 7)";
/// KPI `scope` values, in `Scope` declaration order (see `kpi::scope_code`).
pub(crate) const SCOPE_ENUM: &str =
    "Enum8('device' = 1, 'district' = 2, 'department' = 3, 'city' = 4)";
/// Traffic level of service, A to F (see `kpi::congestion_code`).
pub(crate) const CONGESTION_ENUM: &str =
    "Enum8('A' = 1, 'B' = 2, 'C' = 3, 'D' = 4, 'E' = 5, 'F' = 6)";
/// AQI `period` values (see `kpi::aqi_period_code`).
pub(crate) const AQI_PERIOD_ENUM: &str = "Enum8('hour' = 1, 'day' = 2)";
/// AQI bands, in `AqiBand::ALL` order.
pub(crate) const AQI_BAND_ENUM: &str = "Enum8('good' = 1, 'moderate' = 2, 'poor' = 3, \
     'bad' = 4, 'very_bad' = 5, 'hazardous' = 6)";
/// Environmental `medium` values, in `Medium` declaration order (see `kpi::medium_code`).
pub(crate) const MEDIUM_ENUM: &str = "Enum8('air' = 1, 'surface_water' = 2, \
     'waste_water' = 3, 'sea_water' = 4, 'river_water' = 5)";
/// Device `status` values, in `DeviceStatus` declaration order (see `kpi::status_code`).
pub(crate) const DEVICE_STATUS_ENUM: &str = "Enum8('online' = 1, 'offline' = 2, 'never_seen' = 3)";

/// The window columns every KPI table has, after its entity columns.
const KPI_WINDOW_COLUMNS: &str = "window_start DateTime, \
     window_start_ms UInt64, \
     window_end DateTime, \
     window_size_ms UInt64";

/// One numbered schema change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Applied in increasing order; recorded in `schema_migrations`.
    pub version: u32,
    /// A short description.
    pub name: &'static str,
    /// The DDL statements, each idempotent so a migration interrupted half-way can simply be
    /// run again: `CREATE ... IF NOT EXISTS`, or `ALTER TABLE t ADD COLUMN c`, which is
    /// skipped when `c` exists (18.16 has no `ADD COLUMN IF NOT EXISTS`).
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
        Migration {
            version: 3,
            name: "kpi tables, devices",
            statements: kpi_tables(db),
        },
        Migration {
            version: 4,
            name: "alert_events, webhook_attempts",
            statements: alert_tables(db),
        },
        Migration {
            version: 5,
            name: "dead_letters.payload_bytes",
            // The whole size of a rejected payload; only the head of an oversized one is kept.
            statements: vec![format!(
                "ALTER TABLE {db}.dead_letters ADD COLUMN payload_bytes UInt64 DEFAULT length(payload)"
            )],
        },
        Migration {
            version: 6,
            name: "kpi_aqi.o3_8h",
            // The daily VN_AQI's 8-hour ozone (Quyết định 1459/QĐ-TCMT §2.2).
            statements: vec![format!(
                "ALTER TABLE {db}.kpi_aqi ADD COLUMN o3_8h Nullable(Float64)"
            )],
        },
        Migration {
            version: 7,
            name: "kpi_traffic.free_flow_kmh, worst_level",
            // The free-flow speed each level is judged against, and the worst approach's level.
            statements: vec![
                format!("ALTER TABLE {db}.kpi_traffic ADD COLUMN free_flow_kmh Nullable(Float64)"),
                format!(
                    "ALTER TABLE {db}.kpi_traffic ADD COLUMN worst_level Nullable({CONGESTION_ENUM})"
                ),
            ],
        },
        Migration {
            version: 8,
            name: "kpi_hydrology.rain_12h_mm",
            statements: vec![format!(
                "ALTER TABLE {db}.kpi_hydrology ADD COLUMN rain_12h_mm Nullable(Float64)"
            )],
        },
        Migration {
            version: 9,
            name: "devices.water_class, flood_alarm_m; kpi_hydrology.alarm_level",
            // The water-quality class of a station and the flood alarm levels of a river
            // gauge (issue 15), and the alarm level a gauge's water has reached.
            statements: vec![
                format!("ALTER TABLE {db}.devices ADD COLUMN water_class Nullable(String)"),
                format!("ALTER TABLE {db}.devices ADD COLUMN flood_alarm_m Array(Float64)"),
                format!("ALTER TABLE {db}.kpi_hydrology ADD COLUMN alarm_level Nullable(UInt8)"),
            ],
        },
        Migration {
            version: 10,
            name: "views for analysts",
            statements: analyst_views(db),
        },
        Migration {
            version: 11,
            name: "kpi_aqi.local_day",
            // The city day a row belongs to (a daily row starts at 00:00 in Da Nang, 17:00 UTC
            // the day before). Computed on read: nothing is stored, writers and `SELECT *` do
            // not see it.
            statements: vec![format!(
                "ALTER TABLE {db}.kpi_aqi ADD COLUMN local_day Date \
                 ALIAS toDate(window_start, 'Asia/Ho_Chi_Minh')"
            )],
        },
        Migration {
            version: 12,
            name: "kpi_traffic.covered_ms, kpi_camera.covered_ms",
            // How much of a window the data covers (a partial first window is not scaled as
            // a whole one). The newest-row views select `*`, which a view fixes when it is
            // created, so they are made again with the column.
            statements: covered_ms_columns(db),
        },
    ])
}

/// The newest row per entity of each KPI table: `(view, table, the columns naming an entity)`.
const LATEST_KPI_VIEWS: [(&str, &str, &str); 7] = [
    (
        "latest_kpi_traffic",
        "kpi_traffic",
        "scope, entity_id, window_size_ms",
    ),
    (
        "latest_kpi_camera",
        "kpi_camera",
        "district, event_type, window_size_ms",
    ),
    ("latest_kpi_aqi", "kpi_aqi", "station_id, period"),
    (
        "latest_kpi_water",
        "kpi_water",
        "station_id, parameter, window_size_ms",
    ),
    (
        "latest_kpi_hydrology",
        "kpi_hydrology",
        "gauge_id, window_size_ms",
    ),
    (
        "latest_kpi_bridge",
        "kpi_bridge",
        "device_id, window_size_ms",
    ),
    (
        "latest_kpi_health",
        "kpi_health",
        "scope, entity_id, window_size_ms",
    ),
];

/// Migration 12: `covered_ms` on the traffic and camera KPI tables, and their newest-row views
/// made again to show it.
fn covered_ms_columns(db: &str) -> Vec<String> {
    let mut statements = Vec::new();
    for (view, table, entity) in LATEST_KPI_VIEWS {
        if table != "kpi_traffic" && table != "kpi_camera" {
            continue;
        }
        statements.push(format!(
            "ALTER TABLE {db}.{table} ADD COLUMN covered_ms Nullable(UInt64)"
        ));
        // `DROP TABLE` drops a view too; ClickHouse 18 has no `DROP VIEW`.
        statements.push(format!("DROP TABLE IF EXISTS {db}.{view}"));
        statements.push(latest_kpi_view(db, view, table, entity));
    }
    statements
}

/// The view of the newest row of each entity of a KPI table.
fn latest_kpi_view(db: &str, view: &str, table: &str, entity: &str) -> String {
    format!(
        "CREATE VIEW IF NOT EXISTS {db}.{view} AS \
         SELECT * FROM {db}.{table} FINAL \
         ORDER BY {entity}, window_start_ms DESC LIMIT 1 BY {entity}"
    )
}

/// Migration 10: views that answer the common questions without `FINAL`, versions or
/// `is_final`. A plain view keeps the columns it had when created, so a migration that adds a
/// column to a table a view reads must drop and create that view again.
fn analyst_views(db: &str) -> Vec<String> {
    let mut views = vec![
        // Windows that can no longer change, once each.
        format!(
            "CREATE VIEW IF NOT EXISTS {db}.final_windows AS \
             SELECT kind, district, device_id, metric, window_size_ms, window_start, \
             window_start_ms, count, sum, min, max, mean \
             FROM {db}.window_results FINAL WHERE is_final = 1"
        ),
        // The registry as it stands: the newest change per device, removals left out.
        format!(
            "CREATE VIEW IF NOT EXISTS {db}.devices_now AS \
             SELECT id, kind, name, district, lat, lon, department, expected_interval_s, \
             free_flow_kmh, water_class, flood_alarm_m \
             FROM {db}.devices FINAL WHERE deleted = 0"
        ),
        // Readings with their device's name and owner (empty name: not in the registry).
        format!(
            "CREATE VIEW IF NOT EXISTS {db}.readings_named AS \
             SELECT message_id, device_id, device_name, department, kind, district, event_time, \
             event_time_ms, received_at, transport, source, late, payload \
             FROM (SELECT message_id, device_id, kind, district, event_time, event_time_ms, \
             received_at, transport, source, late, payload FROM {db}.readings FINAL) AS r \
             LEFT JOIN (SELECT id AS device_id, name AS device_name, department \
             FROM {db}.devices FINAL WHERE deleted = 0) AS d USING device_id"
        ),
        // Every alert not resolved, as its latest event left it.
        format!(
            "CREATE VIEW IF NOT EXISTS {db}.open_alerts AS \
             SELECT alert_id, rule_id, entity_id, district, department, category, severity, \
             state, transition AS last_transition, at AS last_event_at, message, value, \
             breaches, escalations, toDateTime(intDiv(opened_ms, 1000)) AS opened_at \
             FROM (SELECT * FROM {db}.alert_events FINAL \
             ORDER BY alert_id, at_ms DESC, event_id DESC LIMIT 1 BY alert_id) \
             WHERE state != 'resolved'"
        ),
    ];
    for (view, table, entity) in LATEST_KPI_VIEWS {
        views.push(latest_kpi_view(db, view, table, entity));
    }
    views
}

/// Migration 3: one typed table per KPI family and the device registry.
///
/// A KPI row is keyed by what it is about and its window, so a replayed or recomputed KPI
/// replaces the earlier row on merge (read with `FINAL`). AQI and hydrology rows carry
/// `coverage` as the replacing version: a period rebuilt from part of its data after a
/// restart never replaces a complete one. Partitions are monthly (KPI rows are few).
fn kpi_tables(db: &str) -> Vec<String> {
    let w = KPI_WINDOW_COLUMNS;
    let part = "PARTITION BY toYYYYMM(window_start)";
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.kpi_traffic (\
             scope {SCOPE_ENUM}, \
             entity_id String, \
             district {DISTRICT_ENUM}, \
             {w}, \
             junctions UInt32, \
             volume_veh_h Float64, \
             occupancy_pct Float64, \
             mean_speed_kmh Float64, \
             queue_m Float64, \
             level {CONGESTION_ENUM}, \
             availability_pct Float64\
             ) ENGINE = ReplacingMergeTree {part} \
             ORDER BY (scope, entity_id, window_size_ms, window_start_ms)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.kpi_camera (\
             district {DISTRICT_ENUM}, \
             event_type String, \
             {w}, \
             events UInt64, \
             cameras UInt32, \
             per_hour Float64, \
             violations_per_100_vehicles Nullable(Float64)\
             ) ENGINE = ReplacingMergeTree {part} \
             ORDER BY (district, event_type, window_size_ms, window_start_ms)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.kpi_aqi (\
             station_id String, \
             district {DISTRICT_ENUM}, \
             period {AQI_PERIOD_ENUM}, \
             {w}, \
             pm25 Nullable(Float64), \
             pm10 Nullable(Float64), \
             o3 Nullable(Float64), \
             no2 Nullable(Float64), \
             so2 Nullable(Float64), \
             co Nullable(Float64), \
             aqi_pm25 Nullable(UInt32), \
             aqi_pm10 Nullable(UInt32), \
             aqi_o3 Nullable(UInt32), \
             aqi_no2 Nullable(UInt32), \
             aqi_so2 Nullable(UInt32), \
             aqi_co Nullable(UInt32), \
             aqi Nullable(UInt32), \
             dominant Nullable(String), \
             band Nullable({AQI_BAND_ENUM}), \
             colour Nullable(String), \
             coverage UInt32\
             ) ENGINE = ReplacingMergeTree(coverage) {part} \
             ORDER BY (station_id, period, window_start_ms)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.kpi_water (\
             station_id String, \
             district {DISTRICT_ENUM}, \
             medium {MEDIUM_ENUM}, \
             {w}, \
             parameter String, \
             value Float64, \
             limit_min Nullable(Float64), \
             limit_max Nullable(Float64), \
             standard String, \
             exceeded UInt8\
             ) ENGINE = ReplacingMergeTree {part} \
             ORDER BY (station_id, parameter, window_size_ms, window_start_ms)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.kpi_hydrology (\
             gauge_id String, \
             district {DISTRICT_ENUM}, \
             {w}, \
             rain_mm Nullable(Float64), \
             rain_1h_mm Nullable(Float64), \
             rain_3h_mm Nullable(Float64), \
             rain_24h_mm Nullable(Float64), \
             water_level_m Nullable(Float64), \
             rise_rate_m_per_h Nullable(Float64), \
             coverage UInt32\
             ) ENGINE = ReplacingMergeTree(coverage) {part} \
             ORDER BY (gauge_id, window_size_ms, window_start_ms)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.kpi_bridge (\
             device_id String, \
             district {DISTRICT_ENUM}, \
             {w}, \
             wind_mean_ms Nullable(Float64), \
             wind_max_ms Nullable(Float64), \
             strain_mean_ue Nullable(Float64), \
             strain_min_ue Nullable(Float64), \
             strain_max_ue Nullable(Float64), \
             temperature_c Nullable(Float64), \
             humidity_pct Nullable(Float64)\
             ) ENGINE = ReplacingMergeTree {part} \
             ORDER BY (device_id, window_size_ms, window_start_ms)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.kpi_health (\
             scope {SCOPE_ENUM}, \
             entity_id String, \
             district Nullable({DISTRICT_ENUM}), \
             department Nullable({DEPARTMENT_ENUM}), \
             {w}, \
             devices UInt32, \
             online UInt32, \
             offline UInt32, \
             readings UInt64, \
             expected UInt64, \
             completeness_pct Float64, \
             last_seen Nullable(DateTime), \
             last_seen_ms Nullable(UInt64), \
             status Nullable({DEVICE_STATUS_ENUM})\
             ) ENGINE = ReplacingMergeTree {part} \
             ORDER BY (scope, entity_id, window_size_ms, window_start_ms)"
        ),
        // The registry's changes: the newest row per id (by `updated_ms`) is the device's
        // state; `deleted = 1` marks a removal and keeps the last known fields for joins.
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.devices (\
             id String, \
             kind {KIND_ENUM}, \
             name String, \
             district {DISTRICT_ENUM}, \
             lat Float64, \
             lon Float64, \
             department {DEPARTMENT_ENUM}, \
             expected_interval_s UInt32, \
             free_flow_kmh Nullable(Float64), \
             updated DateTime, \
             updated_ms UInt64, \
             deleted UInt8\
             ) ENGINE = ReplacingMergeTree(updated_ms) \
             ORDER BY id"
        ),
    ]
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
            if let Some((table, column)) = added_column(db, sql) {
                let present: u64 = server
                    .query("SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?")
                    .bind(db)
                    .bind(table)
                    .bind(column)
                    .fetch_one()
                    .await
                    .map_err(|e| StoreError::clickhouse(context.clone(), e))?;
                if present > 0 {
                    continue;
                }
            }
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

/// `(table, column)` of an `ALTER TABLE <db>.<table> ADD COLUMN <column> ...` statement.
fn added_column<'a>(db: &str, sql: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = sql
        .strip_prefix("ALTER TABLE ")?
        .strip_prefix(db)?
        .strip_prefix('.')?;
    let (table, rest) = rest.split_once(' ')?;
    let column = rest.strip_prefix("ADD COLUMN ")?.split(' ').next()?;
    Some((table, column))
}

/// Migration 4: the alert lifecycle and webhook attempts.
fn alert_tables(db: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.alert_events (\
             event_id String, \
             alert_id String, \
             rule_id String, \
             entity_id String, \
             district Nullable({DISTRICT_ENUM}), \
             department {DEPARTMENT_ENUM}, \
             category {CATEGORY_ENUM}, \
             severity {SEVERITY_ENUM}, \
             state {STATE_ENUM}, \
             transition {TRANSITION_ENUM}, \
             at DateTime, \
             at_ms UInt64, \
             actor String, \
             message String, \
             value Nullable(Float64), \
             breaches UInt32, \
             escalations UInt32, \
             notified UInt8, \
             suppressed UInt8, \
             opened_ms UInt64\
             ) ENGINE = ReplacingMergeTree(at_ms) \
             PARTITION BY toYYYYMM(at) \
             ORDER BY (alert_id, event_id)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.webhook_attempts (\
             delivery_id String, \
             webhook_id String, \
             subscription_id String, \
             department {DEPARTMENT_ENUM}, \
             url String, \
             attempt UInt32, \
             at DateTime, \
             at_ms UInt64, \
             status Nullable(UInt16), \
             latency_ms UInt64, \
             error Nullable(String), \
             outcome String\
             ) ENGINE = MergeTree \
             PARTITION BY toYYYYMMDD(at) \
             ORDER BY (subscription_id, at_ms, delivery_id)"
        ),
    ]
}

/// `category` values, in `Category::ALL` order.
const CATEGORY_ENUM: &str = "Enum8('traffic' = 1, 'air_quality' = 2, 'water_quality' = 3, \
     'flood' = 4, 'structure' = 5, 'public_safety' = 6, 'device_health' = 7, 'storm' = 8)";
/// `severity` values, in `Severity::ALL` order.
const SEVERITY_ENUM: &str = "Enum8('info' = 1, 'warning' = 2, 'major' = 3, 'critical' = 4)";
/// Alert `state` values.
const STATE_ENUM: &str = "Enum8('active' = 1, 'acknowledged' = 2, 'resolved' = 3)";
/// `transition` values, in `Transition::ALL` order.
const TRANSITION_ENUM: &str = "Enum8('opened' = 1, 'updated' = 2, 'acknowledged' = 3, \
     'escalated' = 4, 'resolved' = 5, 'commented' = 6, 'suppressed' = 7)";

#[cfg(test)]
mod tests {
    use super::*;
    use ioc_schemas::{Category, District, Kind, RejectCode, Severity, Transition};

    fn enum8<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> String {
        let values: Vec<String> = names
            .into_iter()
            .enumerate()
            .map(|(i, n)| format!("'{}' = {}", n.as_ref(), i + 1))
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

    /// The serde name of a value (the name the API and JSON use).
    fn serde_name<T: serde::Serialize>(value: T) -> String {
        let json = serde_json::to_string(&value).unwrap();
        json.trim_matches('"').to_owned()
    }

    #[test]
    fn kpi_enum_literals_match_the_schema_enums() {
        use crate::kpi::lists::{CONGESTIONS, MEDIA, PERIODS, SCOPES, STATUSES};
        use ioc_schemas::{AqiBand, Department};
        assert_eq!(
            DEPARTMENT_ENUM,
            enum8(Department::ALL.map(Department::slug))
        );
        assert_eq!(AQI_BAND_ENUM, enum8(AqiBand::ALL.map(AqiBand::as_str)));
        assert_eq!(SCOPE_ENUM, enum8(SCOPES.map(serde_name)));
        assert_eq!(SCOPE_ENUM, enum8(SCOPES.map(ioc_schemas::Scope::as_str)));
        assert_eq!(CONGESTION_ENUM, enum8(CONGESTIONS.map(serde_name)));
        assert_eq!(AQI_PERIOD_ENUM, enum8(PERIODS.map(serde_name)));
        assert_eq!(MEDIUM_ENUM, enum8(MEDIA.map(serde_name)));
        assert_eq!(DEVICE_STATUS_ENUM, enum8(STATUSES.map(serde_name)));
    }

    #[test]
    fn migration_3_creates_the_kpi_tables_and_devices() {
        let ms = migrations("ioc").unwrap();
        let v3 = &ms[2];
        assert_eq!(v3.version, 3);
        for table in [
            "kpi_traffic",
            "kpi_camera",
            "kpi_aqi",
            "kpi_water",
            "kpi_hydrology",
            "kpi_bridge",
            "kpi_health",
            "devices",
        ] {
            let prefix = format!("CREATE TABLE IF NOT EXISTS ioc.{table} (");
            assert!(
                v3.statements.iter().any(|s| s.starts_with(&prefix)),
                "{table}"
            );
        }
        for s in &v3.statements {
            // Nothing 18.16 lacks.
            for absent in [
                "DateTime64",
                "LowCardinality",
                "TTL",
                "CODEC",
                "Map(",
                "JSON",
            ] {
                assert!(!s.contains(absent), "{absent} in {s}");
            }
        }
    }

    #[test]
    fn migrations_are_numbered_in_order_and_name_the_database() {
        let ms = migrations("ioc").unwrap();
        for (i, m) in ms.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            for s in &m.statements {
                assert!(
                    s.contains("IF NOT EXISTS ioc.")
                        || s.starts_with("DROP TABLE IF EXISTS ioc.latest_")
                        || added_column("ioc", s).is_some(),
                    "{s}"
                );
            }
        }
        assert_eq!(
            added_column(
                "ioc",
                "ALTER TABLE ioc.dead_letters ADD COLUMN payload_bytes UInt64"
            ),
            Some(("dead_letters", "payload_bytes"))
        );
        assert!(migrations("ioc.x").is_err());
        assert!(bootstrap_sql("x`y").is_err());
    }

    /// The enum literals are written out (a released migration never changes); they must
    /// still list the Rust names in order.
    #[test]
    fn alert_enum_literals_follow_the_rust_names() {
        let names = |all: Vec<String>| {
            all.iter()
                .enumerate()
                .map(|(i, n)| format!("'{n}' = {}", i + 1))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let inner = |e: &str| {
            e.trim_start_matches("Enum8(")
                .trim_end_matches(')')
                .replace("     ", " ")
        };
        assert_eq!(
            inner(CATEGORY_ENUM),
            names(
                Category::ALL
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect()
            )
        );
        assert_eq!(
            inner(SEVERITY_ENUM),
            names(
                Severity::ALL
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect()
            )
        );
        assert_eq!(
            inner(TRANSITION_ENUM),
            names(
                Transition::ALL
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect()
            )
        );
    }
}
