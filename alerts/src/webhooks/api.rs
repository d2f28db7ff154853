//! The REST routes of subscriptions and deliveries, merged by the lead into the main server.

use std::collections::HashMap;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use ioc_schemas::{Department, Principal};
use serde::Serialize;

use super::delivery::{Delivery, DeliveryQuery, DeliveryState};
use super::dispatcher::Dispatcher;
use super::error::WebhookError;
use super::payload::payload_schema;
use super::subscription::{Subscription, SubscriptionRequest};

/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The routes (state included, so they merge into a router of any state):
///
/// | request | answer |
/// |---|---|
/// | `GET /api/v1/subscriptions?department=` | `200 {"subscriptions":[...],"count":n}` |
/// | `POST /api/v1/subscriptions` | `201 {"subscription":{...},"secret":"whsec_..."}` + `Location`; `409 conflict` if the id exists |
/// | `GET /api/v1/subscriptions/{id}` | `200` the subscription; `404 not_found` |
/// | `PUT /api/v1/subscriptions/{id}` | `201` created (with `secret`) or `200` replaced `{"subscription":{...}}`; `409 conflict` for a config subscription |
/// | `DELETE /api/v1/subscriptions/{id}` | `204`; its pending deliveries become dead |
/// | `POST /api/v1/subscriptions/{id}/rotate-secret` | `200 {"subscription":{...},"secret":"whsec_...","previous_secret_expires_ms":n}` |
/// | `GET /api/v1/deliveries?state=&subscription=&department=&before=&limit=` | `200 {"deliveries":[...],"count":n,"next_before":id}`, newest first |
/// | `GET /api/v1/deliveries/{id}` | `200 {"delivery":{...},"payload":{...}}` |
/// | `POST /api/v1/deliveries/{id}/redeliver` | `202 {"delivery":{...}}`; `409 conflict` if pending |
/// | `GET /api/v1/webhooks/payload-schema` | `200` the payload's JSON Schema |
///
/// A department token (an `ioc_schemas::Principal` in the request's extensions whose
/// `confined_to()` is `Some`) sees and manages only its department's subscriptions and
/// deliveries: listings are limited to it (`403 forbidden` when the query names another
/// department), another department's subscription or delivery is `404 not_found`, and a body
/// naming another department is `403 forbidden`. Without a principal everything is allowed.
///
/// Errors are `{"error":{"code","message","field"?}}`: `invalid_subscription` (400, `field`
/// names the field), `url_not_allowed` (400, SSRF policy), `url_unresolvable` (400),
/// `invalid_query`, `invalid_path`, `invalid_body` (400), `unsupported_media_type` (415),
/// `payload_too_large` (413, bodies up to 64 KiB), `forbidden` (403), `not_found` (404),
/// `conflict` (409), `method_not_allowed` (405), `unavailable` (503: shutting down or the
/// outbox failing), `internal` (500).
pub fn router<S: Clone + Send + Sync + 'static>(dispatcher: Dispatcher) -> Router<S> {
    Router::new()
        .route(
            "/api/v1/subscriptions",
            get(list_subscriptions)
                .post(create_subscription)
                .fallback(method_not_allowed),
        )
        .route(
            "/api/v1/subscriptions/{id}",
            get(get_subscription)
                .put(put_subscription)
                .delete(delete_subscription)
                .fallback(method_not_allowed),
        )
        .route(
            "/api/v1/subscriptions/{id}/rotate-secret",
            post(rotate_secret).fallback(method_not_allowed),
        )
        .route(
            "/api/v1/deliveries",
            get(list_deliveries).fallback(method_not_allowed),
        )
        .route(
            "/api/v1/deliveries/{id}",
            get(get_delivery).fallback(method_not_allowed),
        )
        .route(
            "/api/v1/deliveries/{id}/redeliver",
            post(redeliver).fallback(method_not_allowed),
        )
        .route(
            "/api/v1/webhooks/payload-schema",
            get(schema).fallback(method_not_allowed),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(dispatcher)
}

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<&'static str>,
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

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    fn field(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }

    fn query(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                field: self.field,
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

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        let message = e.to_string();
        match e {
            WebhookError::InvalidSubscription { field, .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_subscription", message).field(field)
            }
            WebhookError::UrlNotAllowed(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "url_not_allowed", message).field("url")
            }
            WebhookError::Unresolvable(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "url_unresolvable", message).field("url")
            }
            WebhookError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            WebhookError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            WebhookError::ShuttingDown
            | WebhookError::Store(_)
            | WebhookError::StoreLocked(_)
            | WebhookError::Random => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
            WebhookError::InvalidConfig(_)
            | WebhookError::Record(_)
            | WebhookError::Client(_)
            | WebhookError::Metrics(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

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

/// `403` when a department token's request body names another department.
fn check_body_department(caller: &Caller, department: Department) -> Result<(), ApiError> {
    match confined(caller) {
        Some(own) if own != department => Err(forbidden(format!(
            "a {} token manages only its own department's subscriptions, not {}'s",
            own.slug(),
            department.slug()
        ))),
        _ => Ok(()),
    }
}

/// `404` when the subscription exists but belongs to another department than the caller's
/// (so its existence is not revealed).
fn check_subscription(dispatcher: &Dispatcher, caller: &Caller, id: &str) -> Result<(), ApiError> {
    let Some(own) = confined(caller) else {
        return Ok(());
    };
    match dispatcher.subscription(id) {
        Some(s) if s.department != own => Err(ApiError::from(WebhookError::NotFound {
            kind: "subscription",
            id: id.to_owned(),
        })),
        _ => Ok(()),
    }
}

/// `404` when the delivery belongs to another department than the caller's.
fn check_delivery(caller: &Caller, delivery: &Delivery) -> Result<(), ApiError> {
    match confined(caller) {
        Some(own) if delivery.department != own => Err(ApiError::from(WebhookError::NotFound {
            kind: "delivery",
            id: delivery.id.to_string(),
        })),
        _ => Ok(()),
    }
}

fn body_error(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            let text = e.body_text();
            let detail = text.split_once(": ").map_or(text.as_str(), |(_, d)| d);
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_subscription",
                format!("invalid subscription: {detail}"),
            )
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("the body is not json: {}", e.body_text()),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as json, with `content-type: application/json`",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            )
        }
        other => ApiError::new(other.status(), "invalid_body", other.body_text()),
    }
}

