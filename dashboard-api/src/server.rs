//! The shared state, the routes and the server loop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ioc_schemas::openapi::ApiDescription;
use ioc_schemas::{Department, Device, Principal, Role};
use prometheus::{Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::health::HealthStatus;
use crate::rest::{self, RestError};
use crate::{
    ApiError, ApiMetrics, DeviceDirectory, Health, HttpConfig, LiveFeed, RegistryRequest,
    UnknownDevices,
};

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
    devices: DeviceDirectory,
    unknown: UnknownDevices,
    /// Where registry changes go; none: the registry is read-only.
    registry_sender: RwLock<Option<mpsc::Sender<RegistryRequest>>>,
    /// Held by the registry change in flight: changes go to the pipeline one at a time.
    registry_writer: Arc<tokio::sync::Mutex<()>>,
    registry_timeout: Duration,
    rate_limiter: Option<crate::limits::RateLimiter>,
    max_body_bytes: usize,
    ws_buffer: usize,
    ws_ping_interval: Duration,
    /// The tokens access control knows.
    tokens: crate::auth::Tokens,
    /// The operations of the routes served beside this crate's (see [`router_with`]).
    extra_api: RwLock<ApiDescription>,
    /// Where KPI history is read; unset: from memory, or 503 once a store is expected.
    history: std::sync::OnceLock<ioc_store::Store>,
    /// Set by [`ApiState::expect_history_store`].
    history_expected: std::sync::atomic::AtomicBool,
    /// What the operator page needs to know of the server.
    dashboard: crate::DashboardConfig,
    /// Set when [`serve`]'s shutdown future resolves, so WebSocket connections (which the
    /// HTTP server no longer tracks once upgraded) close too.
    closing: watch::Sender<bool>,
}

impl ApiState {
    /// Validates `config`, registers [`ApiMetrics`] in `registry` (which `/metrics`
    /// renders, with whatever else is registered in it) and creates the live feed, the
    /// health source, an empty device directory and the unknown-device list. Hand
    /// [`ApiState::feed`], [`ApiState::health`] and [`ApiState::unknown_devices`] to the
    /// components that publish results, report health and meet unregistered devices; fill
    /// the directory with [`ApiState::with_devices`] and make the registry writable with
    /// [`ApiState::set_registry_sender`].
    pub fn new(config: &HttpConfig, registry: Registry) -> Result<Self, ApiError> {
        config.validate()?;
        let metrics = ApiMetrics::new(&registry)?;
        let devices = DeviceDirectory::new();
        let recent = Arc::new(crate::history::RecentKpis::new(
            config.history_memory_rows,
            metrics.history_memory_evicted.clone(),
        ));
        let feed = LiveFeed::with_directory(
            config.broadcast_capacity,
            config.snapshot_max_keys,
            &metrics,
            devices.clone(),
            recent,
        );
        let unknown = UnknownDevices::new(config.unknown_devices_max, &metrics);
        let (closing, _) = watch::channel(false);
        let tokens = crate::auth::Tokens::new(&config.auth)?;
        Ok(ApiState {
            inner: Arc::new(StateInner {
                registry,
                metrics,
                health: Health::new(),
                feed,
                devices,
                unknown,
                registry_sender: RwLock::new(None),
                registry_writer: Arc::new(tokio::sync::Mutex::new(())),
                registry_timeout: Duration::from_millis(config.registry_timeout_ms),
                rate_limiter: crate::limits::RateLimiter::new(
                    config.rate_limit_per_s,
                    config.rate_limit_burst,
                ),
                max_body_bytes: config.max_body_bytes,
                ws_buffer: config.ws_buffer,
                ws_ping_interval: Duration::from_millis(config.ws_ping_interval_ms),
                tokens,
                history: std::sync::OnceLock::new(),
                history_expected: std::sync::atomic::AtomicBool::new(false),
                extra_api: RwLock::new(ApiDescription::new()),
                dashboard: config.dashboard.clone(),
                closing,
            }),
        })
    }

    /// Adds `token` (kept as its hash) with `role` (and, for the department role, its
    /// department), e.g. a demo admin token made with [`generate_token`](crate::generate_token).
    /// Like a configured token it is not written to the tokens file, lasts until the process
    /// ends and cannot be deleted through the API. Fails if the name is taken or the spec is
    /// invalid (see [`TokenSpec::validate`](crate::TokenSpec::validate)).
    pub fn add_token(
        &self,
        name: &str,
        role: Role,
        department: Option<Department>,
        token: &str,
    ) -> Result<(), ApiError> {
        self.inner
            .tokens
            .add_config(crate::TokenSpec::from_token(name, role, department, token))
    }

    pub(crate) fn tokens(&self) -> &crate::auth::Tokens {
        &self.inner.tokens
    }

