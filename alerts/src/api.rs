//! The REST API of alerts: rules (`/api/v1/rules`), alerts (`/api/v1/alerts`), and the
//! webhook subscriptions and deliveries (`/api/v1/subscriptions`, `/api/v1/deliveries`).
//! Errors are JSON, `{"error":{"code":"...","message":"...","field":"..."}}` (`field` when one
//! field or query parameter is at fault; a bad query string says it as every route does,
//! through `ioc_schemas::query`).
//!
//! Department scoping: when the request carries an `ioc_schemas::Principal` (access control
//! on) of a department token, it sees and acts on only its department's alerts (another
//! department's alert is `404 not_found`, a listing asking for another department is
//! `403 forbidden`), and may read rules but not change them (`403 forbidden`). Without a
//! principal everything is allowed.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use ioc_schemas::openapi::{ApiDescription, Method, Operation};
use ioc_schemas::query::QueryProblem;
use ioc_schemas::{Alert, AlertEvent, AlertState, Category, Department, District, Severity};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use ioc_alert_engine::lifecycle::{AlertFilter, LifecycleError};
use ioc_alert_engine::rules::{Rule, RuleError};
use ioc_schemas::api_error::ApiError;

use crate::http::{
    confined, error_text, forbidden, query_rejected, scoped_department, Caller, PathId,
};
use crate::manager::{Action, Alerts, AlertsError};

/// The alerts' routes, to serve beside the rest of the API.
pub fn router(alerts: Alerts) -> Router {
    let webhooks = crate::webhooks::router(alerts.dispatcher().clone());
    Router::new()
        .route("/api/v1/rules", get(list_rules).post(create_rule))
        .route(
            "/api/v1/rules/{id}",
            get(get_rule).put(put_rule).delete(delete_rule),
        )
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/{id}", get(get_alert))
        .route("/api/v1/alerts/{id}/acknowledge", post(acknowledge))
        .route("/api/v1/alerts/{id}/resolve", post(resolve))
        .route("/api/v1/alerts/{id}/comments", post(comment))
        .with_state(alerts)
        .merge(webhooks)
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code, message)
}

impl From<AlertsError> for ApiError {
    fn from(e: AlertsError) -> ApiError {
        let message = error_text(&e);
        match e {
            AlertsError::Rule(RuleError::NotFound(_))
            | AlertsError::Lifecycle(LifecycleError::NotFound(_)) => ApiError::not_found(message),
            AlertsError::Rule(RuleError::Duplicate(_)) => {
                error(StatusCode::CONFLICT, "conflict", message)
            }
            AlertsError::Rule(RuleError::InUse { .. })
            | AlertsError::Lifecycle(LifecycleError::AlreadyResolved(_)) => {
                error(StatusCode::CONFLICT, "conflict", message)
            }
            AlertsError::Rule(_) => error(StatusCode::BAD_REQUEST, "invalid_rule", message),
            AlertsError::Lifecycle(_) => error(StatusCode::BAD_REQUEST, "invalid_action", message),
            AlertsError::Stopped | AlertsError::State(_) | AlertsError::Webhook(_) => {
                ApiError::unavailable(message)
            }
            AlertsError::RulesFile { .. } | AlertsError::Metrics(_) => {
                error(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

/// A JSON body, with serde's complaint as a JSON error.
fn body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    payload.map(|Json(v)| v).map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is larger than the server accepts (http.max_body_bytes)",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as json, with `content-type: application/json`",
        ),
        _ => error(StatusCode::BAD_REQUEST, "invalid_body", e.body_text()),
    })
}

/// The rules listed.
#[derive(Debug, Serialize, JsonSchema)]
struct RuleList {
    /// How many.
    count: usize,
    /// The rules running, in the order they were added.
    rules: Vec<Rule>,
}

async fn list_rules(State(alerts): State<Alerts>) -> Result<Response, ApiError> {
    let rules = alerts.rules().await?;
    Ok(Json(RuleList {
        count: rules.len(),
        rules,
    })
    .into_response())
}

async fn get_rule(
    State(alerts): State<Alerts>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let rules = alerts.rules().await?;
    rules
        .into_iter()
        .find(|r| r.id == id)
        .map(|r| Json(r).into_response())
        .ok_or_else(|| ApiError::not_found(format!("no rule `{id}`")))
}

/// `403` for a department token: rules are the IOC's, not a department's.
fn check_rule_write(caller: &Caller) -> Result<(), ApiError> {
    match confined(caller) {
        Some(_) => Err(forbidden(
            "a department token may read rules, not change them",
        )),
        None => Ok(()),
    }
}

async fn create_rule(
    State(alerts): State<Alerts>,
    caller: Caller,
    payload: Result<Json<Rule>, JsonRejection>,
) -> Result<Response, ApiError> {
    check_rule_write(&caller)?;
    let rule = body(payload)?;
    let id = rule.id.clone();
    alerts.put_rule(rule.clone(), true).await?;
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, format!("/api/v1/rules/{id}"))],
        Json(rule),
    )
        .into_response())
}

