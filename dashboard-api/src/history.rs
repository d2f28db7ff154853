//! `GET /api/v1/kpis/{family}`: KPI history by time range and entity, from ClickHouse, or
//! without one from the recent rows kept in memory.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use ioc_schemas::{now_ms, District, EpochMs, EventTime, Kpi, KpiFamily, Scope};
use ioc_store::{has_scope, KpiHistoryQuery, KPI_HISTORY_MAX_ROWS};
use prometheus::IntCounter;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rest::{invalid_query, query_value, RestError};
use crate::ApiState;

/// The longest range one request may ask for.
const MAX_RANGE_MS: u64 = 31 * 24 * 3_600_000;
const DEFAULT_RANGE_MS: u64 = 24 * 3_600_000;
const DEFAULT_LIMIT: u32 = 1_000;

/// The query string of `GET /api/v1/kpis/{family}`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryParams {
    /// Window starts from this time (inclusive): RFC 3339 or epoch ms. Default: 24 hours
    /// before `to`.
    from: Option<String>,
    /// Window starts before this time (exclusive): RFC 3339 or epoch ms. Default: now.
    to: Option<String>,
    /// Only this entity: a junction, station, gauge, bridge or device id; for district,
    /// department or city rows the district or department slug or `da_nang`; for camera rows
    /// the event type.
    entity: Option<String>,
    /// Only rows of this district (slug, e.g. `hai_chau`).
    #[schemars(with = "Option<District>")]
    district: Option<String>,
    /// Only rows of this scope: `device`, `district`, `department` or `city` (traffic and
    /// health only).
    #[schemars(with = "Option<Scope>")]
    scope: Option<String>,
    /// Only windows of this size in ms, e.g. `300000` for the 5-minute windows.
    window_size_ms: Option<u64>,
    /// At most this many rows (default 1000, at most 10000).
    limit: Option<u32>,
}

/// Where an answer's rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HistorySource {
    /// The KPI tables in ClickHouse: everything stored.
    Clickhouse,
    /// No ClickHouse is configured: the rows this process computed since it started, at
    /// most `http.history_memory_rows` per family.
    Memory,
}

/// The answer of `GET /api/v1/kpis/{family}`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct History {
    /// The family asked for.
    family: KpiFamily,
    /// The range's start, epoch ms.
    from_ms: EpochMs,
    /// The range's end (exclusive), epoch ms.
    to_ms: EpochMs,
    /// Where the rows come from.
    source: HistorySource,
    /// What the source means for the answer, when it is not the whole store.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    /// The rows, oldest window first: the newest version of each KPI row, as the WebSocket
    /// pushes them (`kpi.schema.json`).
    rows: Vec<Kpi>,
    /// `rows.len()`.
    count: usize,
    /// Whether the limit cut the answer short (ask again from the last row's window).
    truncated: bool,
}

fn parse_time(name: &'static str, text: &str) -> Result<EpochMs, RestError> {
    let text = text.trim();
    EventTime::parse_ms_or_rfc3339(text)
        .map(|t| t.0)
        .map_err(|_| {
            RestError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("{name}: `{text}` is neither RFC 3339 nor epoch milliseconds"),
            )
            .with_field(name)
        })
}

fn bad(field: &'static str, message: String) -> RestError {
    RestError::new(StatusCode::BAD_REQUEST, "invalid_query", message).with_field(field)
}

/// Checks the parameters and fills the defaults.
fn history_query(family: KpiFamily, p: HistoryParams) -> Result<KpiHistoryQuery, RestError> {
    let to_ms = match p.to.as_deref() {
        Some(t) if !t.trim().is_empty() => parse_time("to", t)?,
        _ => now_ms(),
    };
    let from_ms = match p.from.as_deref() {
        Some(t) if !t.trim().is_empty() => parse_time("from", t)?,
        _ => to_ms.saturating_sub(DEFAULT_RANGE_MS),
    };
    if from_ms >= to_ms {
        return Err(bad("from", "from must be before to".to_owned()));
    }
    if to_ms - from_ms > MAX_RANGE_MS {
        return Err(bad(
            "from",
            "the range is longer than 31 days: ask in parts".to_owned(),
        ));
    }
    let district = query_value("district", p.district.as_deref(), District::from_slug)?;
    let scope = query_value("scope", p.scope.as_deref(), Scope::from_name)?;
    if scope.is_some() && !has_scope(family) {
        return Err(bad(
            "scope",
            format!(
                "scope: the {} family has no scope (traffic and health have)",
                family.as_str()
            ),
        ));
    }
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > KPI_HISTORY_MAX_ROWS {
        return Err(bad(
            "limit",
            format!("limit must be 1 to {KPI_HISTORY_MAX_ROWS}"),
        ));
    }
    Ok(KpiHistoryQuery {
        family,
        from_ms,
        to_ms,
        entity: p.entity.filter(|e| !e.trim().is_empty()),
        district,
        scope,
        window_size_ms: p.window_size_ms,
        limit,
    })
}

