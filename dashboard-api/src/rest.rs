//! The REST routes under `/api/v1`, their JSON errors and body extractor.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ioc_schemas::{Department, Device, DeviceChange, District, Kind};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::devices::{DeviceView, RegistryRequest, UnknownDevice};
use crate::ApiState;

/// The path of the unknown-device list; `unknown` cannot be a device id through the API.
const UNKNOWN_ID: &str = "unknown";

/// An error answer: `{"error":{"code":"...","message":"...","field":"..."}}` (`field` only
/// when one field is at fault).
#[derive(Debug)]
pub(crate) struct RestError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) field: Option<String>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl RestError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        RestError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub(crate) fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        RestError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        RestError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    fn invalid_device(field: impl Into<String>, message: impl Into<String>) -> Self {
        RestError::new(StatusCode::BAD_REQUEST, "invalid_device", message).with_field(field)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        (
            self.status,
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            Json(body),
        )
            .into_response()
    }
}

/// A JSON request body of a type that names its error code.
pub(crate) trait ApiBody: DeserializeOwned {
    /// The error code of a body that is not a valid `Self`.
    const INVALID: &'static str;
    /// What it is, for messages.
    const WHAT: &'static str;
}

impl ApiBody for Device {
    const INVALID: &'static str = "invalid_device";
    const WHAT: &'static str = "device";
}

/// Like [`axum::Json`], but every refusal is a JSON [`RestError`]: 415 without a JSON
/// content type, 413 over `http.max_body_bytes`, 400 for a body that is not JSON or not a
/// valid `T` (the message names the field, from the serde path).
pub(crate) struct JsonBody<T>(pub T);

impl<T: ApiBody, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = RestError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(body_error::<T>(rejection)),
        }
    }
}

fn body_error<T: ApiBody>(rejection: JsonRejection) -> RestError {
    let what = T::WHAT;
    match rejection {
        JsonRejection::JsonDataError(e) => {
            // axum's text is "<summary>: <path>: <serde message>"; keep what follows the
            // summary.
            let text = e.body_text();
            let detail = text.split_once(": ").map_or(text.as_str(), |(_, d)| d);
            let error = RestError::new(
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
            RestError::new(
                StatusCode::BAD_REQUEST,
                T::INVALID,
                format!("invalid {what}: the body is not json: {detail}"),
            )
        }
        JsonRejection::MissingJsonContentType(_) => RestError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as json, with `content-type: application/json`",
        ),
        JsonRejection::BytesRejection(e) => bytes_error(&e),
        other => RestError::new(other.status(), "invalid_body", other.body_text()),
    }
}

fn bytes_error(e: &BytesRejection) -> RestError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        RestError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is larger than the server accepts (http.max_body_bytes)",
        )
    } else {
        RestError::new(e.status(), "invalid_body", e.body_text())
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

fn path_id(path: Result<Path<String>, PathRejection>) -> Result<String, RestError> {
    path.map(|Path(id)| id)
        .map_err(|e| RestError::new(StatusCode::BAD_REQUEST, "invalid_path", e.body_text()))
}

/// The REST routes; `router` adds them.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/devices", get(list_devices).post(create_device))
        .route("/api/v1/devices/unknown", get(list_unknown))
        .route(
            "/api/v1/devices/{id}",
            get(get_device).put(put_device).delete(delete_device),
        )
        .route("/api/v1/kpis/{family}", get(crate::history::kpi_history))
        .route(
            "/api/v1/dead-letters",
            get(crate::dead_letters::dead_letters),
        )
}

/// The answer for paths no route matches.
pub(crate) async fn not_found() -> RestError {
    RestError::not_found("no such route")
}

/// The answer for a known path asked with a method it does not serve.
pub(crate) async fn method_not_allowed() -> RestError {
    RestError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not serve that method",
    )
}

/// The query string of `GET /api/v1/devices`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only devices of this kind.
    #[schemars(with = "Option<Kind>")]
    kind: Option<String>,
    /// Only devices in this district.
    #[schemars(with = "Option<District>")]
    district: Option<String>,
    /// Only devices this department owns.
    #[schemars(with = "Option<Department>")]
    department: Option<String>,
}

/// The answer to a query string that does not parse into the handler's struct: `400
/// invalid_query` naming the parameter (`field`), as every route says it
/// ([`ioc_schemas::query::query_problem`]).
pub(crate) fn invalid_query(rejection: &QueryRejection) -> RestError {
    let problem = ioc_schemas::query::query_problem(&rejection.body_text());
    let error = RestError::new(StatusCode::BAD_REQUEST, "invalid_query", problem.message);
    match problem.field {
        Some(field) => error.with_field(field),
        None => error,
    }
}

