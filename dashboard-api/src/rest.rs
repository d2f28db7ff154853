//! The device registry's routes under `/api/v1/devices`: listing, reading and the changes
//! handed to the pipeline.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ioc_schemas::api_error::ApiError as HttpError;
use ioc_schemas::{Department, Device, DeviceChange, District, Kind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{info, warn, Instrument};

use crate::devices::{DeviceView, RegistryRequest, UnknownDevice};
use crate::extract::{invalid_path, invalid_query, query_value, ApiBody, JsonBody};
use crate::metrics::{RegistryOp, RegistryOutcome};
use crate::state::ApiState;

/// The path of the unknown-device list; `unknown` cannot be a device id through the API.
const UNKNOWN_ID: &str = "unknown";

impl ApiBody for Device {
    const INVALID: &'static str = "invalid_device";
    const WHAT: &'static str = "device";
}

/// `400 invalid_device` naming the field at fault.
fn invalid_device(field: &'static str, message: impl Into<String>) -> HttpError {
    HttpError::new(StatusCode::BAD_REQUEST, "invalid_device", message).with_field(field)
}

fn path_id(path: Result<Path<String>, PathRejection>) -> Result<String, HttpError> {
    path.map(|Path(id)| id).map_err(|e| invalid_path(&e))
}

/// The registry's routes; `router` adds them.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/devices", get(list_devices).post(create_device))
        .route("/api/v1/devices/unknown", get(list_unknown))
        .route(
            "/api/v1/devices/{id}",
            get(get_device).put(put_device).delete(delete_device),
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

/// `GET /api/v1/devices`.
#[derive(Serialize, JsonSchema)]
pub(crate) struct DeviceList {
    devices: Vec<DeviceView>,
    count: usize,
}

async fn list_devices(
    State(state): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<DeviceList>, HttpError> {
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
) -> Result<Json<DeviceView>, HttpError> {
    let id = path_id(id)?;
    state
        .devices()
        .get(&id)
        .map(Json)
        .ok_or_else(|| missing(&state, &id))
}

fn missing(state: &ApiState, id: &str) -> HttpError {
    if state.unknown_devices().get(id).is_some() {
        HttpError::not_found(format!(
            "device `{id}` is not registered; it sends readings (see /api/v1/devices/unknown)"
        ))
    } else {
        HttpError::not_found(format!("device `{id}` is not registered"))
    }
}

/// Validates a device body, naming the field at fault.
fn check_device(device: &Device) -> Result<(), HttpError> {
    if let Err(e) = device.validate() {
        return Err(invalid_device(e.field, format!("invalid device: {e}")));
    }
    if device.id == UNKNOWN_ID {
        return Err(invalid_device(
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
) -> Result<Response, HttpError> {
    check_device(&device)?;
    let id = device.id.clone();
    submit(&state, DeviceChange::Upsert(device.clone()), |dir| {
        if dir.contains(&id) {
            Err(HttpError::new(
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
) -> Result<Response, HttpError> {
    let id = path_id(id)?;
    check_device(&device)?;
    if device.id != id {
        return Err(invalid_device(
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
) -> Result<StatusCode, HttpError> {
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
    check: impl FnOnce(&crate::DeviceDirectory) -> Result<T, HttpError>,
) -> Result<T, HttpError> {
    let op = match change {
        DeviceChange::Upsert(_) => RegistryOp::Upsert,
        DeviceChange::Remove { .. } => RegistryOp::Remove,
    };
    let count = |outcome| state.metrics().registry_change(op, outcome).inc();
    let Some(sender) = state.registry_sender() else {
        count(RegistryOutcome::ReadOnly);
        return Err(HttpError::new(
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
        count(RegistryOutcome::Unavailable);
        return Err(HttpError::unavailable(format!(
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
            count(RegistryOutcome::Unavailable);
            return Err(HttpError::unavailable(
                "the pipeline is not taking registry changes (stopped); nothing was changed",
            ));
        }
        Err(_) => {
            count(RegistryOutcome::Unavailable);
            return Err(HttpError::unavailable(format!(
                "the pipeline did not take the change within {ms} ms (its queue is full); nothing was changed"
            )));
        }
    }
    // From here on the pipeline may apply the change: finish in a task of its own.
    let (devices, unknown) = (state.devices().clone(), state.unknown_devices().clone());
    let span = tracing::info_span!(
        "registry_change",
        op = op.as_str(),
        device = change.device_id()
    );
    let finish = tokio::spawn(
        async move {
            let answer = match answer.await {
                Ok(Ok(())) => {
                    devices.apply(&change);
                    if let DeviceChange::Upsert(device) = &change {
                        unknown.forget(&device.id);
                    }
                    info!(
                        op = op.as_str(),
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
        }
        .instrument(span),
    );
    match tokio::time::timeout_at(deadline, finish).await {
        Ok(Ok(Answer::Applied)) => {
            count(RegistryOutcome::Applied);
            Ok(value)
        }
        Ok(Ok(Answer::Refused(reason))) => {
            count(RegistryOutcome::Refused);
            warn!(op = op.as_str(), %reason, "pipeline refused a registry change");
            Err(HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "change_refused",
                format!("the pipeline could not apply the change: {reason}"),
            ))
        }
        Ok(Ok(Answer::Dropped)) => {
            count(RegistryOutcome::Unavailable);
            Err(HttpError::unavailable(
                "the pipeline dropped the change without an answer; it was not applied here",
            ))
        }
        Ok(Err(e)) => {
            count(RegistryOutcome::Unavailable);
            Err(HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("registry change task failed: {e}"),
            ))
        }
        Err(_) => {
            count(RegistryOutcome::Timeout);
            Err(HttpError::new(
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