async fn put_rule(
    State(alerts): State<Alerts>,
    caller: Caller,
    Path(id): Path<String>,
    payload: Result<Json<Rule>, JsonRejection>,
) -> Result<Response, ApiError> {
    check_rule_write(&caller)?;
    let rule = body(payload)?;
    if rule.id != id {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_rule",
            format!("the body's id `{}` is not the path's `{id}`", rule.id),
        ));
    }
    let created = alerts.put_rule(rule.clone(), false).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(rule)).into_response())
}

async fn delete_rule(
    State(alerts): State<Alerts>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_rule_write(&caller)?;
    alerts.delete_rule(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/alerts` query parameters; each is optional, and all given must match.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
struct AlertQuery {
    /// Only alerts in this state.
    state: Option<AlertState>,
    /// Only open (`true`: active or acknowledged) or only resolved (`false`) alerts.
    open: Option<bool>,
    /// Only alerts at least this severe.
    min_severity: Option<Severity>,
    /// Only this category.
    category: Option<Category>,
    /// Only this department's (a department token may name only its own).
    department: Option<Department>,
    /// Only this district's.
    district: Option<District>,
    /// Only this rule's (its id; `storm:<scope>` for storm summaries).
    rule: Option<String>,
    /// Only about this entity (a device id, a district slug, ...).
    entity: Option<String>,
    /// Only alerts storm control kept from being notified (`true`) or only the others.
    suppressed: Option<bool>,
    /// At most this many, newest first: 1 to 1000 (default 100; anything else is `400
    /// invalid_query`).
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<usize>,
}

/// The alerts listed.
#[derive(Debug, Serialize, JsonSchema)]
struct AlertList {
    /// How many.
    count: usize,
    /// The alerts, newest first.
    alerts: Vec<Alert>,
}

/// The most alerts one listing returns; a larger `limit` is `400 invalid_query`.
const MAX_LIMIT: usize = 1_000;
/// The alerts one listing returns without a `limit`.
const DEFAULT_LIMIT: usize = 100;

async fn list_alerts(
    State(alerts): State<Alerts>,
    caller: Caller,
    query: Result<Query<AlertQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| query_rejected(&e))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_query(QueryProblem {
            message: format!("limit must be 1 to {MAX_LIMIT}, not {limit}"),
            field: Some("limit".to_owned()),
        }));
    }
    let filter = AlertFilter {
        state: q.state,
        open: q.open,
        min_severity: q.min_severity,
        category: q.category,
        department: scoped_department(&caller, q.department)?,
        district: q.district,
        rule_id: q.rule,
        entity_id: q.entity,
        suppressed: q.suppressed,
        limit: Some(limit),
    };
    let found = alerts.list(filter).await?;
    Ok(Json(AlertList {
        count: found.len(),
        alerts: found,
    })
    .into_response())
}

fn alert_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no alert `{id}`"))
}

/// The alert, when it exists and the caller may see it (another department's is not found).
async fn visible_alert(alerts: &Alerts, caller: &Caller, id: &str) -> Result<Alert, ApiError> {
    let own = confined(caller);
    alerts
        .get(id)
        .await?
        .filter(|a| own.is_none_or(|d| a.department == d))
        .ok_or_else(|| alert_not_found(id))
}

/// For a department token: `404` unless the alert is its department's.
async fn check_alert(alerts: &Alerts, caller: &Caller, id: &str) -> Result<(), ApiError> {
    if confined(caller).is_some() {
        visible_alert(alerts, caller, id).await?;
    }
    Ok(())
}

