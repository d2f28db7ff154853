//! The API's Prometheus metrics. Series counted per request are resolved to their handles
//! once (here, or on a route's first request), not looked up by label on every request.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// The `op` of a registry change asked for through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegistryOp {
    Upsert,
    Remove,
}

impl RegistryOp {
    const ALL: [RegistryOp; 2] = [RegistryOp::Upsert, RegistryOp::Remove];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RegistryOp::Upsert => "upsert",
            RegistryOp::Remove => "remove",
        }
    }
}

/// The `outcome` of a registry change asked for through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegistryOutcome {
    Applied,
    Refused,
    Unavailable,
    Timeout,
    ReadOnly,
}

impl RegistryOutcome {
    const ALL: [RegistryOutcome; 5] = [
        RegistryOutcome::Applied,
        RegistryOutcome::Refused,
        RegistryOutcome::Unavailable,
        RegistryOutcome::Timeout,
        RegistryOutcome::ReadOnly,
    ];

    fn as_str(self) -> &'static str {
        match self {
            RegistryOutcome::Applied => "applied",
            RegistryOutcome::Refused => "refused",
            RegistryOutcome::Unavailable => "unavailable",
            RegistryOutcome::Timeout => "timeout",
            RegistryOutcome::ReadOnly => "read_only",
        }
    }
}

/// The `reason` a request was refused by access control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    Missing,
    Unknown,
    Forbidden,
}

impl AuthFailure {
    const ALL: [AuthFailure; 3] = [
        AuthFailure::Missing,
        AuthFailure::Unknown,
        AuthFailure::Forbidden,
    ];

    fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Unknown => "unknown",
            AuthFailure::Forbidden => "forbidden",
        }
    }
}

/// `ioc_api_http_requests_total{route,status}` by handle: each pair is looked up by label
/// once, on its first request. Route templates and status codes are small fixed sets, so the
/// map stays small.
#[derive(Debug)]
pub(crate) struct RequestCounters {
    vec: IntCounterVec,
    resolved: RwLock<HashMap<Box<str>, HashMap<u16, IntCounter>>>,
}

impl RequestCounters {
    fn new(vec: IntCounterVec) -> Self {
        RequestCounters {
            vec,
            resolved: RwLock::default(),
        }
    }

    /// Counts one request of `route` answered with `status`.
    pub(crate) fn inc(&self, route: &str, status: u16) {
        // Every write leaves the map consistent: a panic elsewhere does not spoil it.
        let resolved = self.resolved.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(counter) = resolved.get(route).and_then(|s| s.get(&status)) {
            counter.inc();
            return;
        }
        drop(resolved);
        let counter = self
            .vec
            .with_label_values(&[route, status.to_string().as_str()]);
        counter.inc();
        self.resolved
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(route.into())
            .or_default()
            .insert(status, counter);
    }
}

