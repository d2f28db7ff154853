//! Bearer-token access control: the middleware that checks every request against the role
//! matrix (see the crate docs) and the admin token API, over the token store
//! ([`Tokens`](crate::token_store::Tokens)).

use std::collections::HashMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use ioc_schemas::api_error::ApiError as HttpError;
use ioc_schemas::{Department, Principal, Role};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::chain;
use crate::extract::{invalid_path, ApiBody, JsonBody};
use crate::metrics::AuthFailure;
use crate::state::ApiState;
use crate::token_store::{Refusal, Source};

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

fn is_write(method: &Method) -> bool {
    method == Method::POST || method == Method::PUT || method == Method::DELETE
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The `token` query parameter.
fn query_token(uri: &Uri) -> Option<String> {
    let Query(params) = Query::<HashMap<String, String>>::try_from_uri(uri).ok()?;
    params.get("token").filter(|t| !t.is_empty()).cloned()
}

/// Whether `role` may send `method` to `path` (see the crate docs).
fn permits(role: Role, method: &Method, path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let api = match segments.as_slice() {
        ["api", "v1", rest @ ..] => Some(rest),
        _ => None,
    };
    if let Some(["tokens", ..]) = api {
        return role == Role::Admin;
    }
    let read = is_read(method);
    let post = method == Method::POST;
    match role {
        Role::Admin => true,
        Role::Analyst => read,
        Role::Operator => {
            read || match api {
                Some(["alerts", _, "acknowledge" | "resolve" | "comments"]) => post,
                Some(["devices" | "rules", ..]) => is_write(method),
                _ => false,
            }
        }
        Role::Department => match api {
            None => read && segments.as_slice() == ["ws"],
            Some(rest) => match rest {
                ["alerts", _, "acknowledge" | "resolve" | "comments"] => read || post,
                ["deliveries", _, "redeliver"] => read || post,
                ["subscriptions", ..] => read || is_write(method),
                ["alerts" | "devices" | "rules" | "webhooks" | "deliveries" | "kpis" | "health", ..] => {
                    read
                }
                _ => false,
            },
        },
    }
}

/// What `role` may do, for 403 messages.
fn may_do(role: Role) -> &'static str {
    match role {
        Role::Admin => "do everything",
        Role::Analyst => "only read (GET); tokens are for admins",
        Role::Operator => {
            "read everything, act on alerts (acknowledge, resolve, comment) and change devices \
             and rules; not subscriptions, deliveries or tokens"
        }
        Role::Department => {
            "use the WebSocket, read alerts, devices, rules, webhooks, deliveries, KPIs and health, act on \
             alerts, manage subscriptions and redeliver deliveries"
        }
    }
}

fn refuse(state: &ApiState, failure: AuthFailure, message: String) -> Response {
    state.metrics().auth_failure(failure).inc();
    match failure {
        AuthFailure::Missing | AuthFailure::Unknown => {
            let mut response =
                HttpError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        AuthFailure::Forbidden => {
            HttpError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response()
        }
    }
}

/// Answers 401 to a request without a known token and 403 to one its role may not make;
/// otherwise puts the caller's [`Principal`] in the request's extensions.
pub(crate) async fn authorize(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let tokens = state.tokens();
    if !tokens.enabled {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let read = is_read(&method);
    if read
        && (path == "/healthz"
            || path == "/openapi.json"
            || (path == "/metrics" && tokens.metrics_public)
            || crate::page::is_public(&path))
    {
        return next.run(request).await;
    }
    let token = bearer(request.headers()).or_else(|| {
        (read && path == "/ws")
            .then(|| query_token(request.uri()))
            .flatten()
    });
    let Some(token) = token else {
        return refuse(
            &state,
            AuthFailure::Missing,
            "this route needs a token: send `Authorization: Bearer <token>`".to_owned(),
        );
    };
    let Some(principal) = tokens.lookup(&token) else {
        return refuse(&state, AuthFailure::Unknown, "unknown token".to_owned());
    };
    if !permits(principal.role, &method, &path) {
        let role = principal.role.as_str();
        return refuse(
            &state,
            AuthFailure::Forbidden,
            format!(
                "the {role} role may {}: `{method} {path}` is not allowed to token `{}`",
                may_do(principal.role),
                principal.name
            ),
        );
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssueRequest {
    /// Who the token is for: 1 to 64 ASCII letters, digits, `_`, `-`, `.` or `@`; unique.
    name: String,
    /// What it may do.
    role: Role,
    /// The department, required for (and only for) the `department` role.
    #[serde(default)]
    department: Option<Department>,
}

impl ApiBody for IssueRequest {
    const INVALID: &'static str = "invalid_token_request";
    const WHAT: &'static str = "token request";
}

/// A token as the API shows it: never its hash.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct TokenView {
    /// Who holds it.
    name: String,
    /// What it may do.
    role: Role,
    /// Its department (department role only).
    department: Option<Department>,
    /// `config` (configured, cannot be deleted here) or `issued` (through this API).
    source: Source,
}

/// `GET /api/v1/tokens`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct TokenList {
    /// Every token, by name.
    tokens: Vec<TokenView>,
    /// `tokens.len()`.
    count: usize,
}

/// A token just issued: the only time it is shown.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Issued {
    /// Who holds it.
    name: String,
    /// What it may do.
    role: Role,
    /// Its department (department role only).
    department: Option<Department>,
    /// The token: send it as `Authorization: Bearer <token>`.
    token: String,
}

fn refusal(refusal: Refusal) -> HttpError {
    match refusal {
        Refusal::Invalid(m) => HttpError::new(StatusCode::BAD_REQUEST, "invalid_token_request", m),
        Refusal::Exists(name) => HttpError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("a token named `{name}` exists; delete it first"),
        ),
        Refusal::Missing(name) => HttpError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no token `{name}`"),
        ),
        Refusal::Configured(name) => HttpError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("token `{name}` comes from the configuration; remove it there"),
        ),
        Refusal::Failed(e) => {
            let e = chain(&e);
            warn!(error = %e, "token change failed");
            HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the token change failed: {e}"),
            )
        }
    }
}

