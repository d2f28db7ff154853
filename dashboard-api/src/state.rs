//! The state every route shares ([`ApiState`]): the live feed, the device directory, the
//! tokens, the metrics, the registry's channel to the pipeline and the history source.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use ioc_schemas::openapi::ApiDescription;
use ioc_schemas::{Department, Device, Role};
use prometheus::Registry;
use tokio::sync::{mpsc, watch};

use crate::config::{DashboardConfig, HttpConfig, TokenSpec};
use crate::devices::{DeviceDirectory, RegistryRequest, UnknownDevices};
use crate::error::ApiError;
use crate::feed::{LiveFeed, RecentKpis};
use crate::health::Health;
use crate::limits::RateLimiter;
use crate::metrics::ApiMetrics;
use crate::source::HistorySource;
use crate::token_store::Tokens;

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
    rate_limiter: Option<Arc<RateLimiter>>,
    max_body_bytes: usize,
    ws_buffer: usize,
    ws_ping_interval: Duration,
    /// The tokens access control knows.
    tokens: Tokens,
    /// The operations of the routes served beside this crate's (see
    /// [`router_with`](crate::router_with)).
    extra_api: RwLock<ApiDescription>,
    /// Where stored history is read; unset: from memory.
    history: std::sync::OnceLock<Arc<dyn HistorySource>>,
    /// Set by [`ApiState::expect_history_store`].
    history_expected: std::sync::atomic::AtomicBool,
    /// What the operator page needs to know of the server.
    dashboard: DashboardConfig,
    /// Set when [`serve`](crate::serve)'s shutdown future resolves, so WebSocket
    /// connections (which the HTTP server no longer tracks once upgraded) close too.
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
        let recent = Arc::new(RecentKpis::new(
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
        let tokens = Tokens::new(&config.auth)?;
        let rate_limiter = RateLimiter::new(
            config.rate_limit_per_s,
            config.rate_limit_burst,
            metrics.rate_limited.clone(),
        )
        .map(Arc::new);
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
                rate_limiter,
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
            .add_config(TokenSpec::from_token(name, role, department, token))
    }

    pub(crate) fn tokens(&self) -> &Tokens {
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

    pub(crate) fn rate_limiter(&self) -> Option<Arc<RateLimiter>> {
        self.inner.rate_limiter.clone()
    }

    pub(crate) fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }

    pub(crate) fn ws_buffer(&self) -> usize {
        self.inner.ws_buffer
    }

    pub(crate) fn ws_ping_interval(&self) -> Duration {
        self.inner.ws_ping_interval
    }

    /// Says a history source (ClickHouse) will serve KPI history and dead letters
    /// ([`ApiState::set_history_source`] follows once it is reached). The recent rows are
    /// still kept in memory: until then, and while the source is unavailable,
    /// `GET /api/v1/kpis/{family}` and `GET /api/v1/dead-letters` answer from them, saying
    /// so.
    pub fn expect_history_store(&self) {
        self.inner
            .history_expected
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn history_source_expected(&self) -> bool {
        self.inner
            .history_expected
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Serves KPI history (`GET /api/v1/kpis/{family}`) and dead letters
    /// (`GET /api/v1/dead-letters`) from `source`, and from memory only while `source` is
    /// unavailable ([`HistoryError::Unavailable`](crate::HistoryError::Unavailable)). Only
    /// the first call counts.
    pub fn set_history_source(&self, source: Arc<dyn HistorySource>) {
        let _ = self.inner.history.set(source);
    }

    /// Adds `description` (of the routes given to [`router_with`](crate::router_with)) to
    /// `/openapi.json`.
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

    pub(crate) fn history_source(&self) -> Option<&dyn HistorySource> {
        self.inner.history.get().map(AsRef::as_ref)
    }

    pub(crate) fn dashboard(&self) -> &DashboardConfig {
        &self.inner.dashboard
    }

    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    /// What tells the WebSocket connections the server is closing.
    pub(crate) fn closer(&self) -> watch::Sender<bool> {
        self.inner.closing.clone()
    }
}
