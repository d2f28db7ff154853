//! The error answer of every JSON HTTP API (the dashboard's and the webhooks'):
//! `{"error":{"code":"...","message":"...","field":"..."}}`, `field` only when one field or
//! query parameter is at fault. Behind the `http` feature, so crates without HTTP routes (the
//! alert engine, the dataflow) do not build axum.

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::query::QueryProblem;

/// An error answer: its status and what the body says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable, machine-readable code (`not_found`, `invalid_query`, ...).
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// The one field or query parameter at fault, if any.
    pub field: Option<Cow<'static, str>>,
}

/// The body of an error answer.
#[derive(Debug, Serialize)]
pub struct ErrorEnvelope<'a> {
    /// The error.
    pub error: ErrorDetail<'a>,
}

/// The `error` object of [`ErrorEnvelope`].
#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    /// [`ApiError::code`].
    pub code: &'a str,
    /// [`ApiError::message`].
    pub message: &'a str,
    /// [`ApiError::field`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
}

impl ApiError {
    /// An answer of `status` with `code` and `message`, no field named.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// Names the field or parameter at fault.
    pub fn with_field(mut self, field: impl Into<Cow<'static, str>>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// `404 not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// `503 unavailable`: a service behind the API cannot answer now; retry later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// `400 invalid_query` for a query string a route cannot take, naming the parameter
    /// ([`crate::query::query_problem`]).
    pub fn bad_query(problem: QueryProblem) -> Self {
        ApiError {
            field: problem.field.map(Cow::Owned),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", problem.message)
        }
    }

    /// The body, as it is sent.
    pub fn envelope(&self) -> ErrorEnvelope<'_> {
        ErrorEnvelope {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            // An error describes this moment, not the resource.
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            Json(self.envelope()),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_names_the_field_only_when_there_is_one() {
        let plain = ApiError::not_found("no device `x`");
        assert_eq!(
            serde_json::to_value(plain.envelope()).unwrap(),
            serde_json::json!({"error": {"code": "not_found", "message": "no device `x`"}})
        );
        let named = ApiError::bad_query(crate::query::query_problem(
            "limit: invalid digit found in string",
        ));
        assert_eq!(named.field.as_deref(), Some("limit"));
        assert_eq!(named.status, StatusCode::BAD_REQUEST);
        assert_eq!(named.envelope().error.field, Some("limit"));
    }
}