fn actor(principal: Option<&Extension<Principal>>) -> &str {
    principal.map_or("anonymous", |Extension(p)| p.name.as_str())
}

async fn issue(
    State(state): State<ApiState>,
    principal: Option<Extension<Principal>>,
    JsonBody(request): JsonBody<IssueRequest>,
) -> Result<Response, HttpError> {
    let IssueRequest {
        name,
        role,
        department,
    } = request;
    let token = state
        .tokens()
        .issue(name.clone(), role, department)
        .map_err(refusal)?;
    info!(
        name,
        role = role.as_str(),
        by = actor(principal.as_ref()),
        "token issued"
    );
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(Issued {
            name,
            role,
            department,
            token,
        }),
    )
        .into_response())
}

async fn list(State(state): State<ApiState>) -> Json<TokenList> {
    let tokens: Vec<TokenView> = state
        .tokens()
        .snapshot()
        .iter()
        .map(|e| TokenView {
            name: e.spec.name.clone(),
            role: e.spec.role,
            department: e.spec.department,
            source: e.source,
        })
        .collect();
    Json(TokenList {
        count: tokens.len(),
        tokens,
    })
}

async fn revoke(
    State(state): State<ApiState>,
    principal: Option<Extension<Principal>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, HttpError> {
    let Path(name) = name.map_err(|e| invalid_path(&e))?;
    state.tokens().revoke(&name).map_err(refusal)?;
    info!(name, by = actor(principal.as_ref()), "token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// The token API; `router` adds it.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/tokens", get(list).post(issue))
        .route("/api/v1/tokens/{name}", delete(revoke))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_matrix() {
        use Role::{Admin, Analyst, Department as Dept, Operator};
        let (get, post, put, del) = (Method::GET, Method::POST, Method::PUT, Method::DELETE);
        let cases: &[(Role, &Method, &str, bool)] = &[
            (Admin, &del, "/api/v1/tokens/x", true),
            (Admin, &post, "/api/v1/anything", true),
            (Analyst, &get, "/ws", true),
            (Analyst, &get, "/api/v1/subscriptions", true),
            (Analyst, &get, "/api/v1/tokens", false),
            (Analyst, &post, "/api/v1/alerts/a/acknowledge", false),
            (Operator, &get, "/api/v1/deliveries", true),
            (Operator, &get, "/api/v1/tokens", false),
            (Operator, &post, "/api/v1/alerts/a/resolve", true),
            (Operator, &post, "/api/v1/alerts/a/comments", true),
            (Operator, &post, "/api/v1/alerts/a/other", false),
            (Operator, &put, "/api/v1/devices/d", true),
            (Operator, &del, "/api/v1/rules/r", true),
            (Operator, &post, "/api/v1/subscriptions", false),
            (Operator, &post, "/api/v1/deliveries/x/redeliver", false),
            (Operator, &post, "/api/v1/tokens", false),
            (Dept, &get, "/ws", true),
            (Dept, &get, "/metrics", false),
            (Dept, &get, "/api/v1/alerts", true),
            (Dept, &get, "/api/v1/devices/unknown", true),
            (Dept, &get, "/api/v1/rules/r", true),
            (Dept, &get, "/api/v1/webhooks/deliveries", true),
            (Dept, &get, "/api/v1/tokens", false),
            (Dept, &get, "/api/v1/kpis/air", true),
            (Dept, &get, "/api/v1/health", true),
            (Analyst, &get, "/api/v1/kpis/traffic", true),
            (Dept, &get, "/api/v1/other", false),
            (Dept, &post, "/api/v1/alerts/a/acknowledge", true),
            (Dept, &post, "/api/v1/devices", false),
            (Dept, &put, "/api/v1/subscriptions/s", true),
            (Dept, &del, "/api/v1/subscriptions/s", true),
            (Dept, &post, "/api/v1/deliveries/x/redeliver", true),
            (Dept, &del, "/api/v1/deliveries/x", false),
            (Dept, &put, "/api/v1/rules/r", false),
        ];
        for (role, method, path, allowed) in cases {
            assert_eq!(
                permits(*role, method, path),
                *allowed,
                "{role:?} {method} {path}"
            );
        }
    }

    #[test]
    fn bearer_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&headers).as_deref(), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
        let uri: Uri = "/ws?x=1&token=t%2B1".parse().unwrap();
        assert_eq!(query_token(&uri).as_deref(), Some("t+1"));
    }
}
