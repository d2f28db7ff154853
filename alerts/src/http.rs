//! What the REST routes of alerts ([`crate::api`]) and of webhooks share: who the caller is
//! and the department it is confined to, the answer to a query string a route cannot take,
//! and the schema of an id in a path. Errors are [`ApiError`], the JSON error answer of every
//! route of the API.

use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;
use axum::Extension;
use ioc_schemas::api_error::ApiError;
use ioc_schemas::query::query_problem;
use ioc_schemas::{Department, Principal};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

/// The caller, when access control put a principal in the request's extensions.
pub(crate) type Caller = Option<Extension<Principal>>;

/// The department a request is confined to: `Some` for a department token.
pub(crate) fn confined(caller: &Caller) -> Option<Department> {
    caller.as_ref().and_then(|Extension(p)| p.confined_to())
}

/// `403 forbidden`.
pub(crate) fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// The department filter of a listing for the caller: a department token gets its own (and
/// `403` when the query asks for another one); others get what they asked for.
pub(crate) fn scoped_department(
    caller: &Caller,
    asked: Option<Department>,
) -> Result<Option<Department>, ApiError> {
    match (confined(caller), asked) {
        (Some(own), Some(other)) if other != own => Err(forbidden(format!(
            "a {} token sees only its own department",
            own.slug()
        ))),
        (Some(own), _) => Ok(Some(own)),
        (None, asked) => Ok(asked),
    }
}

/// `400 invalid_query` for a query string the extractor refused, naming the parameter as
/// every route of the API does ([`ioc_schemas::query`]).
pub(crate) fn query_rejected(rejection: &QueryRejection) -> ApiError {
    ApiError::bad_query(query_problem(&rejection.body_text()))
}

/// The message of an error answer: the error and its causes, `: `-separated (each error
/// says what failed, its source why).
pub(crate) fn error_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A path parameter naming something by id: a string that is not empty (an empty segment
/// does not reach the handler).
#[derive(Debug)]
pub(crate) struct PathId;

impl JsonSchema for PathId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PathId".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "minLength": 1})
    }
}