/// An optional query value parsed by `parse`; empty means absent.
pub(crate) fn query_value<T>(
    name: &'static str,
    value: Option<&str>,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, RestError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => parse(v).map(Some).ok_or_else(|| {
            RestError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("{name}: unknown value `{v}`"),
            )
            .with_field(name)
        }),
    }
}

/// `GET /api/v1/devices`.
#[derive(Serialize, JsonSchema)]
pub(crate) struct DeviceList {
    devices: Vec<DeviceView>,
    count: usize,
}

async fn list_devices(
    State(state): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<DeviceList>, RestError> {
    let Query(query) = query.map_err(|e| invalid_query(&e))?;
    let kind = query_value("kind", query.kind.as_deref(), Kind::from_name)?;
    let district = query_value("district", query.district.as_deref(), District::from_slug)?;
    let department = query_value(
        "department",
        query.department.as_deref(),
        Department::from_slug,
    )?;
    let devices = state.devices().list(|d| {
        kind.is_none_or(|k| d.kind == k)
            && district.is_none_or(|x| d.district == x)
            && department.is_none_or(|x| d.department == x)
    });
    Ok(Json(DeviceList {
        count: devices.len(),
        devices,
    }))
}

/// `GET /api/v1/devices/unknown`.
#[derive(Serialize, JsonSchema)]
pub(crate) struct UnknownList {
    devices: Vec<UnknownDevice>,
    count: usize,
    /// Readings not tracked because the list was full.
    dropped: u64,
    /// The most ids tracked.
    max: usize,
}

async fn list_unknown(State(state): State<ApiState>) -> Json<UnknownList> {
    let unknown = state.unknown_devices();
    let devices = unknown.list();
    Json(UnknownList {
        count: devices.len(),
        devices,
        dropped: unknown.dropped(),
        max: unknown.max(),
    })
}

async fn get_device(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<DeviceView>, RestError> {
    let id = path_id(id)?;
    state
        .devices()
        .get(&id)
        .map(Json)
        .ok_or_else(|| missing(&state, &id))
}

fn missing(state: &ApiState, id: &str) -> RestError {
    if state.unknown_devices().get(id).is_some() {
        RestError::not_found(format!(
            "device `{id}` is not registered; it sends readings (see /api/v1/devices/unknown)"
        ))
    } else {
        RestError::not_found(format!("device `{id}` is not registered"))
    }
}

/// Validates a device body, naming the field at fault.
fn check_device(device: &Device) -> Result<(), RestError> {
    if let Err(e) = device.validate() {
        return Err(RestError::invalid_device(
            e.field,
            format!("invalid device: {e}"),
        ));
    }
    if device.id == UNKNOWN_ID {
        return Err(RestError::invalid_device(
            "id",
            "invalid device: id: `unknown` is reserved (/api/v1/devices/unknown lists unregistered devices)",
        ));
    }
    Ok(())
}

fn location(id: &str) -> (header::HeaderName, HeaderValue) {
    // Validated ids are ASCII letters, digits and `_-.:`: always a valid header value.
    let value = HeaderValue::from_str(&format!("/api/v1/devices/{id}"))
        .unwrap_or_else(|_| HeaderValue::from_static("/api/v1/devices"));
    (header::LOCATION, value)
}

async fn create_device(
    State(state): State<ApiState>,
    JsonBody(device): JsonBody<Device>,
) -> Result<Response, RestError> {
    check_device(&device)?;
    let id = device.id.clone();
    submit(&state, DeviceChange::Upsert(device.clone()), |dir| {
        if dir.contains(&id) {
            Err(RestError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "device `{id}` is already registered; PUT /api/v1/devices/{id} replaces it"
                ),
            )
            .with_field("id"))
        } else {
            Ok(())
        }
    })
    .await?;
    let view = view_after(&state, device);
    Ok((StatusCode::CREATED, [location(&id)], Json(view)).into_response())
}

async fn put_device(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    JsonBody(device): JsonBody<Device>,
) -> Result<Response, RestError> {
    let id = path_id(id)?;
    check_device(&device)?;
    if device.id != id {
        return Err(RestError::invalid_device(
            "id",
            format!(
                "invalid device: id: the body's id `{}` differs from the path's `{id}`",
                device.id
            ),
        ));
    }
    let created = submit(&state, DeviceChange::Upsert(device.clone()), |dir| {
        Ok(!dir.contains(&id))
    })
    .await?;
    let view = view_after(&state, device);
    Ok(if created {
        (StatusCode::CREATED, [location(&id)], Json(view)).into_response()
    } else {
        (StatusCode::OK, Json(view)).into_response()
    })
}