async fn get_alert(
    State(alerts): State<Alerts>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let alert = visible_alert(&alerts, &caller, &id).await?;
    Ok(Json(alert).into_response())
}

/// The body of an operator's action on an alert.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AlertAction")]
struct ActionBody {
    /// Who acts; with access control on, the token's name is recorded instead, so a caller
    /// cannot act under another's name.
    #[serde(default)]
    actor: Option<String>,
    /// For a comment: the text.
    #[serde(default)]
    text: Option<String>,
}

/// What an operator does to an alert.
#[derive(Debug, Clone, Copy)]
enum Verb {
    Acknowledge,
    Resolve,
    Comment,
}

/// Checks the caller may act on the alert, takes the actor from its token (or the body when
/// access control is off) and applies the action.
async fn act(
    alerts: Alerts,
    caller: Caller,
    id: String,
    payload: Result<Json<ActionBody>, JsonRejection>,
    verb: Verb,
) -> Result<Response, ApiError> {
    check_alert(&alerts, &caller, &id).await?;
    let b = body(payload)?;
    let actor = match (&caller, b.actor) {
        (Some(Extension(principal)), _) => principal.name.clone(),
        (None, Some(actor)) => actor,
        (None, None) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "say who acts: `actor`",
            ))
        }
    };
    let action = match verb {
        Verb::Acknowledge => Action::Acknowledge { id, actor },
        Verb::Resolve => Action::Resolve { id, actor },
        Verb::Comment => {
            let text = b.text.ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "a comment needs `text`",
                )
            })?;
            Action::Comment { id, actor, text }
        }
    };
    let event = alerts.act(action).await?;
    let status = match verb {
        Verb::Comment => StatusCode::CREATED,
        Verb::Acknowledge | Verb::Resolve => StatusCode::OK,
    };
    Ok((status, Json(event)).into_response())
}

async fn acknowledge(
    State(alerts): State<Alerts>,
    caller: Caller,
    Path(id): Path<String>,
    payload: Result<Json<ActionBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    act(alerts, caller, id, payload, Verb::Acknowledge).await
}

async fn resolve(
    State(alerts): State<Alerts>,
    caller: Caller,
    Path(id): Path<String>,
    payload: Result<Json<ActionBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    act(alerts, caller, id, payload, Verb::Resolve).await
}

async fn comment(
    State(alerts): State<Alerts>,
    caller: Caller,
    Path(id): Path<String>,
    payload: Result<Json<ActionBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    act(alerts, caller, id, payload, Verb::Comment).await
}

