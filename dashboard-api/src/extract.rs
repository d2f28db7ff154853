//! What every route takes from a request, refused the same way everywhere: a JSON body
//! ([`JsonBody`]), query values and path segments, each refusal a JSON
//! [`HttpError`] naming the field at fault.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::Json;
use ioc_schemas::api_error::ApiError as HttpError;
use serde::de::DeserializeOwned;

/// A JSON request body of a type that names its error code.
pub(crate) trait ApiBody: DeserializeOwned {
    /// The error code of a body that is not a valid `Self`.
    const INVALID: &'static str;
    /// What it is, for messages.
    const WHAT: &'static str;
}

/// Like [`axum::Json`], but every refusal is a JSON [`HttpError`]: 415 without a JSON
/// content type, 413 over `http.max_body_bytes`, 400 for a body that is not JSON or not a
/// valid `T` (the message names the field, from the serde path).
pub(crate) struct JsonBody<T>(pub T);

impl<T: ApiBody, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(body_error::<T>(rejection)),
        }
    }
}

fn body_error<T: ApiBody>(rejection: JsonRejection) -> HttpError {
    let what = T::WHAT;
    match rejection {
        JsonRejection::JsonDataError(e) => {
            // axum's text is "<summary>: <path>: <serde message>"; keep what follows the
            // summary.
            let text = e.body_text();
            let detail = text.split_once(": ").map_or(text.as_str(), |(_, d)| d);
            let error = HttpError::new(
                StatusCode::BAD_REQUEST,
                T::INVALID,
                format!("invalid {what}: {detail}"),
            );
            match field_of(detail) {
                Some(field) => error.with_field(field),
                None => error,
            }
        }
        JsonRejection::JsonSyntaxError(e) => {
            let text = e.body_text();
            let detail = text.split_once(": ").map_or(text.as_str(), |(_, d)| d);
            HttpError::new(
                StatusCode::BAD_REQUEST,
                T::INVALID,
                format!("invalid {what}: the body is not json: {detail}"),
            )
        }
        JsonRejection::MissingJsonContentType(_) => HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as json, with `content-type: application/json`",
        ),
        JsonRejection::BytesRejection(e) => bytes_error(&e),
        other => HttpError::new(other.status(), "invalid_body", other.body_text()),
    }
}

fn bytes_error(e: &BytesRejection) -> HttpError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is larger than the server accepts (http.max_body_bytes)",
        )
    } else {
        HttpError::new(e.status(), "invalid_body", e.body_text())
    }
}

/// The field a serde message is about: `lat: invalid type ...`, ``unknown field `x` ...``,
/// ``missing field `x` ...``.
fn field_of(detail: &str) -> Option<String> {
    for prefix in ["unknown field `", "missing field `"] {
        if let Some(rest) = detail.strip_prefix(prefix) {
            return rest.split_once('`').map(|(f, _)| f.to_owned());
        }
    }
    let (path, _) = detail.split_once(": ")?;
    let is_path = !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'));
    is_path.then(|| path.to_owned())
}

/// The answer to a path segment that does not parse: `400 invalid_path`.
pub(crate) fn invalid_path(rejection: &PathRejection) -> HttpError {
    HttpError::new(
        StatusCode::BAD_REQUEST,
        "invalid_path",
        rejection.body_text(),
    )
}

/// The answer to a query string that does not parse into the handler's struct: `400
/// invalid_query` naming the parameter (`field`), as every route says it
/// ([`ioc_schemas::query::query_problem`]).
pub(crate) fn invalid_query(rejection: &QueryRejection) -> HttpError {
    HttpError::bad_query(ioc_schemas::query::query_problem(&rejection.body_text()))
}

/// `400 invalid_query` about the parameter `field`.
pub(crate) fn bad_parameter(field: &'static str, message: impl Into<String>) -> HttpError {
    HttpError::new(StatusCode::BAD_REQUEST, "invalid_query", message).with_field(field)
}

/// An optional query value parsed by `parse`; empty means absent.
pub(crate) fn query_value<T>(
    name: &'static str,
    value: Option<&str>,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, HttpError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => parse(v)
            .map(Some)
            .ok_or_else(|| bad_parameter(name, format!("{name}: unknown value `{v}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_in_serde_messages() {
        assert_eq!(
            field_of("lat: invalid type: string \"x\", expected f64 at line 1 column 9").as_deref(),
            Some("lat")
        );
        assert_eq!(
            field_of("unknown field `colour`, expected one of `id`, `kind`").as_deref(),
            Some("colour")
        );
        assert_eq!(
            field_of("missing field `lat` at line 1 column 2").as_deref(),
            Some("lat")
        );
        assert_eq!(field_of("invalid type: map, expected a string"), None);
    }

    #[test]
    fn bad_values_name_their_parameter() {
        let e = query_value("kind", Some("bus"), |_| None::<u8>).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid_query", Some("kind"))
        );
        assert_eq!(e.message, "kind: unknown value `bus`");
        assert_eq!(query_value("kind", Some(" "), |_| Some(1)).unwrap(), None);
    }
}
