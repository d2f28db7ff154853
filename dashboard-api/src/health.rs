//! Component health, set by the integrator and reported at `/healthz`.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Shared health of the process's components (`mqtt`, `clickhouse`, `dataflow`, ...).
///
/// Cheap to clone; every clone sees the same state. The process is healthy when every
/// component set so far is ok (so with none set it is healthy): set each component, not ok,
/// as soon as it starts, and mark it ok once it works.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<HealthInner>,
}

#[derive(Debug)]
struct HealthInner {
    started: Instant,
    components: RwLock<BTreeMap<&'static str, ComponentHealth>>,
}

/// One component's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ComponentHealth {
    /// Whether it works.
    pub ok: bool,
    /// A short human-readable explanation, such as `connected to 127.0.0.1:1883`.
    pub detail: String,
}

/// Overall status in a [`HealthReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Every component is ok.
    Ok,
    /// At least one component is not ok.
    Degraded,
}

/// The body of `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HealthReport {
    /// `ok` or `degraded`.
    pub status: HealthStatus,
    /// Whole seconds since the process started (since [`Health::new`]).
    pub uptime_s: u64,
    /// Each component by name.
    pub components: BTreeMap<String, ComponentHealth>,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    /// A health source with no components; its start time is now.
    pub fn new() -> Self {
        Health {
            inner: Arc::new(HealthInner {
                started: Instant::now(),
                components: RwLock::new(BTreeMap::new()),
            }),
        }
    }

    /// Sets (or replaces) a component's state.
    pub fn set_component(&self, name: &'static str, ok: bool, detail: impl Into<String>) {
        let detail = detail.into();
        // A panic elsewhere while holding the lock leaves a consistent map: keep using it.
        let mut map = self
            .inner
            .components
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        map.insert(name, ComponentHealth { ok, detail });
    }

    /// Forgets a component.
    pub fn remove_component(&self, name: &str) {
        let mut map = self
            .inner
            .components
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        map.remove(name);
    }

    /// Time since [`Health::new`].
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Whether every component is ok.
    pub fn is_ok(&self) -> bool {
        let map = self
            .inner
            .components
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.values().all(|c| c.ok)
    }

    /// The current report.
    pub fn report(&self) -> HealthReport {
        let map = self
            .inner
            .components
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let ok = map.values().all(|c| c.ok);
        HealthReport {
            status: if ok {
                HealthStatus::Ok
            } else {
                HealthStatus::Degraded
            },
            uptime_s: self.uptime().as_secs(),
            components: map
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_while_any_component_is_down() {
        let health = Health::new();
        assert_eq!(health.report().status, HealthStatus::Ok);
        let clone = health.clone();
        clone.set_component("mqtt", true, "connected");
        clone.set_component("clickhouse", false, "connection refused");
        let report = health.report();
        assert_eq!(report.status, HealthStatus::Degraded);
        assert_eq!(report.components.len(), 2);
        assert_eq!(report.components["clickhouse"].detail, "connection refused");
        health.set_component("clickhouse", true, String::from("ok"));
        assert!(health.is_ok());
        health.remove_component("mqtt");
        assert_eq!(health.report().components.len(), 1);
        let json = serde_json::to_value(health.report()).unwrap();
        assert_eq!(json["status"], "ok");
        assert_eq!(json["components"]["clickhouse"]["ok"], true);
    }
}
