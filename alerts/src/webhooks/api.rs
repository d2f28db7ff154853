//! The REST routes of subscriptions and deliveries, merged by the lead into the main server.

use std::borrow::Cow;
use std::collections::HashMap;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ioc_schemas::api_error::ApiError;
use ioc_schemas::openapi::{ApiDescription, Method, Operation};
use ioc_schemas::query::unknown_parameter;
use ioc_schemas::Department;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;

use super::delivery::{Delivery, DeliveryQuery, DeliveryState};
use super::dispatcher::{Dispatcher, RotatedSecret};
use super::error::WebhookError;
use super::payload::payload_schema;
use super::subscription::{Subscription, SubscriptionRequest};
use crate::http::{
    confined, error_text, forbidden, query_rejected, scoped_department, Caller, PathId,
};

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

/// `400 invalid_query` with a message (the caller names the parameter).
fn invalid_query(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        let message = error_text(&e);
        match e {
            WebhookError::InvalidSubscription { field, .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_subscription", message)
                    .with_field(field)
            }
            WebhookError::UrlNotAllowed(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "url_not_allowed", message).with_field("url")
            }
            WebhookError::Unresolvable { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "url_unresolvable", message)
                    .with_field("url")
            }
            WebhookError::NotFound { .. } => ApiError::not_found(message),
            WebhookError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            WebhookError::ShuttingDown
            | WebhookError::Store(_)
            | WebhookError::Permissions(_)
            | WebhookError::Task(_)
            | WebhookError::StoreLocked
            | WebhookError::Random => ApiError::unavailable(message),
            WebhookError::InvalidConfig(_)
            | WebhookError::Record(_)
            | WebhookError::Payload { .. }
            | WebhookError::Client(_)
            | WebhookError::Metrics(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
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
    let Query(map) = query.map_err(|e| query_rejected(&e))?;
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_query(unknown_parameter(unknown, allowed)));
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

/// The query parameters of `GET /api/v1/subscriptions` (an empty value means no filter;
/// another parameter is `400 invalid_query`).
#[derive(Debug, Default, JsonSchema)]
struct SubscriptionQuery {
    /// Only this department's subscriptions (a department token may name only its own).
    department: Option<Department>,
}

impl SubscriptionQuery {
    /// The parameters it takes.
    const PARAMETERS: &'static [&'static str] = &["department"];

    fn parse(
        query: Result<Query<HashMap<String, String>>, QueryRejection>,
    ) -> Result<Self, ApiError> {
        let map = query_map(query, Self::PARAMETERS)?;
        let department = match map.get("department") {
            Some(slug) => Some(Department::from_slug(slug).ok_or_else(|| {
                invalid_query(format!("unknown department {slug:?}")).with_field("department")
            })?),
            None => None,
        };
        Ok(SubscriptionQuery { department })
    }
}

/// The query parameters of `GET /api/v1/deliveries`: the fields of [`DeliveryQuery`].
const DELIVERY_PARAMETERS: &[&str] = &["state", "subscription", "department", "before", "limit"];

/// The subscriptions listed.
#[derive(Debug, Serialize, JsonSchema)]
struct SubscriptionList {
    /// The subscriptions, by id.
    subscriptions: Vec<Subscription>,
    /// How many.
    count: usize,
}

