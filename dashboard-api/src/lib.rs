//! The HTTP API of the Da Nang IOC backend: health, Prometheus metrics and the live
//! WebSocket feed of window results (DESIGN §6).
//!
//! # Use
//!
//! ```no_run
//! # async fn run(results: Vec<ioc_schemas::WindowResult>) -> Result<(), ioc_dashboard_api::ApiError> {
//! use ioc_dashboard_api::{bind, serve, ApiState, HttpConfig};
//!
//! let config = HttpConfig::default();
//! let registry = prometheus::Registry::new(); // other crates register their metrics here too
//! let state = ApiState::new(&config, registry)?;
//! let (feed, health) = (state.feed().clone(), state.health().clone());
//! health.set_component("mqtt", false, "connecting");
//! let listener = bind(&config).await?;
//! let server = tokio::spawn(serve(listener, state, async { /* e.g. ctrl-c */ }));
//! health.set_component("mqtt", true, "connected");
//! for result in results {
//!     feed.publish(result); // never blocks
//! }
//! # let _ = server; Ok(()) }
//! ```
//!
//! # Routes
//!
//! - `GET /healthz`: `200 {"status":"ok","uptime_s":12,"components":{"mqtt":{"ok":true,
//!   "detail":"connected"},...}}` when every component set through [`Health`] is ok, `503`
//!   with the same shape and `"status":"degraded"` otherwise.
//! - `GET /metrics`: the registry in Prometheus text format 0.0.4.
//! - `GET /ws`: the live feed, a WebSocket speaking the protocol below.
//!
//! # WebSocket protocol (version 1)
//!
//! Every message is a JSON object in a text frame, with a `"type"` field.
//!
//! Client to server:
//!
//! | message | effect |
//! |---|---|
//! | `{"type":"subscribe","kinds":["traffic_signal"],"districts":["hai_chau"],"devices":["tsc-hai_chau-001"],"metrics":["vehicles"]}` | start receiving window results that match every non-empty list; each list is optional and an absent, `null` or empty list means "all". A new subscribe replaces the filter (no update is lost in between). |
//! | `{"type":"unsubscribe"}` | stop receiving window results |
//! | `{"type":"ping"}` | the server answers `{"type":"pong"}` |
//!
//! Kinds are `sensor`, `traffic_signal`, `camera_event`, `environment`; districts are the
//! slugs `hai_chau`, `thanh_khe`, `son_tra`, `ngu_hanh_son`, `lien_chieu`, `cam_le`,
//! `hoa_vang`. Unknown fields, kinds or districts are refused.
//!
//! Server to client:
//!
//! | message | when |
//! |---|---|
//! | `{"type":"hello","protocol":1}` | on connect. Until the client subscribes, nothing else is sent. |
//! | `{"type":"subscribed","filter":{"kinds":[],"districts":["hai_chau"],"devices":[],"metrics":[]}}` | after each subscribe, with the filter in force (sorted, duplicates removed); `"filter":null` after an unsubscribe. Every result published after this message is considered. |
//! | `{"type":"window","data":{...}}` | each matching window result; `data` is a `WindowResult` (`window-result.schema.json`). |
//! | `{"type":"lagged","skipped":46}` | the client fell behind: `skipped` results (counted before filtering) were dropped for it. It stays connected and continues with the newest results the server still holds. |
//! | `{"type":"pong"}` | answer to a ping. |
//! | `{"type":"error","message":"invalid message: ..."}` | the client's last message was refused; `message` names what was wrong (not json, a missing `type`, an unknown field, kind or district, a binary frame). The connection stays open and the previous filter stays in force. |
//!
//! The server sends a WebSocket Ping frame every 20 s (`ws_ping_interval_ms`); browsers
//! answer automatically. A client that sends nothing, not even a Pong, for three intervals
//! is closed with code 1008. On server shutdown clients are closed with code 1001.
//!
//! # Slow clients
//!
//! Each connection has a bounded queue of `ws_buffer` outgoing messages. A client that
//! reads slowly fills it; its feed then waits, and once it is more than
//! `broadcast_capacity` results behind it gets a `lagged` message and skips ahead. Nothing
//! else is dropped, publishing never waits on a client, and skipped results are counted
//! in `ioc_api_ws_lagged_total`.
//!
//! # Metrics
//!
//! `ioc_api_ws_clients` (gauge), `ioc_api_ws_updates_total` (results published),
//! `ioc_api_ws_lagged_total` (results skipped by lagging clients) and
//! `ioc_api_http_requests_total{route,status}` (route is the route template, `unmatched`
//! for unknown paths).

mod config;
mod error;
mod feed;
mod health;
mod metrics;
pub mod protocol;
mod server;
mod ws;

pub use config::HttpConfig;
pub use error::ApiError;
pub use feed::LiveFeed;
pub use health::{ComponentHealth, Health, HealthReport, HealthStatus};
pub use metrics::ApiMetrics;
pub use server::{bind, router, serve, ApiState};