    /// The live feed: publish window results and KPI rows here.
    pub fn feed(&self) -> &LiveFeed {
        &self.inner.feed
    }

    /// Fills the device directory with the fleet the pipeline starts with (replacing what
    /// it held) and returns the state, for chaining after [`ApiState::new`].
    #[must_use]
    pub fn with_devices(self, devices: impl IntoIterator<Item = Device>) -> Self {
        self.inner.devices.replace_all(devices);
        self
    }

    /// The registered devices `/api/v1/devices` lists. Apply here the registry changes the
    /// pipeline makes other than through the API.
    pub fn devices(&self) -> &DeviceDirectory {
        &self.inner.devices
    }

    /// Makes the registry writable: `POST`/`PUT`/`DELETE /api/v1/devices...` send each
    /// change on `sender` as a [`RegistryRequest`] and wait for its answer (see the crate
    /// docs). Replaces any sender set before; until one is set, those routes answer 503
    /// `registry_read_only`.
    pub fn set_registry_sender(&self, sender: mpsc::Sender<RegistryRequest>) {
        *self
            .inner
            .registry_sender
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(sender);
    }

    /// [`ApiState::set_registry_sender`], for chaining after [`ApiState::new`].
    #[must_use]
    pub fn with_registry_sender(self, sender: mpsc::Sender<RegistryRequest>) -> Self {
        self.set_registry_sender(sender);
        self
    }

    /// Makes the registry read-only again (e.g. while the pipeline restarts).
    pub fn clear_registry_sender(&self) {
        *self
            .inner
            .registry_sender
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Unregistered devices that send readings: call [`UnknownDevices::record`] for each
    /// such reading.
    pub fn unknown_devices(&self) -> &UnknownDevices {
        &self.inner.unknown
    }

    pub(crate) fn registry_sender(&self) -> Option<mpsc::Sender<RegistryRequest>> {
        self.inner
            .registry_sender
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn registry_writer(&self) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(&self.inner.registry_writer)
    }

    pub(crate) fn registry_timeout(&self) -> Duration {
        self.inner.registry_timeout
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

    pub(crate) fn rate_limiter(&self) -> Option<&crate::limits::RateLimiter> {
        self.inner.rate_limiter.as_ref()
    }

    pub(crate) fn ws_buffer(&self) -> usize {
        self.inner.ws_buffer
    }

    pub(crate) fn ws_ping_interval(&self) -> Duration {
        self.inner.ws_ping_interval
    }

    /// Says ClickHouse will serve KPI history ([`ApiState::set_history_store`] follows
    /// once it is reached). The recent rows are still kept in memory: while ClickHouse cannot
    /// be reached, `GET /api/v1/kpis/{family}` answers from them, saying so.
    pub fn expect_history_store(&self) {
        self.inner
            .history_expected
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn history_store_expected(&self) -> bool {
        self.inner
            .history_expected
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Serves KPI history (`GET /api/v1/kpis/{family}`) from `store`, and from memory only
    /// while `store` fails. Only the first call counts.
    pub fn set_history_store(&self, store: ioc_store::Store) {
        let _ = self.inner.history.set(store);
    }

    /// Adds `description` (of the routes given to [`router_with`]) to `/openapi.json`.
    pub fn add_api_description(&self, description: ApiDescription) {
        let mut extra = self
            .inner
            .extra_api
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *extra = std::mem::take(&mut *extra).merge(description);
    }

    pub(crate) fn extra_api_description(&self) -> ApiDescription {
        self.inner
            .extra_api
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn history_store(&self) -> Option<&ioc_store::Store> {
        self.inner.history.get()
    }

    pub(crate) fn dashboard(&self) -> &crate::DashboardConfig {
        &self.inner.dashboard
    }

    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }
}

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
        .merge(rest::routes())
        .merge(crate::auth::routes())
        .merge(crate::page::routes())
        .with_state(state.clone())
        .merge(extra)
        .fallback(rest::not_found)
        .method_not_allowed_fallback(rest::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(
            state.inner.max_body_bytes,
        ))
        // Inside the rate limit (a client guessing tokens is throttled) and the request
        // count (401 and 403 are counted).
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authorize,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
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
    let closing = state.inner.closing.clone();
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

async fn websocket(
    State(state): State<ApiState>,
    principal: Option<axum::Extension<Principal>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(e) => {
            return RestError::new(
                e.status(),
                "websocket_required",
                format!("/ws speaks WebSocket only: {}", e.body_text()),
            )
            .into_response()
        }
    };
    upgrade
        .max_message_size(crate::ws::MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| {
            // A department's `alerts` channel carries its own department's alerts only.
            let confined = principal.and_then(|axum::Extension(p)| p.confined_to());
            crate::ws::serve_socket(socket, state, confined)
        })
}