async fn list_subscriptions(
    State(dispatcher): State<Dispatcher>,
    caller: Caller,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<SubscriptionList>, ApiError> {
    let query = SubscriptionQuery::parse(query)?;
    let department = scoped_department(&caller, query.department)?;
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

/// A subscription created or replaced.
#[derive(Debug, Serialize, JsonSchema)]
struct SubscriptionAnswer {
    /// The subscription as stored.
    subscription: Subscription,
    /// Its secret, in full, shown this once: when it was created, or when a replace set a new
    /// one.
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

/// A page of deliveries, newest first.
#[derive(Debug, Serialize, JsonSchema)]
struct DeliveryList {
    /// The deliveries.
    deliveries: Vec<Delivery>,
    /// How many.
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
    let map = query_map(query, DELIVERY_PARAMETERS)?;
    let mut query = DeliveryQuery::default();
    if let Some(state) = map.get("state") {
        query.state = Some(match state.as_str() {
            "pending" => DeliveryState::Pending,
            "delivered" => DeliveryState::Delivered,
            "dead" => DeliveryState::Dead,
            other => {
                return Err(invalid_query(format!(
                    "unknown state {other:?}; known: pending, delivered, dead"
                ))
                .with_field("state"))
            }
        });
    }
    query.subscription = map.get("subscription").cloned();
    if let Some(slug) = map.get("department") {
        query.department = Some(Department::from_slug(slug).ok_or_else(|| {
            invalid_query(format!("unknown department {slug:?}")).with_field("department")
        })?);
    }
    query.department = scoped_department(&caller, query.department)?;
    if let Some(before) = map.get("before") {
        query.before = Some(
            before
                .parse()
                .map_err(|_| invalid_query("before is a delivery id").with_field("before"))?,
        );
    }
    if let Some(limit) = map.get("limit") {
        query.limit = limit
            .parse()
            .ok()
            .filter(|l| (1..=DeliveryQuery::MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                invalid_query(format!("limit is 1 to {}", DeliveryQuery::MAX_LIMIT))
                    .with_field("limit")
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

/// One delivery and what it sends.
#[derive(Debug, Serialize, JsonSchema)]
struct DeliveryDetail {
    /// The delivery.
    delivery: Delivery,
    /// The body every attempt sends: the webhook payload (see
    /// `GET /api/v1/webhooks/payload-schema`), or the stored text as a string when it is not
    /// JSON.
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

/// A delivery queued again.
#[derive(Debug, Serialize, JsonSchema)]
struct DeliveryAnswer {
    /// The delivery, pending again.
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

/// `GET /api/v1/webhooks/payload-schema`'s answer: a JSON Schema (draft 2020-12) document.
#[derive(Debug)]
struct PayloadSchemaDocument;

impl JsonSchema for PayloadSchemaDocument {
    fn schema_name() -> Cow<'static, str> {
        "WebhookPayloadSchemaDocument".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The JSON Schema (draft 2020-12) of the body of every webhook request.",
            "type": "object",
            "required": ["$schema", "title", "type", "properties"],
            "properties": {
                "$schema": {"type": "string"},
                "title": {"type": "string"},
                "type": {"const": "object"},
                "properties": {"type": "object"}
            }
        })
    }
}

/// A delivery id in a path: a number (anything else is `400 invalid_path`).
#[derive(Debug)]
struct DeliveryId;

impl JsonSchema for DeliveryId {
    fn schema_name() -> Cow<'static, str> {
        "DeliveryId".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "integer", "format": "uint64", "minimum": 0, "maximum": u64::MAX})
    }
}

/// The operations of [`router`], for the OpenAPI document.
pub fn api_description() -> ApiDescription {
    const SUBSCRIPTIONS: &str = "Subscriptions";
    const DELIVERIES: &str = "Deliveries";
    const SUBSCRIPTION_ID: &str = "the subscription's id";
    const DELIVERY_ID: &str = "the delivery's id";
    const BAD_QUERY: (u16, &str) = (
        400,
        "an unknown parameter, or a value that is not valid (`invalid_query`; `field` names it)",
    );
    const OTHER_DEPARTMENT: (u16, &str) = (
        403,
        "the token's role may not do this, or a department token named another department",
    );
    const BAD_SUBSCRIPTION: (u16, &str) = (
        400,
        "the body is not JSON (`invalid_body`), not a valid subscription \
         (`invalid_subscription`; `field` names the field), or its URL is refused by the SSRF \
         policy (`url_not_allowed`) or does not resolve (`url_unresolvable`)",
    );
    const BAD_DELIVERY_ID: (u16, &str) = (400, "the id is not a number (`invalid_path`)");
    const TOO_LARGE: (u16, &str) = (
        413,
        "the body is larger than 64 KiB (or than `http.max_body_bytes`)",
    );
    ApiDescription::new()
        .route(
            Method::Get,
            "/api/v1/subscriptions",
            Operation::new(
                "listSubscriptions",
                SUBSCRIPTIONS,
                "List webhook subscriptions",
            )
            .description(
                "By id. A department token sees only its department's (`403` when \
                     `department` names another one).",
            )
            .query_struct::<SubscriptionQuery>()
            .ok::<SubscriptionList>(200, "the subscriptions")
            .errors(&[BAD_QUERY, OTHER_DEPARTMENT]),
        )
        .route(
            Method::Post,
            "/api/v1/subscriptions",
            Operation::new(
                "createSubscription",
                SUBSCRIPTIONS,
                "Create a webhook subscription",
            )
            .description(
                "Checks the URL (scheme, SSRF policy, resolution), the filter and the \
                     secret; generates the id and the secret when absent. The answer shows the \
                     secret in full, this once, and its `Location` header names the new \
                     subscription. A department token may create only its department's (`403`).",
            )
            .body::<SubscriptionRequest>()
            .ok::<SubscriptionAnswer>(201, "created, with its secret; `Location` names it")
            .errors(&[
                BAD_SUBSCRIPTION,
                OTHER_DEPARTMENT,
                TOO_LARGE,
                (409, "a subscription has this id"),
                (503, "shutting down, or the outbox failing"),
            ]),
        )
        .route(
            Method::Get,
            "/api/v1/subscriptions/{id}",
            Operation::new(
                "getSubscription",
                SUBSCRIPTIONS,
                "Get a webhook subscription",
            )
            .path::<PathId>("id", SUBSCRIPTION_ID)
            .ok::<Subscription>(200, "the subscription (never its secret)")
            .errors(&[(404, "no such subscription (or another department's)")]),
        )
        .route(
            Method::Put,
            "/api/v1/subscriptions/{id}",
            Operation::new(
                "putSubscription",
                SUBSCRIPTIONS,
                "Create or replace a webhook subscription",
            )
            .description(
                "A secret different from the current one rotates to it (the old one keeps \
                 signing for the grace period); without one the secret is kept. The body's \
                 `id`, if any, must be the path's.",
            )
            .path::<PathId>("id", SUBSCRIPTION_ID)
            .body::<SubscriptionRequest>()
            .ok::<SubscriptionAnswer>(200, "replaced; `secret` only when the body set a new one")
            .ok::<SubscriptionAnswer>(201, "created, with its secret; `Location` names it")
            .errors(&[
                BAD_SUBSCRIPTION,
                OTHER_DEPARTMENT,
                TOO_LARGE,
                (404, "another department's subscription"),
                (409, "the subscription comes from the config file"),
                (503, "shutting down, or the outbox failing"),
            ]),
        )
        .route(
            Method::Delete,
            "/api/v1/subscriptions/{id}",
            Operation::new(
                "deleteSubscription",
                SUBSCRIPTIONS,
                "Delete a webhook subscription",
            )
            .description("Its pending deliveries become dead.")
            .path::<PathId>("id", SUBSCRIPTION_ID)
            .empty(204, "deleted")
            .errors(&[
                (404, "no such subscription (or another department's)"),
                (409, "the subscription comes from the config file"),
                (503, "shutting down, or the outbox failing"),
            ]),
        )
        .route(
            Method::Post,
            "/api/v1/subscriptions/{id}/rotate-secret",
            Operation::new(
                "rotateSubscriptionSecret",
                SUBSCRIPTIONS,
                "Give a webhook subscription a new secret",
            )
            .description(
                "The new secret is shown in full, this once; the old one keeps signing too \
                 until `previous_secret_expires_ms`.",
            )
            .path::<PathId>("id", SUBSCRIPTION_ID)
            .ok::<RotatedSecret>(200, "the new secret")
            .errors(&[
                (404, "no such subscription (or another department's)"),
                (503, "shutting down, or the outbox failing"),
            ]),
        )
        .route(
            Method::Get,
            "/api/v1/deliveries",
            Operation::new("listDeliveries", DELIVERIES, "List webhook deliveries")
                .description(
                    "Newest first, a page at a time: pass `next_before` as `before` for the \
                     next page. A department token sees only its department's (`403` when \
                     `department` names another one). An empty value means no filter.",
                )
                .query_struct::<DeliveryQuery>()
                .ok::<DeliveryList>(200, "a page of deliveries")
                .errors(&[BAD_QUERY, OTHER_DEPARTMENT, (503, "the outbox failing")]),
        )
        .route(
            Method::Get,
            "/api/v1/deliveries/{id}",
            Operation::new(
                "getDelivery",
                DELIVERIES,
                "Get a webhook delivery and its body",
            )
            .path::<DeliveryId>("id", DELIVERY_ID)
            .ok::<DeliveryDetail>(200, "the delivery and its payload")
            .errors(&[
                BAD_DELIVERY_ID,
                (404, "no such delivery (or another department's)"),
                (503, "the outbox failing"),
            ]),
        )
        .route(
            Method::Post,
            "/api/v1/deliveries/{id}/redeliver",
            Operation::new(
                "redeliverDelivery",
                DELIVERIES,
                "Send a webhook delivery again",
            )
            .description(
                "A delivered or dead delivery goes back to pending, due now, attempts \
                     reset, with the same `webhook-id` and body.",
            )
            .path::<DeliveryId>("id", DELIVERY_ID)
            .ok::<DeliveryAnswer>(202, "queued again")
            .errors(&[
                BAD_DELIVERY_ID,
                (
                    404,
                    "no such delivery (or another department's), or its subscription is gone",
                ),
                (409, "the delivery is pending"),
                (503, "shutting down, or the outbox failing"),
            ]),
        )
        .route(
            Method::Get,
            "/api/v1/webhooks/payload-schema",
            Operation::new(
                "getWebhookPayloadSchema",
                SUBSCRIPTIONS,
                "Get the JSON Schema of webhook payloads",
            )
            .ok_as::<PayloadSchemaDocument>(
                200,
                "the payload's JSON Schema (draft 2020-12)",
                "application/schema+json",
            ),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn properties<T: JsonSchema>() -> Vec<String> {
        let schema = schemars::schema_for!(T);
        let mut names: Vec<String> = schema
            .get("properties")
            .and_then(serde_json::Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        names.sort();
        names
    }

    /// The query parameters the handlers take are those the description's structs have.
    #[test]
    fn described_query_parameters_are_those_parsed() {
        assert_eq!(
            properties::<SubscriptionQuery>(),
            sorted(SubscriptionQuery::PARAMETERS)
        );
        assert_eq!(properties::<DeliveryQuery>(), sorted(DELIVERY_PARAMETERS));
    }
}
