//! Dead letters as operators see them ([`DeadLetterView`], on the WebSocket's `dead_letters`
//! channel and in `GET /api/v1/dead-letters`), and the newest kept in memory for both.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use ioc_schemas::{DeadLetter, EpochMs};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::source::DeadLetterQuery;

/// Dead letters kept in memory for the API and the WebSocket snapshot.
pub(crate) const KEPT_IN_MEMORY: usize = 1_000;
/// Bytes of a payload shown (the stored letter keeps up to [`DeadLetter::KEPT_BYTES`]).
const SHOWN_BYTES: usize = 256;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::DEAD_LETTERS_MAX_ROWS;
    use ioc_schemas::{RejectCode, Rejection, Transport};

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
}