/// The operations of [`router`] (the webhooks' included), for the OpenAPI document.
pub fn api_description() -> ApiDescription {
    const RULES: &str = "Rules";
    const ALERTS: &str = "Alerts";
    const RULE_ID: &str = "the rule's id";
    const ALERT_ID: &str = "the alert's id (`<rule id>:<entity id>:<opened_ms>`)";
    const STOPPED: (u16, &str) = (503, "alerts are stopping, or the state file failing");
    const BAD_RULE: (u16, &str) = (
        400,
        "the body is not JSON or not a rule (`invalid_body`), or the rule is not valid \
         (`invalid_rule`: the message names the field)",
    );
    const RULE_WRITE: (u16, &str) = (
        403,
        "the token's role may not do this; a department token may not change rules",
    );
    const ALERT_NOT_FOUND: (u16, &str) = (404, "no such alert (or another department's)");
    const ACTION: &str = "With access control on, the actor recorded is the token's name and \
         `actor` is ignored; without it, `actor` is required (`400`). A department token may act \
         only on its department's alerts (another's is `404`).";
    ApiDescription::new()
        .route(
            Method::Get,
            "/api/v1/rules",
            Operation::new("listRules", RULES, "List the alert rules")
                .ok::<RuleList>(200, "the rules running")
                .errors(&[STOPPED]),
        )
        .route(
            Method::Post,
            "/api/v1/rules",
            Operation::new("createRule", RULES, "Add an alert rule")
                .description(
                    "Validated against the whole set, stored, and in force for the next \
                     observation. A department token may not change rules (`403`).",
                )
                .body::<Rule>()
                .ok::<Rule>(201, "added; `Location` names it")
                .errors(&[BAD_RULE, RULE_WRITE, (409, "a rule has this id"), STOPPED]),
        )
        .route(
            Method::Get,
            "/api/v1/rules/{id}",
            Operation::new("getRule", RULES, "Get an alert rule")
                .path::<PathId>("id", RULE_ID)
                .ok::<Rule>(200, "the rule")
                .errors(&[(404, "no such rule"), STOPPED]),
        )
        .route(
            Method::Put,
            "/api/v1/rules/{id}",
            Operation::new("putRule", RULES, "Add or replace an alert rule")
                .description(
                    "The body's `id` must be the path's (`400`). A department token may not \
                     change rules (`403`).",
                )
                .path::<PathId>("id", RULE_ID)
                .body::<Rule>()
                .ok::<Rule>(200, "replaced")
                .ok::<Rule>(201, "added")
                .errors(&[BAD_RULE, RULE_WRITE, STOPPED]),
        )
        .route(
            Method::Delete,
            "/api/v1/rules/{id}",
            Operation::new("deleteRule", RULES, "Remove an alert rule")
                .description(
                    "Its open alerts resolve. A department token may not change rules (`403`).",
                )
                .path::<PathId>("id", RULE_ID)
                .empty(204, "removed")
                .errors(&[
                    RULE_WRITE,
                    (404, "no such rule"),
                    (409, "a composite rule uses it"),
                    STOPPED,
                ]),
        )
        .route(
            Method::Get,
            "/api/v1/alerts",
            Operation::new("listAlerts", ALERTS, "List alerts")
                .description(
                    "Newest first. A department token sees only its department's (`403` when \
                     `department` names another one).",
                )
                .query_struct::<AlertQuery>()
                .ok::<AlertList>(200, "the alerts")
                .errors(&[
                    (
                        400,
                        "an unknown parameter, or a value that is not valid, `limit` over 1000 \
                         included (`invalid_query`; `field` names the parameter)",
                    ),
                    (
                        403,
                        "the token's role may not do this, or a department token named another \
                         department",
                    ),
                    STOPPED,
                ]),
        )
        .route(
            Method::Get,
            "/api/v1/alerts/{id}",
            Operation::new("getAlert", ALERTS, "Get an alert")
                .path::<PathId>("id", ALERT_ID)
                .ok::<Alert>(200, "the alert")
                .errors(&[ALERT_NOT_FOUND, STOPPED]),
        )
        .route(
            Method::Post,
            "/api/v1/alerts/{id}/acknowledge",
            Operation::new("acknowledgeAlert", ALERTS, "Acknowledge an alert")
                .description(ACTION)
                .path::<PathId>("id", ALERT_ID)
                .body::<ActionBody>()
                .ok::<AlertEvent>(200, "acknowledged: the event")
                .errors(&[
                    (
                        400,
                        "the body is not valid (`invalid_body`: not JSON, unknown fields, no \
                         `actor` without access control), or (`invalid_action`) the actor is \
                         blank or too long, or the alert is acknowledged already",
                    ),
                    ALERT_NOT_FOUND,
                    (409, "the alert is resolved"),
                    STOPPED,
                ]),
        )
        .route(
            Method::Post,
            "/api/v1/alerts/{id}/resolve",
            Operation::new("resolveAlert", ALERTS, "Resolve an alert")
                .description(ACTION)
                .path::<PathId>("id", ALERT_ID)
                .body::<ActionBody>()
                .ok::<AlertEvent>(200, "resolved: the event")
                .errors(&[
                    (
                        400,
                        "the body is not valid (`invalid_body`: not JSON, unknown fields, no \
                         `actor` without access control), or the actor is blank or too long \
                         (`invalid_action`)",
                    ),
                    ALERT_NOT_FOUND,
                    (409, "the alert is resolved already"),
                    STOPPED,
                ]),
        )
        .route(
            Method::Post,
            "/api/v1/alerts/{id}/comments",
            Operation::new("commentAlert", ALERTS, "Comment on an alert")
                .description(ACTION)
                .path::<PathId>("id", ALERT_ID)
                .body::<ActionBody>()
                .ok::<AlertEvent>(201, "commented: the event")
                .errors(&[
                    (
                        400,
                        "the body is not valid (`invalid_body`: not JSON, unknown fields, no \
                         `text`, no `actor` without access control), or (`invalid_action`) the \
                         actor or the text is blank or too long",
                    ),
                    ALERT_NOT_FOUND,
                    STOPPED,
                ]),
        )
        .merge(crate::webhooks::api::api_description())
}
