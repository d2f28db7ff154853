//! The routes and the server loop: every route of the crate on one router, with the layers
//! that count, rate-limit and authorize each request.

use std::future::Future;
use std::net::SocketAddr;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ioc_schemas::api_error::ApiError as HttpError;
use ioc_schemas::Principal;
use prometheus::TextEncoder;
use tokio::net::TcpListener;
use tracing::{info, warn, Instrument};

use crate::config::HttpConfig;
use crate::error::ApiError;
use crate::health::HealthStatus;
use crate::state::ApiState;

/// The routes: `GET /healthz`, `GET /metrics`, `GET /ws` and the REST API under `/api/v1`
/// (see the crate docs). Unknown paths and methods answer JSON errors.
pub fn router(state: ApiState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] with `extra` routes beside them (the alerts' REST API, served by iocd), counted
/// in the same request metrics.
pub fn router_with(state: ApiState, extra: Router) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/health", get(healthz))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .route("/metrics", get(metrics))
        .route("/ws", get(websocket))
        .route("/api/v1/kpis/{family}", get(crate::history::kpi_history))
        .route("/api/v1/dead-letters", get(crate::history::dead_letters))
        .merge(crate::rest::routes())
        .merge(crate::auth::routes())
        .merge(crate::page::routes())
        .with_state(state.clone())
        .merge(extra)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(state.max_body_bytes()))
        // Inside the rate limit (a client guessing tokens is throttled) and the request
        // count (401 and 403 are counted).
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authorize,
        ))
        .layer(middleware::from_fn_with_state(
            state.rate_limiter(),
            crate::limits::rate_limit,
        ))
        // `Router::layer` runs after routing, so the matched route template is known.
        .layer(middleware::from_fn_with_state(state, count_requests))
}

/// Binds `config.listen`.
pub async fn bind(config: &HttpConfig) -> Result<TcpListener, ApiError> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| ApiError::Bind {
            addr: config.listen,
            source,
        })
}

/// Serves [`router`] on `listener` until `shutdown` resolves, then stops accepting, closes
/// WebSocket connections (close code 1001) and waits for HTTP requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    serve_with(listener, state, Router::new(), shutdown).await
}

/// [`serve`] with `extra` routes (see [`router_with`]).
pub async fn serve_with(
    listener: TcpListener,
    state: ApiState,
    extra: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    let closing = state.closer();
    match listener.local_addr() {
        Ok(addr) => info!(%addr, "http api listening"),
        Err(e) => warn!(error = %e, "http api listening on an unknown address"),
    }
    // The client's address is what the rate limit counts by.
    let app = router_with(state, extra).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            info!("http api shutting down");
            closing.send_replace(true);
        })
        .await
        .map_err(ApiError::Serve)
}

/// The answer for paths no route matches.
async fn not_found() -> HttpError {
    HttpError::not_found("no such route")
}

/// The answer for a known path asked with a method it does not serve.
async fn method_not_allowed() -> HttpError {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not serve that method",
    )
}

/// Counts the request by route template and status, and runs it in a span naming both
/// method and route (so what a handler logs says which request it was).
async fn count_requests(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    // A cheap clone (a shared string): the request moves on.
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let span = tracing::info_span!("http_request", method = %request.method(), route);
    let response = next.run(request).instrument(span).await;
    state
        .metrics()
        .request_counters
        .inc(route, response.status().as_u16());
    response
}

async fn healthz(State(state): State<ApiState>) -> Response {
    let report = state.health().report();
    let status = match report.status {
        HealthStatus::Ok => StatusCode::OK,
        HealthStatus::Degraded => StatusCode::SERVICE_UNAVAILABLE,
    };
    (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(report),
    )
        .into_response()
}

async fn metrics(State(state): State<ApiState>) -> Response {
    match TextEncoder::new().encode_to_string(&state.registry().gather()) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(prometheus::TEXT_FORMAT),
            )],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}"),
        )
            .into_response(),
    }
}

async fn websocket(
    State(state): State<ApiState>,
    principal: Option<axum::Extension<Principal>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(e) => {
            return HttpError::new(
                e.status(),
                "websocket_required",
                format!("/ws speaks WebSocket only: {}", e.body_text()),
            )
            .into_response()
        }
    };
    // A department's `alerts` channel carries its own department's alerts only.
    let confined = principal
        .as_ref()
        .and_then(|axum::Extension(p)| p.confined_to());
    // The session outlives this request: a span of its own, not a child of the request's.
    let span = tracing::info_span!(
        parent: None,
        "ws_session",
        client = principal.as_ref().map(|axum::Extension(p)| p.name.as_str()),
        department = confined.map(|d| d.slug()),
    );
    upgrade
        .max_message_size(crate::ws::MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| crate::ws::serve_socket(socket, state, confined).instrument(span))
}
