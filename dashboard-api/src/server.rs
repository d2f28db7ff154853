//! The shared state, the routes and the server loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::{Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::health::HealthStatus;
use crate::{ApiError, ApiMetrics, Health, HttpConfig, LiveFeed};

/// Everything the handlers share. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ApiState {
    inner: Arc<StateInner>,
}

#[derive(Debug)]
struct StateInner {
    registry: Registry,
    metrics: ApiMetrics,
    health: Health,
    feed: LiveFeed,
    ws_buffer: usize,
    ws_ping_interval: Duration,
    /// Set when [`serve`]'s shutdown future resolves, so WebSocket connections (which the
    /// HTTP server no longer tracks once upgraded) close too.
    closing: watch::Sender<bool>,
}

impl ApiState {
    /// Validates `config`, registers [`ApiMetrics`] in `registry` (which `/metrics`
    /// renders, with whatever else is registered in it) and creates the live feed and the
    /// health source. Hand [`ApiState::feed`] and [`ApiState::health`] to the components
    /// that publish results and report health.
    pub fn new(config: &HttpConfig, registry: Registry) -> Result<Self, ApiError> {
        config.validate()?;
        let metrics = ApiMetrics::new(&registry)?;
        let feed = LiveFeed::new(config.broadcast_capacity, &metrics);
        let (closing, _) = watch::channel(false);
        Ok(ApiState {
            inner: Arc::new(StateInner {
                registry,
                metrics,
                health: Health::new(),
                feed,
                ws_buffer: config.ws_buffer,
                ws_ping_interval: Duration::from_millis(config.ws_ping_interval_ms),
                closing,
            }),
        })
    }

    /// The live feed: publish window results here.
    pub fn feed(&self) -> &LiveFeed {
        &self.inner.feed
    }

    /// The health source: set component states here.
    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    /// The API's own metrics.
    pub fn metrics(&self) -> &ApiMetrics {
        &self.inner.metrics
    }

    /// The registry rendered at `/metrics`.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub(crate) fn ws_buffer(&self) -> usize {
        self.inner.ws_buffer
    }

    pub(crate) fn ws_ping_interval(&self) -> Duration {
        self.inner.ws_ping_interval
    }

    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }
}

/// The routes: `GET /healthz`, `GET /metrics`, `GET /ws`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/ws", get(websocket))
        // `Router::layer` runs after routing, so the matched route template is known.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
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
    let closing = state.inner.closing.clone();
    match listener.local_addr() {
        Ok(addr) => info!(%addr, "http api listening"),
        Err(e) => warn!(error = %e, "http api listening on an unknown address"),
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            info!("http api shutting down");
            closing.send_replace(true);
        })
        .await
        .map_err(ApiError::Serve)
}

async fn count_requests(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    state
        .metrics()
        .http_requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
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

async fn websocket(State(state): State<ApiState>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .max_message_size(crate::ws::MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| crate::ws::serve_socket(socket, state))
}
