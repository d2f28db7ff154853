//! HTTP server configuration.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use ioc_schemas::{Department, Role};
use serde::{Deserialize, Serialize};

use crate::ApiError;

/// How the HTTP API listens and buffers live updates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, as `ip:port` text.
    pub listen: SocketAddr,
    /// Per WebSocket client: messages queued for its socket. When full, that client's feed
    /// waits, and if it stays behind for longer than `broadcast_capacity` updates it is told
    /// it lagged and gets a fresh snapshot instead of the updates it missed.
    pub ws_buffer: usize,
    /// Updates the live feed keeps for clients that are behind, before they lag: window
    /// results, KPI rows and alert events are three broadcasts, each this long.
    pub broadcast_capacity: usize,
    /// Interval (ms) between WebSocket Ping frames to each client, and between `heartbeat`
    /// messages to a subscribed client. A client that sends nothing, not even a Pong, for
    /// three intervals is disconnected.
    pub ws_ping_interval_ms: u64,
    /// Keys the live feed keeps the latest value of, per feed, for the `snapshot` a client
    /// gets when it subscribes or lags (window results by device, metric and window size; KPI
    /// rows by family, entity and window size; open alerts by id). Once a feed holds this
    /// many, updates of further new keys are still pushed but not kept, only counted in
    /// `ioc_api_snapshot_keys_dropped_total` (0 keeps nothing: snapshots are empty).
    pub snapshot_max_keys: usize,
    /// Unregistered device ids tracked for `GET /api/v1/devices/unknown`. Once this many
    /// are tracked, readings from further new ids are not tracked, only counted in
    /// `ioc_api_unknown_devices_dropped_total` (0 turns the list off).
    pub unknown_devices_max: usize,
    /// Longest a registry change (`POST`/`PUT`/`DELETE /api/v1/devices...`) waits, in ms,
    /// for the pipeline to take it and confirm it; then the request answers 503 (not taken)
    /// or 504 (taken, not yet confirmed).
    pub registry_timeout_ms: u64,
    /// Largest request body accepted, bytes; a larger one answers 413.
    pub max_body_bytes: usize,
    /// Requests a second each client address may make to the API and the WebSocket, on
    /// average (`/healthz` and `/metrics` are exempt); beyond it, 429 with `Retry-After`.
    /// 0 turns the limit off.
    pub rate_limit_per_s: f64,
    /// Requests a client may make at once above its rate (the token bucket's size).
    pub rate_limit_burst: u32,
    /// KPI rows kept in memory per family, newest windows first, for
    /// `GET /api/v1/kpis/{family}` when no ClickHouse is configured, or while it cannot be
    /// reached (0 keeps none).
    pub history_memory_rows: usize,
    /// Bearer-token access control (see the crate docs).
    pub auth: AuthConfig,
    /// The operator page at `/`.
    pub dashboard: DashboardConfig,
}

/// The operator page served at `/` (its assets are in the binary).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// Map tiles as a URL template with `{z}`, `{x}` and `{y}` (e.g. an OpenStreetMap tile
    /// server the city runs). Empty: no tiles, the map draws devices on a plain background,
    /// as it also does when tiles cannot be loaded.
    pub tile_url: String,
    /// The attribution the tile server asks for, shown in the map's corner.
    pub tile_attribution: String,
}

/// Bearer-token access control of the whole HTTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether requests need a token. `false` opens every route to everyone (development
    /// only).
    pub enabled: bool,
    /// Whether `GET /metrics` is served without a token (for Prometheus scrapers).
    pub metrics_public: bool,
    /// The tokens known from the configuration; they cannot be deleted through the API.
    pub tokens: Vec<TokenSpec>,
    /// Where tokens issued through `POST /api/v1/tokens` are kept (JSON, hashes only):
    /// loaded at start, rewritten atomically (temporary file and rename) on each change.
    /// Without it, issued tokens last until the process restarts.
    pub tokens_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: true,
            metrics_public: true,
            tokens: Vec::new(),
            tokens_file: None,
        }
    }
}

/// One token: who holds it, its role, and the SHA-256 of the token (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Who it was issued to: 1 to 64 ASCII letters, digits, `_`, `-`, `.` or `@`; unique.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The department, required for (and only for) the `department` role.
    #[serde(default)]
    pub department: Option<Department>,
    /// The SHA-256 of the whole token string, 64 hex digits (`printf %s "$TOKEN" |
    /// sha256sum`).
    pub sha256: String,
}

impl TokenSpec {
    /// The spec of `token`: its hash, never the token itself.
    pub fn from_token(
        name: impl Into<String>,
        role: Role,
        department: Option<Department>,
        token: &str,
    ) -> Self {
        TokenSpec {
            name: name.into(),
            role,
            department,
            sha256: crate::token::hash_token(token),
        }
    }