/// Metrics of the HTTP API and its WebSocket feed.
#[derive(Debug, Clone)]
pub struct ApiMetrics {
    /// `ioc_api_ws_clients`: WebSocket connections open now.
    pub ws_clients: IntGauge,
    /// `ioc_api_ws_updates_total`: window results published to the live feed.
    pub ws_updates: IntCounter,
    /// `ioc_api_ws_kpi_updates_total{family}`: KPI rows published to the live feed, by
    /// family (`traffic`, `air`, ...).
    pub ws_kpi_updates: IntCounterVec,
    /// `ioc_api_ws_lagged_total`: updates skipped by clients that fell behind (summed over
    /// clients, counted before filtering; windows and KPIs).
    pub ws_lagged: IntCounter,
    /// `ioc_api_snapshot_keys_dropped_total`: live updates of a new key not kept for
    /// snapshots because their feed already held `snapshot_max_keys` keys.
    pub snapshot_keys_dropped: IntCounter,
    /// `ioc_api_http_requests_total{route,status}`: requests answered, by route template
    /// (`unmatched` for unknown paths) and status code.
    pub http_requests: IntCounterVec,
    /// `ioc_api_registry_changes_total{op,outcome}`: device registry changes asked for
    /// through the API, by `op` (`upsert`, `remove`) and `outcome` (`applied`, `refused`
    /// by the pipeline, `unavailable`, `timeout`, `read_only`). Requests refused before
    /// reaching the pipeline (bad body, 404, 409) are not counted here.
    pub registry_changes: IntCounterVec,
    /// `ioc_api_unknown_devices`: unregistered device ids tracked now.
    pub unknown_devices: IntGauge,
    /// `ioc_api_unknown_devices_dropped_total`: readings from unregistered devices that
    /// were not tracked because the unknown-device list was full.
    pub unknown_devices_dropped: IntCounter,
    /// `ioc_api_rate_limited_total`: requests refused with 429 because their client was over
    /// its rate.
    pub rate_limited: IntCounter,
    /// `ioc_api_auth_failures_total{reason}`: requests refused by access control, by
    /// `reason`: `missing` (no token, 401), `unknown` (401), `forbidden` (the role may not,
    /// 403).
    pub auth_failures: IntCounterVec,
    /// `ioc_api_history_memory_evicted_total`: KPI rows dropped from the in-memory history
    /// (kept when no ClickHouse is configured) because their family held
    /// `history_memory_rows` rows; the oldest window goes first.
    pub history_memory_evicted: IntCounter,
    /// `http_requests` by handle.
    pub(crate) request_counters: Arc<RequestCounters>,
    /// `registry_changes` by handle, in [`RegistryOp::ALL`] and [`RegistryOutcome::ALL`]
    /// order.
    registry_change_counters: [[IntCounter; 5]; 2],
    /// `auth_failures` by handle, in [`AuthFailure::ALL`] order.
    auth_failure_counters: [IntCounter; 3],
}

impl ApiMetrics {
    /// Creates the metrics and registers them with `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let http_requests = IntCounterVec::new(
            Opts::new(
                "ioc_api_http_requests_total",
                "HTTP requests answered, by route template and status code.",
            ),
            &["route", "status"],
        )?;
        let registry_changes = IntCounterVec::new(
            Opts::new(
                "ioc_api_registry_changes_total",
                "Device registry changes asked for through the API, by operation and outcome.",
            ),
            &["op", "outcome"],
        )?;
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "ioc_api_auth_failures_total",
                "Requests refused by access control, by reason (missing, unknown, forbidden).",
            ),
            &["reason"],
        )?;
        // Every series whose labels are known up front is exported from the start, at 0.
        let registry_change_counters = RegistryOp::ALL.map(|op| {
            RegistryOutcome::ALL
                .map(|outcome| registry_changes.with_label_values(&[op.as_str(), outcome.as_str()]))
        });
        let auth_failure_counters =
            AuthFailure::ALL.map(|reason| auth_failures.with_label_values(&[reason.as_str()]));
        let metrics = ApiMetrics {
            ws_clients: IntGauge::new("ioc_api_ws_clients", "WebSocket connections open now.")?,
            ws_updates: IntCounter::new(
                "ioc_api_ws_updates_total",
                "Window results published to the live WebSocket feed.",
            )?,
            ws_kpi_updates: IntCounterVec::new(
                Opts::new(
                    "ioc_api_ws_kpi_updates_total",
                    "KPI rows published to the live WebSocket feed, by family.",
                ),
                &["family"],
            )?,
            ws_lagged: IntCounter::new(
                "ioc_api_ws_lagged_total",
                "Live updates skipped by WebSocket clients that fell behind.",
            )?,
            snapshot_keys_dropped: IntCounter::new(
                "ioc_api_snapshot_keys_dropped_total",
                "Live updates of a new key not kept for WebSocket snapshots (the feed was full).",
            )?,
            request_counters: Arc::new(RequestCounters::new(http_requests.clone())),
            http_requests,
            registry_changes,
            registry_change_counters,
            unknown_devices: IntGauge::new(
                "ioc_api_unknown_devices",
                "Unregistered device ids tracked now.",
            )?,
            unknown_devices_dropped: IntCounter::new(
                "ioc_api_unknown_devices_dropped_total",
                "Readings from unregistered devices not tracked because the list was full.",
            )?,
            rate_limited: IntCounter::new(
                "ioc_api_rate_limited_total",
                "Requests refused because their client was over its rate limit.",
            )?,
            auth_failures,
            auth_failure_counters,
            history_memory_evicted: IntCounter::new(
                "ioc_api_history_memory_evicted_total",
                "KPI rows dropped, oldest first, from the in-memory history (its family was full).",
            )?,
        };
        registry.register(Box::new(metrics.history_memory_evicted.clone()))?;
        for family in ioc_schemas::KpiFamily::ALL {
            metrics.ws_kpi_updates.with_label_values(&[family.as_str()]);
        }
        registry.register(Box::new(metrics.auth_failures.clone()))?;
        registry.register(Box::new(metrics.rate_limited.clone()))?;
        registry.register(Box::new(metrics.ws_clients.clone()))?;
        registry.register(Box::new(metrics.ws_updates.clone()))?;
        registry.register(Box::new(metrics.ws_kpi_updates.clone()))?;
        registry.register(Box::new(metrics.ws_lagged.clone()))?;
        registry.register(Box::new(metrics.snapshot_keys_dropped.clone()))?;
        registry.register(Box::new(metrics.http_requests.clone()))?;
        registry.register(Box::new(metrics.registry_changes.clone()))?;
        registry.register(Box::new(metrics.unknown_devices.clone()))?;
        registry.register(Box::new(metrics.unknown_devices_dropped.clone()))?;
        Ok(metrics)
    }
}