pub(crate) async fn kpi_history(
    State(state): State<ApiState>,
    family: Result<Path<String>, PathRejection>,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Json<History>, RestError> {
    let Path(family) = family
        .map_err(|e| RestError::new(StatusCode::BAD_REQUEST, "invalid_path", e.body_text()))?;
    let family = KpiFamily::from_name(&family).ok_or_else(|| {
        RestError::not_found(format!(
            "no KPI family `{family}` (traffic, camera, air, water, hydrology, bridge, health)"
        ))
    })?;
    let Query(params) = params.map_err(|e| invalid_query(&e))?;
    let query = history_query(family, params)?;
    let (source, note, rows) = from_store_or_memory(
        &state,
        "kpi history",
        |store| store.kpi_history(&query),
        |why| {
            let recent = state.feed().recent();
            let note = format!(
                "{why}: only the rows computed since this process started, at most {} per \
                 family, are kept",
                recent.max_per_family()
            );
            (note, recent.query(&query))
        },
    )
    .await?;
    Ok(Json(History {
        family,
        from_ms: query.from_ms,
        to_ms: query.to_ms,
        source,
        note,
        count: rows.len(),
        truncated: rows.len() >= query.limit as usize,
        rows,
    }))
}

/// Rows read by `read` from ClickHouse; or from memory (`from_memory`, given why, answers the
/// note and the rows) while none is configured, none is reached yet, or it fails for a reason
/// that passes (down or overloaded: the live rows still answer). `what` names the rows in
/// logs and in the 503 of a query ClickHouse refuses for good.
pub(crate) async fn from_store_or_memory<'a, T, Fut>(
    state: &'a ApiState,
    what: &str,
    read: impl FnOnce(&'a ioc_store::Store) -> Fut,
    from_memory: impl FnOnce(String) -> (String, Vec<T>),
) -> Result<(HistorySource, Option<String>, Vec<T>), RestError>
where
    Fut: std::future::Future<Output = Result<Vec<T>, ioc_store::StoreError>>,
{
    let memory = |why: String| {
        let (note, rows) = from_memory(why);
        (HistorySource::Memory, Some(note), rows)
    };
    Ok(match state.history_store() {
        Some(store) => match read(store).await {
            Ok(rows) => (HistorySource::Clickhouse, None, rows),
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "{what} query failed; answering from memory");
                memory(format!("ClickHouse is unavailable ({e})"))
            }
            Err(e) => {
                tracing::warn!(error = %e, "{what} query failed");
                return Err(RestError::unavailable(format!("cannot read {what}: {e}")));
            }
        },
        None if state.history_store_expected() => memory("ClickHouse is not reached yet".into()),
        None => memory("no ClickHouse is configured".into()),
    })
}

/// Where a row sits in the in-memory history: by window start first, as the answers are
/// ordered, then by what makes it one row (a camera's event type, a water parameter).
type RowKey = (EpochMs, String, u64, String);

fn row_key(kpi: &Kpi) -> RowKey {
    (
        kpi.window_start_ms(),
        kpi.entity_id().to_owned(),
        kpi.window_size_ms(),
        kpi.row_part().to_owned(),
    )
}

/// The newest KPI rows, per family, for history without ClickHouse. Bounded: a family over
/// `max_per_family` rows drops its oldest window's rows first, counted in
/// `ioc_api_history_memory_evicted_total`. A newer version of a row replaces the older.
#[derive(Debug)]
pub(crate) struct RecentKpis {
    max_per_family: AtomicUsize,
    families: Mutex<BTreeMap<KpiFamily, BTreeMap<RowKey, Arc<Kpi>>>>,
    evicted: IntCounter,
}

impl RecentKpis {
    /// Keeps at most `max_per_family` rows per family (0: none).
    pub(crate) fn new(max_per_family: usize, evicted: IntCounter) -> Self {
        RecentKpis {
            max_per_family: AtomicUsize::new(max_per_family),
            families: Mutex::default(),
            evicted,
        }
    }