fn query_map(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    allowed: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let Query(map) = query.map_err(|e| ApiError::query(e.body_text()))?;
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::query(format!(
            "unknown parameter {unknown:?}; known: {}",
            allowed.join(", ")
        )));
    }
    // An empty value means no filter.
    Ok(map.into_iter().filter(|(_, v)| !v.is_empty()).collect())
}

fn delivery_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            format!("a delivery id is a number, not {raw:?}"),
        )
    })
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

#[derive(Serialize)]
struct SubscriptionList {
    subscriptions: Vec<Subscription>,
    count: usize,
}

async fn list_subscriptions(
    State(dispatcher): State<Dispatcher>,
    caller: Caller,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<SubscriptionList>, ApiError> {
    let query = query_map(query, &["department"])?;
    let department = match query.get("department") {
        Some(slug) => Some(Department::from_slug(slug).ok_or_else(|| {
            ApiError::query(format!("unknown department {slug:?}")).field("department")
        })?),
        None => None,
    };
    let department = scoped_department(&caller, department)?;
    let subscriptions: Vec<Subscription> = dispatcher
        .subscriptions()
        .into_iter()
        .filter(|s| department.is_none_or(|d| s.department == d))
        .collect();
    Ok(Json(SubscriptionList {
        count: subscriptions.len(),
        subscriptions,
    }))
}

#[derive(Serialize)]
struct SubscriptionAnswer {
    subscription: Subscription,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

fn created(subscription: Subscription, secret: Option<String>) -> Response {
    let location = format!("/api/v1/subscriptions/{}", subscription.id);
    let mut response = (
        StatusCode::CREATED,
        Json(SubscriptionAnswer {
            subscription,
            secret,
        }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

async fn create_subscription(
    State(dispatcher): State<Dispatcher>,
    caller: Caller,
    body: Result<Json<SubscriptionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(body_error)?;
    check_body_department(&caller, request.department)?;
    let made = dispatcher.create_subscription(request).await?;
    Ok(created(made.subscription, Some(made.secret)))
}

async fn get_subscription(
    State(dispatcher): State<Dispatcher>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Subscription>, ApiError> {
    let own = confined(&caller);
    dispatcher
        .subscription(&id)
        .filter(|s| own.is_none_or(|d| s.department == d))
        .map(Json)
        .ok_or_else(|| {
            ApiError::from(WebhookError::NotFound {
                kind: "subscription",
                id,
            })
        })
}

async fn put_subscription(
    State(dispatcher): State<Dispatcher>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<SubscriptionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    check_subscription(&dispatcher, &caller, &id)?;
    let Json(request) = body.map_err(body_error)?;
    check_body_department(&caller, request.department)?;
    let put = dispatcher.put_subscription(&id, request).await?;
    if put.created {
        return Ok(created(put.subscription, put.secret));
    }
    Ok(Json(SubscriptionAnswer {
        subscription: put.subscription,
        secret: put.secret,
    })
    .into_response())
}

async fn delete_subscription(
    State(dispatcher): State<Dispatcher>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_subscription(&dispatcher, &caller, &id)?;
    dispatcher.delete_subscription(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate_secret(
    State(dispatcher): State<Dispatcher>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_subscription(&dispatcher, &caller, &id)?;
    let rotated = dispatcher.rotate_secret(&id).await?;
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(rotated),
    )
        .into_response())
}

#[derive(Serialize)]
struct DeliveryList {
    deliveries: Vec<Delivery>,
    count: usize,
    /// The `before` of the next page, when this one is full.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<u64>,
}

async fn list_deliveries(
    State(dispatcher): State<Dispatcher>,
    caller: Caller,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<DeliveryList>, ApiError> {
    let map = query_map(
        query,
        &["state", "subscription", "department", "before", "limit"],
    )?;
    let mut query = DeliveryQuery::default();
    if let Some(state) = map.get("state") {
        query.state = Some(match state.as_str() {
            "pending" => DeliveryState::Pending,
            "delivered" => DeliveryState::Delivered,
            "dead" => DeliveryState::Dead,
            other => {
                return Err(ApiError::query(format!(
                    "unknown state {other:?}; known: pending, delivered, dead"
                ))
                .field("state"))
            }
        });
    }
    query.subscription = map.get("subscription").cloned();
    if let Some(slug) = map.get("department") {
        query.department = Some(Department::from_slug(slug).ok_or_else(|| {
            ApiError::query(format!("unknown department {slug:?}")).field("department")
        })?);
    }
    query.department = scoped_department(&caller, query.department)?;
    if let Some(before) = map.get("before") {
        query.before = Some(
            before
                .parse()
                .map_err(|_| ApiError::query("before is a delivery id").field("before"))?,
        );
    }
    if let Some(limit) = map.get("limit") {
        query.limit = limit
            .parse()
            .ok()
            .filter(|l| (1..=DeliveryQuery::MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::query(format!("limit is 1 to {}", DeliveryQuery::MAX_LIMIT))
                    .field("limit")
            })?;
    }
    let limit = query.limit;
    let deliveries = dispatcher.deliveries(query).await?;
    let next_before = (deliveries.len() >= limit)
        .then(|| deliveries.last().map(|d| d.id))
        .flatten();
    Ok(Json(DeliveryList {
        count: deliveries.len(),
        deliveries,
        next_before,
    }))
}

#[derive(Serialize)]
struct DeliveryDetail {
    delivery: Delivery,
    payload: serde_json::Value,
}

async fn get_delivery(
    State(dispatcher): State<Dispatcher>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    let id = delivery_id(&id)?;
    let (delivery, body) = dispatcher.delivery(id).await?;
    check_delivery(&caller, &delivery)?;
    let payload = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    Ok(Json(DeliveryDetail { delivery, payload }))
}

#[derive(Serialize)]
struct DeliveryAnswer {
    delivery: Delivery,
}

async fn redeliver(
    State(dispatcher): State<Dispatcher>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DeliveryAnswer>), ApiError> {
    let id = delivery_id(&id)?;
    if confined(&caller).is_some() {
        let (delivery, _) = dispatcher.delivery(id).await?;
        check_delivery(&caller, &delivery)?;
    }
    let delivery = dispatcher.redeliver(id).await?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryAnswer { delivery })))
}

async fn schema() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/schema+json"),
        )],
        payload_schema(),
    )
        .into_response()
}
