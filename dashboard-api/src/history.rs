//! The history routes: `GET /api/v1/kpis/{family}` (KPI history by time range and entity)
//! and `GET /api/v1/dead-letters` (the newest rejected messages), each from the history
//! source (ClickHouse), or without one from what the live feed keeps in memory; the choice
//! between the two is [`from_store_or_memory`].

use std::future::Future;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use ioc_schemas::api_error::ApiError as HttpError;
use ioc_schemas::{
    now_ms, District, EpochMs, EventTime, Kpi, KpiFamily, RejectCode, Scope, Transport,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::dead_letters::{DeadLetterView, KEPT_IN_MEMORY};
use crate::error::chain;
use crate::extract::{bad_parameter, invalid_path, invalid_query, query_value};
use crate::source::{
    DeadLetterQuery, HistoryError, HistorySource, KpiHistoryQuery, DEAD_LETTERS_MAX_ROWS,
    KPI_HISTORY_MAX_ROWS,
};
use crate::state::ApiState;

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
// The name the OpenAPI document has always given it.
#[schemars(rename = "HistorySource")]
pub(crate) enum AnswerSource {
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
    source: AnswerSource,
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

fn parse_time(name: &'static str, text: &str) -> Result<EpochMs, HttpError> {
    let text = text.trim();
    EventTime::parse_ms_or_rfc3339(text)
        .map(|t| t.0)
        .map_err(|_| {
            bad_parameter(
                name,
                format!("{name}: `{text}` is neither RFC 3339 nor epoch milliseconds"),
            )
        })
}

/// Checks the parameters and fills the defaults.
fn history_query(family: KpiFamily, p: HistoryParams) -> Result<KpiHistoryQuery, HttpError> {
    let to_ms = match p.to.as_deref() {
        Some(t) if !t.trim().is_empty() => parse_time("to", t)?,
        _ => now_ms(),
    };
    let from_ms = match p.from.as_deref() {
        Some(t) if !t.trim().is_empty() => parse_time("from", t)?,
        _ => to_ms.saturating_sub(DEFAULT_RANGE_MS),
    };
    if from_ms >= to_ms {
        return Err(bad_parameter("from", "from must be before to"));
    }
    if to_ms - from_ms > MAX_RANGE_MS {
        return Err(bad_parameter(
            "from",
            "the range is longer than 31 days: ask in parts",
        ));
    }
    let district = query_value("district", p.district.as_deref(), District::from_slug)?;
    let scope = query_value("scope", p.scope.as_deref(), Scope::from_name)?;
    if scope.is_some() && !family.has_scope() {
        return Err(bad_parameter(
            "scope",
            format!(
                "scope: the {} family has no scope (traffic and health have)",
                family.as_str()
            ),
        ));
    }
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > KPI_HISTORY_MAX_ROWS {
        return Err(bad_parameter(
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
) -> Result<Json<History>, HttpError> {
    let Path(family) = family.map_err(|e| invalid_path(&e))?;
    let family = KpiFamily::from_name(&family).ok_or_else(|| {
        HttpError::not_found(format!(
            "no KPI family `{family}` (traffic, camera, air, water, hydrology, bridge, health)"
        ))
    })?;
    let Query(params) = params.map_err(|e| invalid_query(&e))?;
    let query = history_query(family, params)?;
    let (source, note, rows) = from_store_or_memory(
        &state,
        "kpi history",
        |source| source.kpi_history(&query),
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

/// Rows read by `read` from the history source (ClickHouse); or from memory (`from_memory`,
/// given why, answers the note and the rows) while none is configured, none is reached yet,
/// or it is unavailable for a reason that passes (down or overloaded: the live rows still
/// answer). `what` names the rows in logs, in the span of the read and in the answer to a
/// read the source refuses for good (`400` for the query, `503` otherwise).
pub(crate) async fn from_store_or_memory<'a, T, Fut>(
    state: &'a ApiState,
    what: &'static str,
    read: impl FnOnce(&'a dyn HistorySource) -> Fut,
    from_memory: impl FnOnce(String) -> (String, Vec<T>),
) -> Result<(AnswerSource, Option<String>, Vec<T>), HttpError>
where
    Fut: Future<Output = Result<Vec<T>, HistoryError>>,
{
    let memory = |why: String| {
        let (note, rows) = from_memory(why);
        (AnswerSource::Memory, Some(note), rows)
    };
    let Some(source) = state.history_source() else {
        let why = if state.history_source_expected() {
            "ClickHouse is not reached yet"
        } else {
            "no ClickHouse is configured"
        };
        return Ok(memory(why.to_owned()));
    };
    let span = tracing::info_span!("history_read", what);
    let error = match read(source).instrument(span).await {
        Ok(rows) => return Ok((AnswerSource::Clickhouse, None, rows)),
        Err(e) => e,
    };
    // Causes are sources, not repeated in the message: show the whole chain.
    let text = chain(&error);
    match error {
        HistoryError::Unavailable(_) => {
            tracing::warn!(error = %text, "{what} query failed; answering from memory");
            Ok(memory(format!("ClickHouse is unavailable ({text})")))
        }
        HistoryError::BadQuery(_) => {
            tracing::warn!(error = %text, "{what} query refused");
            Err(HttpError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("cannot read {what}: {text}"),
            ))
        }
        HistoryError::Failed(_) => {
            tracing::warn!(error = %text, "{what} query failed");
            Err(HttpError::unavailable(format!(
                "cannot read {what}: {text}"
            )))
        }
    }
}

/// Dead letters answered when the query names no `limit`.
const DEFAULT_DEAD_LETTERS: u32 = 100;

/// The query string of `GET /api/v1/dead-letters`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeadLetterParams {
    /// Only this rejection class, e.g. `malformed_json`.
    code: Option<String>,
    /// Only this transport: `mqtt` or `kafka`.
    transport: Option<String>,
    /// Only letters received before this time (RFC 3339 or epoch ms), to page back.
    before: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
}

/// The answer of `GET /api/v1/dead-letters`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct DeadLetters {
    /// Where the letters come from.
    source: AnswerSource,
    /// What the source means for the answer, when it is not the whole store.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    /// The letters, newest first.
    dead_letters: Vec<DeadLetterView>,
    /// `dead_letters.len()`.
    count: usize,
}

fn dead_letter_query(p: DeadLetterParams) -> Result<DeadLetterQuery, HttpError> {
    let code = query_value("code", p.code.as_deref(), |c| {
        RejectCode::ALL.into_iter().find(|k| k.as_str() == c)
    })?;
    let transport = query_value("transport", p.transport.as_deref(), |t| match t {
        "mqtt" => Some(Transport::Mqtt),
        "kafka" => Some(Transport::Kafka),
        _ => None,
    })?;
    let before_ms = query_value("before", p.before.as_deref(), |t| {
        EventTime::parse_ms_or_rfc3339(t).ok().map(|t| t.0)
    })?;
    let limit = p.limit.unwrap_or(DEFAULT_DEAD_LETTERS);
    if limit == 0 || limit > DEAD_LETTERS_MAX_ROWS {
        return Err(bad_parameter(
            "limit",
            format!("limit must be 1 to {DEAD_LETTERS_MAX_ROWS}"),
        ));
    }
    Ok(DeadLetterQuery {
        code,
        transport,
        before_ms,
        limit,
    })
}

/// `GET /api/v1/dead-letters`.
pub(crate) async fn dead_letters(
    State(state): State<ApiState>,
    params: Result<Query<DeadLetterParams>, QueryRejection>,
) -> Result<Json<DeadLetters>, HttpError> {
    let Query(params) = params.map_err(|e| invalid_query(&e))?;
    let query = dead_letter_query(params)?;
    let (source, note, letters) = from_store_or_memory(
        &state,
        "dead letters",
        |source| async move {
            let letters = source.dead_letters(&query).await?;
            Ok(letters.iter().map(DeadLetterView::from).collect())
        },
        |why| {
            let note = format!(
                "{why}: only the newest {KEPT_IN_MEMORY} letters this process rejected since it \
                 started are kept"
            );
            (note, state.feed().recent_dead_letters().query(&query))
        },
    )
    .await?;
    Ok(Json(DeadLetters {
        source,
        note,
        count: letters.len(),
        dead_letters: letters,
    }))
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

    #[test]
    fn bad_dead_letter_parameters_name_their_field() {
        let bad = |p: DeadLetterParams| dead_letter_query(p).unwrap_err().field;
        let p = || DeadLetterParams::default();
        assert_eq!(
            bad(DeadLetterParams {
                code: Some("nope".into()),
                ..p()
            }),
            Some("code".into())
        );
        assert_eq!(
            bad(DeadLetterParams {
                transport: Some("amqp".into()),
                ..p()
            }),
            Some("transport".into())
        );
        assert_eq!(
            bad(DeadLetterParams {
                before: Some("yesterday".into()),
                ..p()
            }),
            Some("before".into())
        );
        assert_eq!(
            bad(DeadLetterParams {
                limit: Some(1001),
                ..p()
            }),
            Some("limit".into())
        );
        let q = dead_letter_query(DeadLetterParams {
            code: Some("payload_too_large".into()),
            before: Some("2026-12-06T00:00:00Z".into()),
            ..p()
        })
        .unwrap();
        assert_eq!(q.code, Some(RejectCode::PayloadTooLarge));
        assert_eq!(q.before_ms, Some(1_796_515_200_000));
        assert_eq!(q.limit, DEFAULT_DEAD_LETTERS);
    }
}