async fn delete_device(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, RestError> {
    let id = path_id(id)?;
    submit(&state, DeviceChange::Remove { id: id.clone() }, |dir| {
        if dir.contains(&id) {
            Ok(())
        } else {
            Err(missing(&state, &id))
        }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The directory's view of a device just written (its status kept when replaced).
fn view_after(state: &ApiState, device: Device) -> DeviceView {
    state
        .devices()
        .get(&device.id)
        .filter(|view| view.device == device)
        .unwrap_or(DeviceView {
            device,
            status: ioc_schemas::DeviceStatus::NeverSeen,
            last_seen_ms: None,
            status_at_ms: None,
        })
}

/// How a change handed to the pipeline ended.
enum Answer {
    Applied,
    Refused(String),
    Dropped,
}

/// Hands `change` to the pipeline and waits for its answer, within the registry timeout.
///
/// Changes go one at a time: `check` runs against the directory under the writer lock, so
/// a 404 or 409 it returns is consistent with the changes before it. Once the pipeline has
/// the change, a task of its own waits for the answer and applies it to the directory (and
/// drops the id from the unknown list), so the directory follows the pipeline even when
/// this request times out or its client goes away.
async fn submit<T>(
    state: &ApiState,
    change: DeviceChange,
    check: impl FnOnce(&crate::DeviceDirectory) -> Result<T, RestError>,
) -> Result<T, RestError> {
    let op = match change {
        DeviceChange::Upsert(_) => "upsert",
        DeviceChange::Remove { .. } => "remove",
    };
    let count = |outcome: &str| {
        state
            .metrics()
            .registry_changes
            .with_label_values(&[op, outcome])
            .inc();
    };
    let Some(sender) = state.registry_sender() else {
        count("read_only");
        return Err(RestError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "registry_read_only",
            "the registry is read-only here: no pipeline takes changes",
        ));
    };
    let timeout = state.registry_timeout();
    let ms = timeout.as_millis();
    let deadline = Instant::now() + timeout;
    let Ok(guard) = tokio::time::timeout_at(deadline, state.registry_writer().lock_owned()).await
    else {
        count("unavailable");
        return Err(RestError::unavailable(format!(
            "an earlier change is still waiting for the pipeline after {ms} ms; nothing was changed"
        )));
    };
    let value = check(state.devices())?;
    let (reply, answer) = oneshot::channel();
    let request = RegistryRequest {
        change: change.clone(),
        reply,
    };
    match tokio::time::timeout_at(deadline, sender.send(request)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => {
            count("unavailable");
            return Err(RestError::unavailable(
                "the pipeline is not taking registry changes (stopped); nothing was changed",
            ));
        }
        Err(_) => {
            count("unavailable");
            return Err(RestError::unavailable(format!(
                "the pipeline did not take the change within {ms} ms (its queue is full); nothing was changed"
            )));
        }
    }
    // From here on the pipeline may apply the change: finish in a task of its own.
    let (devices, unknown) = (state.devices().clone(), state.unknown_devices().clone());
    let finish = tokio::spawn(async move {
        let answer = match answer.await {
            Ok(Ok(())) => {
                devices.apply(&change);
                if let DeviceChange::Upsert(device) = &change {
                    unknown.forget(&device.id);
                }
                info!(
                    op = op,
                    device = change.device_id(),
                    "registry change applied"
                );
                Answer::Applied
            }
            Ok(Err(reason)) => Answer::Refused(reason),
            Err(_) => Answer::Dropped,
        };
        drop(guard);
        answer
    });
    match tokio::time::timeout_at(deadline, finish).await {
        Ok(Ok(Answer::Applied)) => {
            count("applied");
            Ok(value)
        }
        Ok(Ok(Answer::Refused(reason))) => {
            count("refused");
            warn!(op, %reason, "pipeline refused a registry change");
            Err(RestError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "change_refused",
                format!("the pipeline could not apply the change: {reason}"),
            ))
        }
        Ok(Ok(Answer::Dropped)) => {
            count("unavailable");
            Err(RestError::unavailable(
                "the pipeline dropped the change without an answer; it was not applied here",
            ))
        }
        Ok(Err(e)) => {
            count("unavailable");
            Err(RestError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("registry change task failed: {e}"),
            ))
        }
        Err(_) => {
            count("timeout");
            Err(RestError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "the pipeline took the change but did not confirm it within {ms} ms; it may \
                     still be applied (the device list follows the pipeline's answer)"
                ),
            ))
        }
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
}
