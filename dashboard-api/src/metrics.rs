//! The API's Prometheus metrics.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// The `outcome` of a registry change asked for through the API (`rest::submit`).
const REGISTRY_OUTCOMES: [&str; 5] = ["applied", "refused", "unavailable", "timeout", "read_only"];

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
}

impl ApiMetrics {
    /// Creates the metrics and registers them with `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
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
            http_requests: IntCounterVec::new(
                Opts::new(
                    "ioc_api_http_requests_total",
                    "HTTP requests answered, by route template and status code.",
                ),
                &["route", "status"],
            )?,
            registry_changes: IntCounterVec::new(
                Opts::new(
                    "ioc_api_registry_changes_total",
                    "Device registry changes asked for through the API, by operation and outcome.",
                ),
                &["op", "outcome"],
            )?,
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
            auth_failures: IntCounterVec::new(
                Opts::new(
                    "ioc_api_auth_failures_total",
                    "Requests refused by access control, by reason (missing, unknown, forbidden).",
                ),
                &["reason"],
            )?,
            history_memory_evicted: IntCounter::new(
                "ioc_api_history_memory_evicted_total",
                "KPI rows dropped, oldest first, from the in-memory history (its family was full).",
            )?,
        };
        registry.register(Box::new(metrics.history_memory_evicted.clone()))?;
        // Every series whose labels are known up front is exported from the start, at 0.
        for reason in ["missing", "unknown", "forbidden"] {
            metrics.auth_failures.with_label_values(&[reason]);
        }
        for family in ioc_schemas::KpiFamily::ALL {
            metrics.ws_kpi_updates.with_label_values(&[family.as_str()]);
        }
        for op in ["upsert", "remove"] {
            for outcome in REGISTRY_OUTCOMES {
                metrics.registry_changes.with_label_values(&[op, outcome]);
            }
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
}