impl ApiMetrics {
    /// `ioc_api_registry_changes_total{op,outcome}`.
    pub(crate) fn registry_change(&self, op: RegistryOp, outcome: RegistryOutcome) -> &IntCounter {
        // `ALL` lists each enum in declaration order, so a discriminant is its index.
        &self.registry_change_counters[op as usize][outcome as usize]
    }

    /// `ioc_api_auth_failures_total{reason}`.
    pub(crate) fn auth_failure(&self, reason: AuthFailure) -> &IntCounter {
        &self.auth_failure_counters[reason as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_once_per_registry() {
        let registry = Registry::new();
        let m = ApiMetrics::new(&registry).unwrap();
        m.ws_updates.inc();
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        assert!(
            names.contains(&"ioc_api_ws_updates_total".to_owned()),
            "{names:?}"
        );
        assert!(ApiMetrics::new(&registry).is_err());
    }

    #[test]
    fn handles_count_the_labelled_series() {
        let m = ApiMetrics::new(&Registry::new()).unwrap();
        for (i, op) in RegistryOp::ALL.into_iter().enumerate() {
            assert_eq!(op as usize, i);
            for (j, outcome) in RegistryOutcome::ALL.into_iter().enumerate() {
                assert_eq!(outcome as usize, j);
                m.registry_change(op, outcome).inc();
                let series = m
                    .registry_changes
                    .with_label_values(&[op.as_str(), outcome.as_str()]);
                assert_eq!(series.get(), 1, "{op:?} {outcome:?}");
            }
        }
        for (i, reason) in AuthFailure::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, i);
            m.auth_failure(reason).inc_by(2);
            assert_eq!(
                m.auth_failures.with_label_values(&[reason.as_str()]).get(),
                2
            );
        }
        for _ in 0..3 {
            m.request_counters.inc("/api/v1/devices", 200);
        }
        m.request_counters.inc("unmatched", 404);
        let get = |route, status| m.http_requests.with_label_values(&[route, status]).get();
        assert_eq!(
            (get("/api/v1/devices", "200"), get("unmatched", "404")),
            (3, 1)
        );
    }
}
