//! KPI history for the API: the stored rows of one KPI family over a time range, read back
//! into the [`Kpi`] values that were written (the same JSON the WebSocket pushes).

use ioc_schemas::{District, Kpi, KpiFamily, Scope};
use serde_json::{Map, Value};

use crate::{Store, StoreError};

/// Rows answered at most, whatever the caller asks: a bound on the memory one request takes.
pub const KPI_HISTORY_MAX_ROWS: u32 = 10_000;

/// Which rows of a family to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpiHistoryQuery {
    /// The family (one table each).
    pub family: KpiFamily,
    /// Window starts from here (epoch ms, inclusive)...
    pub from_ms: u64,
    /// ...to here (exclusive).
    pub to_ms: u64,
    /// Only this entity ([`Kpi::entity_id`]): the junction, station, gauge, bridge or device
    /// id, or for aggregate rows the district or department slug or `da_nang` (camera rows
    /// are per district).
    pub entity: Option<String>,
    /// Only rows of this district.
    pub district: Option<District>,
    /// Only rows of this scope (traffic and health, the families with aggregates).
    pub scope: Option<Scope>,
    /// Only windows of this size (ms), e.g. 300000 for the 5-minute ones.
    pub window_size_ms: Option<u64>,
    /// At most this many rows (capped at [`KPI_HISTORY_MAX_ROWS`]).
    pub limit: u32,
}

/// The table of a family and the column [`KpiHistoryQuery::entity`] matches.
pub fn kpi_table(family: KpiFamily) -> (&'static str, &'static str) {
    match family {
        KpiFamily::Traffic => ("kpi_traffic", "entity_id"),
        KpiFamily::Camera => ("kpi_camera", "district"),
        KpiFamily::Air => ("kpi_aqi", "station_id"),
        KpiFamily::Water => ("kpi_water", "station_id"),
        KpiFamily::Hydrology => ("kpi_hydrology", "gauge_id"),
        KpiFamily::Bridge => ("kpi_bridge", "device_id"),
        KpiFamily::Health => ("kpi_health", "entity_id"),
    }
}

impl Store {
    /// The newest version of each row matching `query`, oldest window first. Fails with
    /// [`StoreError::Config`] when `scope` is asked of a family without one, and with
    /// [`StoreError::Json`] on a row this version cannot read.
    pub async fn kpi_history(&self, query: &KpiHistoryQuery) -> Result<Vec<Kpi>, StoreError> {
        if query.scope.is_some() && !query.family.has_scope() {
            return Err(StoreError::Config(format!(
                "the {} family has no scope",
                query.family.as_str()
            )));
        }
        if query.from_ms >= query.to_ms || query.limit == 0 {
            return Ok(Vec::new());
        }
        let (table, entity_column) = kpi_table(query.family);
        let mut sql = format!(
            "SELECT * FROM {table} FINAL WHERE window_start_ms >= ? AND window_start_ms < ?"
        );
        if query.entity.is_some() {
            // Camera rows are per district, an Enum8: any other text must match nothing, not
            // fail the query.
            let column = match query.family {
                KpiFamily::Camera => format!("toString({entity_column})"),
                _ => entity_column.to_owned(),
            };
            sql.push_str(&format!(" AND {column} = ?"));
        }
        if query.district.is_some() {
            sql.push_str(" AND district = ?");
        }
        if query.scope.is_some() {
            sql.push_str(" AND scope = ?");
        }
        if query.window_size_ms.is_some() {
            sql.push_str(" AND window_size_ms = ?");
        }
        sql.push_str(&format!(
            " ORDER BY window_start_ms, {entity_column} LIMIT ?"
        ));
        let mut q = self
            .client()
            .query(&sql)
            .bind(query.from_ms)
            .bind(query.to_ms);
        if let Some(entity) = &query.entity {
            q = q.bind(entity.as_str());
        }
        if let Some(district) = query.district {
            q = q.bind(district.slug());
        }
        if let Some(scope) = query.scope {
            q = q.bind(scope.as_str());
        }
        if let Some(size) = query.window_size_ms {
            q = q.bind(size);
        }
        let context = || format!("reading {table}");
        let mut cursor = q
            .bind(query.limit.min(KPI_HISTORY_MAX_ROWS))
            // Numbers as JSON numbers, not strings (ClickHouse quotes 64-bit integers).
            .with_setting("output_format_json_quote_64bit_integers", "0")
            .fetch_bytes("JSONEachRow")
            .map_err(|e| StoreError::clickhouse(context(), e))?;
        let mut body = Vec::new();
        while let Some(chunk) = cursor
            .next()
            .await
            .map_err(|e| StoreError::clickhouse(context(), e))?
        {
            body.extend_from_slice(&chunk);
        }
        body.split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                serde_json::from_slice(line)
                    .and_then(|row| kpi_of_row(query.family, row))
                    .map_err(|source| StoreError::Json { table, source })
            })
            .collect()
    }
}

