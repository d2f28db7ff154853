//! Dead letters for operators: `GET /api/v1/dead-letters` (from ClickHouse, or without one
//! from the newest letters kept in memory) and the WebSocket's `dead_letters` channel.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use ioc_schemas::{DeadLetter, EpochMs, EventTime, RejectCode, Transport};
use ioc_store::{DeadLetterQuery, DEAD_LETTERS_MAX_ROWS};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::history::{from_store_or_memory, HistorySource};
use crate::rest::{invalid_query, query_value, RestError};
use crate::ApiState;

/// Dead letters kept in memory for the API and the WebSocket snapshot.
pub(crate) const KEPT_IN_MEMORY: usize = 1_000;
/// Bytes of a payload shown (the stored letter keeps up to [`DeadLetter::KEPT_BYTES`]).
const SHOWN_BYTES: usize = 256;
const DEFAULT_LIMIT: u32 = 100;

/// A rejected message as an operator sees it (`dead_letter` on the WebSocket, the rows of
/// `GET /api/v1/dead-letters`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeadLetterView {
    /// When it was received, epoch ms.
    pub received_at_ms: EpochMs,
    /// `mqtt` or `kafka`.
    pub transport: String,
    /// The MQTT topic, or the Kafka topic/partition@offset.
    pub source: String,
    /// The rejection's class (`malformed_json`, `missing_field`, ...; see the README).
    pub code: String,
    /// What exactly is wrong, naming the field.
    pub reason: String,
    /// The whole payload's size in bytes.
    pub payload_bytes: u64,
    /// The payload's first bytes as text (bytes that are not UTF-8 as U+FFFD).
    pub first_bytes: String,
    /// Whether `first_bytes` is less than the whole payload.
    pub truncated: bool,
}

impl From<&DeadLetter> for DeadLetterView {
    fn from(d: &DeadLetter) -> Self {
        let shown = &d.payload[..d.payload.len().min(SHOWN_BYTES)];
        DeadLetterView {
            received_at_ms: d.received_at_ms,
            transport: d.transport.as_str().to_owned(),
            source: d.source.clone(),
            code: d.rejection.code.as_str().to_owned(),
            reason: d.rejection.detail.clone(),
            payload_bytes: d.payload_bytes,
            first_bytes: String::from_utf8_lossy(shown).into_owned(),
            truncated: (shown.len() as u64) < d.payload_bytes,
        }
    }
}

/// The newest dead letters, at most [`KEPT_IN_MEMORY`], oldest first.
#[derive(Debug, Default)]
pub(crate) struct RecentDeadLetters {
    letters: Mutex<VecDeque<Arc<DeadLetterView>>>,
}

impl RecentDeadLetters {
    pub(crate) fn record(&self, view: &Arc<DeadLetterView>) {
        let mut letters = self.letters.lock().unwrap_or_else(PoisonError::into_inner);
        if letters.len() >= KEPT_IN_MEMORY {
            letters.pop_front();
        }
        letters.push_back(Arc::clone(view));
    }

    /// The newest letters matching `query`, newest first.
    pub(crate) fn query(&self, query: &DeadLetterQuery) -> Vec<DeadLetterView> {
        let letters = self.letters.lock().unwrap_or_else(PoisonError::into_inner);
        letters
            .iter()
            .rev()
            .filter(|view| {
                query.code.is_none_or(|c| view.code == c.as_str())
                    && query.transport.is_none_or(|t| view.transport == t.as_str())
                    && query.before_ms.is_none_or(|b| view.received_at_ms < b)
            })
            .take(query.limit as usize)
            .map(|view| view.as_ref().clone())
            .collect()
    }

    /// The newest `n` letters, oldest first (for a WebSocket snapshot).
    pub(crate) fn newest(&self, n: usize) -> Vec<Arc<DeadLetterView>> {
        let letters = self.letters.lock().unwrap_or_else(PoisonError::into_inner);
        let skip = letters.len().saturating_sub(n);
        letters.iter().skip(skip).cloned().collect()
    }
}

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
    source: HistorySource,
    /// What the source means for the answer, when it is not the whole store.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    /// The letters, newest first.
    dead_letters: Vec<DeadLetterView>,
    /// `dead_letters.len()`.
    count: usize,
}

fn dead_letter_query(p: DeadLetterParams) -> Result<DeadLetterQuery, RestError> {
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
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > DEAD_LETTERS_MAX_ROWS {
        return Err(RestError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit must be 1 to {DEAD_LETTERS_MAX_ROWS}"),
        )
        .with_field("limit"));
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
) -> Result<Json<DeadLetters>, RestError> {
    let Query(params) = params.map_err(|e| invalid_query(&e))?;
    let query = dead_letter_query(params)?;
    let (source, note, letters) = from_store_or_memory(
        &state,
        "dead letters",
        |store| async move {
            let letters = store.dead_letters(&query).await?;
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
    use ioc_schemas::Rejection;

    fn letter(at: u64, code: RejectCode, transport: Transport, payload: &[u8]) -> DeadLetter {
        DeadLetter::new(
            at,
            transport,
            "ioc/v1/sensor/hai_chau/x".into(),
            payload,
            Rejection::new(code, "why"),
        )
    }

    #[test]
    fn a_view_shows_the_first_bytes_as_text() {
        let long = [b'a'; 300];
        let view =
            DeadLetterView::from(&letter(1, RejectCode::OutOfRange, Transport::Kafka, &long));
        assert_eq!(view.first_bytes.len(), SHOWN_BYTES);
        assert!(view.truncated);
        assert_eq!(
            (view.code.as_str(), view.transport.as_str()),
            ("out_of_range", "kafka")
        );
        let view = DeadLetterView::from(&letter(
            1,
            RejectCode::InvalidUtf8,
            Transport::Mqtt,
            b"\xff{",
        ));
        assert_eq!(view.first_bytes, "\u{fffd}{");
        assert!(!view.truncated);
    }

    #[test]
    fn memory_keeps_the_newest_and_filters() {
        let recent = RecentDeadLetters::default();
        for i in 0..(KEPT_IN_MEMORY as u64 + 5) {
            let (code, transport) = if i % 2 == 0 {
                (RejectCode::MalformedJson, Transport::Mqtt)
            } else {
                (RejectCode::MissingField, Transport::Kafka)
            };
            let l = letter(i, code, transport, b"x");
            recent.record(&Arc::new(DeadLetterView::from(&l)));
        }
        let all = DeadLetterQuery {
            code: None,
            transport: None,
            before_ms: None,
            limit: DEAD_LETTERS_MAX_ROWS,
        };
        let got = recent.query(&all);
        assert_eq!(got.len(), KEPT_IN_MEMORY);
        assert_eq!(
            got[0].received_at_ms,
            KEPT_IN_MEMORY as u64 + 4,
            "newest first"
        );
        let kafka = recent.query(&DeadLetterQuery {
            transport: Some(Transport::Kafka),
            before_ms: Some(100),
            limit: 3,
            ..all
        });
        assert_eq!(
            kafka.iter().map(|v| v.received_at_ms).collect::<Vec<_>>(),
            [99, 97, 95]
        );
        assert!(kafka.iter().all(|v| v.code == "missing_field"));
        let newest = recent.newest(2);
        assert_eq!(
            newest.iter().map(|v| v.received_at_ms).collect::<Vec<_>>(),
            [KEPT_IN_MEMORY as u64 + 3, KEPT_IN_MEMORY as u64 + 4]
        );
    }

    #[test]
    fn bad_parameters_name_their_field() {
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
        assert_eq!(q.limit, DEFAULT_LIMIT);
    }
}