    /// Checks the name, the department against the role and the hash's form.
    pub fn validate(&self) -> Result<(), ApiError> {
        let bad = |m: String| Err(ApiError::Config(m));
        let name = &self.name;
        let name_ok = (1..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
        if !name_ok {
            return bad(format!(
                "token name `{name}` must be 1 to 64 ascii letters, digits, `_`, `-`, `.` or `@`"
            ));
        }
        match (self.role, self.department) {
            (Role::Department, None) => {
                return bad(format!(
                    "token `{name}`: the department role needs a department"
                ))
            }
            (Role::Operator | Role::Analyst | Role::Admin, Some(_)) => {
                return bad(format!(
                    "token `{name}`: only the department role takes a department"
                ))
            }
            _ => {}
        }
        if self.sha256.len() != 64 || !self.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return bad(format!(
                "token `{name}`: sha256 must be 64 hex digits (the sha-256 of the token)"
            ));
        }
        Ok(())
    }
}

impl AuthConfig {
    /// Checks every token (see [`TokenSpec::validate`]) and that names are unique.
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut names = HashSet::new();
        for token in &self.tokens {
            token.validate()?;
            if !names.insert(token.name.as_str()) {
                return Err(ApiError::Config(format!(
                    "http.auth.tokens: the name `{}` is used twice",
                    token.name
                )));
            }
        }
        Ok(())
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ws_buffer: 1024,
            broadcast_capacity: 4096,
            ws_ping_interval_ms: 20_000,
            snapshot_max_keys: 100_000,
            unknown_devices_max: 10_000,
            registry_timeout_ms: 5_000,
            max_body_bytes: 256 * 1024,
            rate_limit_per_s: 50.0,
            rate_limit_burst: 200,
            history_memory_rows: 20_000,
            auth: AuthConfig::default(),
            dashboard: DashboardConfig::default(),
        }
    }
}

impl HttpConfig {
    /// Checks the settings are usable (queues, intervals and timeouts must be non-zero).
    pub fn validate(&self) -> Result<(), ApiError> {
        let bad = |m: &str| Err(ApiError::Config(m.to_owned()));
        if self.ws_buffer == 0 {
            return bad("http.ws_buffer must be at least 1");
        }
        if self.broadcast_capacity == 0 {
            return bad("http.broadcast_capacity must be at least 1");
        }
        if self.ws_ping_interval_ms == 0 {
            return bad("http.ws_ping_interval_ms must be at least 1");
        }
        if self.registry_timeout_ms == 0 {
            return bad("http.registry_timeout_ms must be at least 1");
        }
        if self.max_body_bytes == 0 {
            return bad("http.max_body_bytes must be at least 1");
        }
        if !(self.rate_limit_per_s.is_finite() && self.rate_limit_per_s >= 0.0) {
            return bad("http.rate_limit_per_s must be 0 (off) or a positive number");
        }
        self.auth.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_validate() {
        let c: HttpConfig = serde_json::from_str(r#"{"listen":"0.0.0.0:9000"}"#).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(c.ws_buffer, 1024);
        assert_eq!(c.broadcast_capacity, 4096);
        assert_eq!(c.ws_ping_interval_ms, 20_000);
        assert_eq!(c.snapshot_max_keys, 100_000);
        assert_eq!(c.unknown_devices_max, 10_000);
        assert_eq!(c.registry_timeout_ms, 5_000);
        assert!(c.auth.enabled);
        assert!(c.auth.metrics_public);
        assert!(c.auth.tokens.is_empty());
        assert_eq!(c.auth.tokens_file, None);
        assert!(c.validate().is_ok());
        assert_eq!(
            serde_json::to_value(HttpConfig::default()).unwrap()["listen"],
            "127.0.0.1:8080"
        );
    }

    #[test]
    fn refuses_unknown_fields_and_zero_queues() {
        assert!(serde_json::from_str::<HttpConfig>(r#"{"listn":"x"}"#).is_err());
        assert!(serde_json::from_str::<HttpConfig>(r#"{"listen":"nowhere"}"#).is_err());
        let c = HttpConfig {
            ws_buffer: 0,
            ..HttpConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("ws_buffer"), "{e}");
        assert!(!e.is_retryable());
    }

    #[test]
    fn checks_tokens() {
        let hash = "a".repeat(64);
        let spec = |name: &str, role: &str, department: Option<&str>, sha: &str| {
            serde_json::from_value::<TokenSpec>(serde_json::json!({
                "name": name, "role": role, "department": department, "sha256": sha
            }))
            .unwrap()
        };
        let ok = AuthConfig {
            tokens: vec![
                spec("ops", "operator", None, &hash),
                spec("police", "department", Some("police"), &hash),
            ],
            ..AuthConfig::default()
        };
        assert!(ok.validate().is_ok());
        for (bad, what) in [
            (spec("d", "department", None, &hash), "needs a department"),
            (
                spec("o", "operator", Some("police"), &hash),
                "only the department",
            ),
            (spec("o", "operator", None, "abc"), "64 hex"),
            (spec("o", "operator", None, &"g".repeat(64)), "64 hex"),
            (spec("a b", "operator", None, &hash), "token name"),
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
        let twice = AuthConfig {
            tokens: vec![
                spec("ops", "operator", None, &hash),
                spec("ops", "admin", None, &hash),
            ],
            ..AuthConfig::default()
        };
        assert!(twice.validate().unwrap_err().to_string().contains("twice"));
        assert!(serde_json::from_str::<AuthConfig>(r#"{"enable":true}"#).is_err());
        assert_eq!(
            TokenSpec::from_token("x", Role::Admin, None, "abc").sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