    pub(crate) fn max_per_family(&self) -> usize {
        self.max_per_family.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<KpiFamily, BTreeMap<RowKey, Arc<Kpi>>>> {
        // Every change leaves the maps consistent: a panic elsewhere does not spoil them.
        self.families.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn record(&self, kpi: &Arc<Kpi>) {
        let max = self.max_per_family();
        if max == 0 {
            return;
        }
        let mut families = self.lock();
        let rows = families.entry(kpi.family()).or_default();
        rows.insert(row_key(kpi), Arc::clone(kpi));
        while rows.len() > max {
            rows.pop_first();
            self.evicted.inc();
        }
    }

    /// The rows matching `query`, as [`ioc_store::Store::kpi_history`] answers them.
    pub(crate) fn query(&self, query: &KpiHistoryQuery) -> Vec<Kpi> {
        let families = self.lock();
        let Some(rows) = families.get(&query.family) else {
            return Vec::new();
        };
        let from = (query.from_ms, String::new(), 0, String::new());
        rows.range(from..)
            .map(|(_, kpi)| kpi)
            .take_while(|kpi| kpi.window_start_ms() < query.to_ms)
            .filter(|kpi| {
                query.entity.as_deref().is_none_or(|e| kpi.entity_id() == e)
                    && query.district.is_none_or(|d| kpi.district() == Some(d))
                    && query.scope.is_none_or(|s| kpi.scope() == Some(s))
                    && query
                        .window_size_ms
                        .is_none_or(|size| kpi.window_size_ms() == size)
            })
            .take(query.limit as usize)
            .map(|kpi| Kpi::clone(kpi))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HistoryParams {
        let q: String = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let uri: axum::http::Uri = format!("/x?{q}").parse().unwrap();
        Query::<HistoryParams>::try_from_uri(&uri).unwrap().0
    }

    #[test]
    fn defaults_are_the_last_day_and_a_thousand_rows() {
        let q = history_query(KpiFamily::Air, HistoryParams::default()).unwrap();
        assert_eq!(q.to_ms - q.from_ms, DEFAULT_RANGE_MS);
        assert_eq!(q.limit, DEFAULT_LIMIT);
        assert_eq!((q.entity, q.district, q.scope), (None, None, None));
    }

    #[test]
    fn times_are_rfc3339_or_epoch_ms() {
        let q = history_query(
            KpiFamily::Traffic,
            params(&[
                ("from", "2026-11-28T07:00:00%2B07:00"),
                ("to", "1795827600000"),
                ("scope", "district"),
                ("district", "hai_chau"),
                ("entity", "hai_chau"),
            ]),
        )
        .unwrap();
        assert_eq!(q.from_ms, 1_795_824_000_000);
        assert_eq!(q.to_ms, 1_795_827_600_000);
        assert_eq!(q.scope, Some(Scope::District));
        assert_eq!(q.district, Some(District::HaiChau));
        assert_eq!(q.entity.as_deref(), Some("hai_chau"));
    }

    #[test]
    fn bad_parameters_name_their_field() {
        let field = |family, pairs: &[(&str, &str)]| {
            history_query(family, params(pairs)).unwrap_err().field
        };
        assert_eq!(
            field(KpiFamily::Air, &[("from", "yesterday")]).as_deref(),
            Some("from")
        );
        assert_eq!(
            field(KpiFamily::Air, &[("from", "20"), ("to", "10")]).as_deref(),
            Some("from")
        );
        assert_eq!(
            field(KpiFamily::Air, &[("from", "0"), ("to", "99999999999")]).as_deref(),
            Some("from")
        );
        assert_eq!(
            field(KpiFamily::Air, &[("scope", "city")]).as_deref(),
            Some("scope")
        );
        assert_eq!(
            field(KpiFamily::Health, &[("scope", "planet")]).as_deref(),
            Some("scope")
        );
        assert_eq!(
            field(KpiFamily::Air, &[("district", "hanoi")]).as_deref(),
            Some("district")
        );
        assert_eq!(
            field(KpiFamily::Air, &[("limit", "0")]).as_deref(),
            Some("limit")
        );
        assert_eq!(
            field(KpiFamily::Air, &[("limit", "10001")]).as_deref(),
            Some("limit")
        );
    }
}
