//! HTTP server configuration.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::ApiError;

/// How the HTTP API listens and buffers live updates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, as `ip:port` text.
    pub listen: SocketAddr,
    /// Per WebSocket client: messages queued for its socket. When full, that client's feed
    /// waits, and if it stays behind for longer than `broadcast_capacity` updates it is told
    /// it lagged and skips ahead.
    pub ws_buffer: usize,
    /// Updates the live feed keeps for clients that are behind, before they lag: window
    /// results and KPI rows are two broadcasts, each this long.
    pub broadcast_capacity: usize,
    /// Interval (ms) between WebSocket Ping frames to each client. A client that sends
    /// nothing, not even a Pong, for three intervals is disconnected.
    pub ws_ping_interval_ms: u64,
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
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ws_buffer: 1024,
            broadcast_capacity: 4096,
            ws_ping_interval_ms: 20_000,
            unknown_devices_max: 10_000,
            registry_timeout_ms: 5_000,
            max_body_bytes: 256 * 1024,
            rate_limit_per_s: 50.0,
            rate_limit_burst: 200,
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
        Ok(())
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
        assert_eq!(c.unknown_devices_max, 10_000);
        assert_eq!(c.registry_timeout_ms, 5_000);
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
}