/// A KPI table's row (as `JSONEachRow` renders it) as the [`Kpi`] it was written from: the
/// columns are the struct's fields, plus the `DateTime` copies of the window for analysts,
/// with booleans as `UInt8`.
fn kpi_of_row(family: KpiFamily, mut row: Map<String, Value>) -> Result<Kpi, serde_json::Error> {
    row.remove("window_start");
    row.remove("window_end");
    if let Some(flag) = row.get_mut("exceeded") {
        *flag = Value::Bool(flag.as_u64().is_some_and(|v| v != 0));
    }
    row.insert("family".into(), Value::from(family.as_str()));
    let mut kpi = serde_json::from_value(Value::Object(row))?;
    // Not stored: the advice follows from the band.
    if let Kpi::Air(air) = &mut kpi {
        air.advice = air.band.map(|b| b.advice());
    }
    Ok(kpi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_water_row_reads_back_with_its_flag() {
        let row = serde_json::json!({
            "station_id": "wq-han", "district": "hai_chau", "medium": "river_water",
            "window_start": "2026-11-28 00:00:00", "window_start_ms": 1795798800000u64,
            "window_end": "2026-11-28 00:05:00", "window_size_ms": 300000,
            "parameter": "nh4", "value": 1.2, "limit_min": null, "limit_max": 0.9,
            "standard": "QCVN 08-MT:2015 B1", "exceeded": 1
        });
        let Value::Object(row) = row else {
            unreachable!()
        };
        let Kpi::Water(water) = kpi_of_row(KpiFamily::Water, row).unwrap() else {
            panic!("not water")
        };
        assert!(water.exceeded);
        assert_eq!(water.limit_max, Some(0.9));
        let bad = Map::from_iter([("station_id".to_owned(), Value::from(1))]);
        assert!(kpi_of_row(KpiFamily::Water, bad).is_err());
    }
}

/// Dead letters answered at most by one query.
pub const DEAD_LETTERS_MAX_ROWS: u32 = 1_000;

/// Which dead letters to read: the newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterQuery {
    /// Only this rejection class.
    pub code: Option<ioc_schemas::RejectCode>,
    /// Only this transport.
    pub transport: Option<ioc_schemas::Transport>,
    /// Only letters received before this (epoch ms, exclusive), to page back.
    pub before_ms: Option<u64>,
    /// At most this many (capped at [`DEAD_LETTERS_MAX_ROWS`]).
    pub limit: u32,
}

impl Store {
    /// The newest dead letters matching `query`, newest first, as they were rejected.
    pub async fn dead_letters(
        &self,
        query: &DeadLetterQuery,
    ) -> Result<Vec<ioc_schemas::DeadLetter>, StoreError> {
        let mut sql = "SELECT ?fields FROM dead_letters WHERE 1".to_owned();
        if query.code.is_some() {
            sql.push_str(" AND code = ?");
        }
        if query.transport.is_some() {
            sql.push_str(" AND transport = ?");
        }
        if query.before_ms.is_some() {
            sql.push_str(" AND received_at_ms < ?");
        }
        sql.push_str(" ORDER BY received_at_ms DESC LIMIT ?");
        let mut q = self.client().query(&sql);
        if let Some(code) = query.code {
            q = q.bind(code.as_str());
        }
        if let Some(transport) = query.transport {
            q = q.bind(transport.as_str());
        }
        if let Some(before) = query.before_ms {
            q = q.bind(before);
        }
        let rows: Vec<crate::DeadLetterRow> = q
            .bind(query.limit.min(DEAD_LETTERS_MAX_ROWS))
            .fetch_all()
            .await
            .map_err(|e| StoreError::clickhouse("reading dead_letters", e))?;
        rows.into_iter()
            .map(|row| {
                row.into_dead_letter().map_err(|reason| StoreError::Decode {
                    table: "dead_letters",
                    reason,
                })
            })
            .collect()
    }
}
