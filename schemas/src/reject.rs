//! Why an input was rejected: a stable code for queries plus a sentence for people.

use serde::{Deserialize, Serialize};

/// The class of a rejection. Stored in the dead-letters table as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The payload is not UTF-8.
    InvalidUtf8,
    /// The payload is not well-formed JSON.
    MalformedJson,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A field the schema does not know.
    UnknownField,
    /// The `kind` names no known reading kind.
    UnknownKind,
    /// A value is outside its allowed range or format.
    OutOfRange,
    /// The event time is too far ahead of the receiver's clock.
    FutureEventTime,
    /// The topic or key does not agree with the payload, or is not of the documented form.
    SourceMismatch,
    /// The payload is larger than the configured limit.
    PayloadTooLarge,
}

impl RejectCode {
    /// Every code, in a stable order (also the order of the ClickHouse `Enum8` values).
    pub const ALL: [RejectCode; 10] = [
        RejectCode::InvalidUtf8,
        RejectCode::MalformedJson,
        RejectCode::MissingField,
        RejectCode::WrongType,
        RejectCode::UnknownField,
        RejectCode::UnknownKind,
        RejectCode::OutOfRange,
        RejectCode::FutureEventTime,
        RejectCode::SourceMismatch,
        RejectCode::PayloadTooLarge,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::InvalidUtf8 => "invalid_utf8",
            RejectCode::MalformedJson => "malformed_json",
            RejectCode::MissingField => "missing_field",
            RejectCode::WrongType => "wrong_type",
            RejectCode::UnknownField => "unknown_field",
            RejectCode::UnknownKind => "unknown_kind",
            RejectCode::OutOfRange => "out_of_range",
            RejectCode::FutureEventTime => "future_event_time",
            RejectCode::SourceMismatch => "source_mismatch",
            RejectCode::PayloadTooLarge => "payload_too_large",
        }
    }
}

impl std::fmt::Display for RejectCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected input's reason. Rejections are permanent: the same bytes fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct Rejection {
    /// The class of the problem.
    pub code: RejectCode,
    /// What exactly is wrong, naming the field.
    pub detail: String,
}

impl Rejection {
    /// A rejection of the given class.
    pub fn new(code: RejectCode, detail: impl Into<String>) -> Rejection {
        Rejection {
            code,
            detail: detail.into(),
        }
    }
}
