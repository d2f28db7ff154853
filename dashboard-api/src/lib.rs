//! The HTTP API of the Da Nang IOC backend: health, Prometheus metrics, the device
//! registry and the live WebSocket feed of window results and KPIs (DESIGN §6).
//!
//! # Use
//!
//! ```no_run
//! # async fn run(
//! #     results: Vec<ioc_schemas::WindowResult>,
//! #     kpis: Vec<ioc_schemas::Kpi>,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use ioc_dashboard_api::{bind, serve, ApiState, HttpConfig, RegistryRequest};
//! use ioc_schemas::parse_fleet;
//! use tracing::Instrument;
//!
//! let config = HttpConfig::default();
//! let registry = prometheus::Registry::new(); // other crates register their metrics here too
//! let fleet = parse_fleet(&std::fs::read_to_string("fleet.json")?)?;
//! let (changes, mut pipeline_changes) = tokio::sync::mpsc::channel::<RegistryRequest>(16);
//! let state = ApiState::new(&config, registry)?
//!     .with_devices(fleet.into_values()) // the fleet the pipeline starts with
//!     .with_registry_sender(changes); // without it the registry is read-only
//! let (feed, health) = (state.feed().clone(), state.health().clone());
//! let unknown = state.unknown_devices().clone();
//! health.set_component("mqtt", false, "connecting");
//! let listener = bind(&config).await?;
//! // Tasks are named by their span (tokio's own task names need tokio_unstable).
//! let server = tokio::spawn(
//!     serve(listener, state, async { /* e.g. ctrl-c */ }).instrument(tracing::info_span!("http_api")),
//! );
//! health.set_component("mqtt", true, "connected");
//! tokio::spawn(
//!     async move {
//!         while let Some(request) = pipeline_changes.recv().await {
//!             // persist request.change, feed it to the dataflow, then:
//!             let _ = request.reply.send(Ok(()));
//!         }
//!     }
//!     .instrument(tracing::info_span!("registry_changes")),
//! );
//! for result in results {
//!     feed.publish(result); // never blocks
//! }
//! for kpi in kpis {
//!     feed.publish_kpi(kpi); // never blocks; device health rows update device status
//! }
//! // For each reading from a device id the registry does not know:
//! unknown.record("cam-x", ioc_schemas::Kind::CameraEvent, ioc_schemas::District::SonTra, 0);
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
//! - `/api/v1/devices...`: the device registry, below.
//! - `/api/v1/tokens...`: the token API, see access control below.
//! - `GET /api/v1/health`: what `/healthz` answers, behind a token.
//! - `GET /api/v1/kpis/{family}`: KPI history by time range (`from`, `to`), `entity`,
//!   `district`, `scope`, `window_size_ms` and `limit`: from ClickHouse once a
//!   [`HistorySource`] reading it is given with [`ApiState::set_history_source`], otherwise
//!   (none configured, none reached yet, [`ApiState::expect_history_store`], or one
//!   [unavailable](HistoryError::Unavailable)) from the newest `history_memory_rows` rows per
//!   family published with [`LiveFeed::publish_kpi`] (`"source":"memory"` and a `note` saying
//!   why). A read the source fails for good answers `503 unavailable`, one it refuses as a
//!   query `400 invalid_query`.
//! - `GET /api/v1/dead-letters`: the newest rejected messages by `code`, `transport`,
//!   `before` and `limit`, from the same source, or from the newest 1000 published with
//!   [`LiveFeed::publish_dead_letter`], in the same way.
//! - `GET /openapi.json` (public): the OpenAPI 3.1 document of these routes
//!   ([`api_description`]) merged with those added by [`ApiState::add_api_description`].
//! - `GET /`, `/ui/config.json`, `/assets/...` (public): the operator page.
//!
//! Every error the API answers (other than `/healthz` and `/metrics`) is JSON:
//! `{"error":{"code":"not_found","message":"no such route"}}`, with a
//! `"field"` when one field of the request is at fault. Codes: `invalid_device`,
//! `invalid_query`, `invalid_path`, `unsupported_media_type` (415), `payload_too_large`
//! (413, bodies are limited to `http.max_body_bytes`, 256 KiB), `not_found`, `method_not_allowed`, `conflict`,
//! `registry_read_only`, `unavailable`, `change_refused`, `timeout`, `websocket_required`.
//!
//! # Access control
//!
//! With `http.auth.enabled` (the default) every request needs a bearer token, except
//! `GET /healthz` and, with `http.auth.metrics_public` (the default), `GET /metrics`. The
//! token comes from `Authorization: Bearer <token>`, or for `GET /ws` also from a `token=`
//! query parameter (browsers cannot set headers on a WebSocket). Tokens are known by the
//! SHA-256 of the whole token string ([`hash_token`], `printf %s "$TOKEN" | sha256sum`):
//! from `http.auth.tokens` ([`TokenSpec`]), from [`ApiState::add_token`], and issued through
//! the API (kept in `http.auth.tokens_file` if set, else until restart). A missing or
//! unknown token is `401 unauthorized` with `WWW-Authenticate: Bearer`; a request the
//! token's role may not make is `403 forbidden`. Both are counted in
//! `ioc_api_auth_failures_total{reason}` (`missing`, `unknown`, `forbidden`) and in the
//! request metrics, and the rate limit applies before the token is checked. The caller's
//! [`Principal`](ioc_schemas::Principal) is put in the request's extensions, for the
//! built-in routes and the `extra` ones of [`router_with`] alike (nothing is put there
//! when access control is off).
//!
//! | role | may |
//! |---|---|
//! | `admin` | everything, the token API included |
//! | `analyst` | `GET` anything but `/api/v1/tokens` (the WebSocket included) |
//! | `operator` | `GET` anything but `/api/v1/tokens`; `POST /api/v1/alerts/{id}/acknowledge\|resolve\|comments`; `POST`/`PUT`/`DELETE /api/v1/devices...` and `/api/v1/rules...` |
//! | `department` | `GET /ws`, `GET /api/v1/alerts...`, `/devices...`, `/rules...`, `/webhooks...`, `/deliveries...`, `/kpis...`, `/health`; `POST /api/v1/alerts/{id}/acknowledge\|resolve\|comments`; `GET`/`POST`/`PUT`/`DELETE /api/v1/subscriptions...`; `POST /api/v1/deliveries/{id}/redeliver` |
//!
//! A department token's WebSocket `alerts` channel carries only its department's alerts;
//! scoping the REST routes of alerts, subscriptions and deliveries is up to their handlers
//! (by [`Principal::confined_to`](ioc_schemas::Principal::confined_to)).
//!
//! Token API (admin only): `POST /api/v1/tokens` with `{"name","role","department"?}`
//! answers `201 {"name","role","department","token":"ioc_..."}`, the only time the token
//! is shown (`409 conflict` if the name is taken, `400 invalid_token_request` if the body
//! is wrong); `GET /api/v1/tokens` answers `200 {"tokens":[{"name","role","department",
//! "source":"config"|"issued"}],"count":n}`, never a hash; `DELETE /api/v1/tokens/{name}`
//! answers `204`, `404 not_found`, or `409 conflict` for a configured token.
//!
//! # Device registry
//!
//! | request | answer |
//! |---|---|
//! | `GET /api/v1/devices?kind=&district=&department=` | `200 {"devices":[...],"count":n}`, by id; each filter optional (one value; empty means none). Each entry is the [`Device`](ioc_schemas::Device) plus `status` (`online`, `offline`, `never_seen`), `last_seen_ms` and `status_at_ms` (see [`DeviceView`]). An unknown value or parameter is `400 invalid_query`. |
//! | `GET /api/v1/devices/{id}` | `200` the entry, `404 not_found`. |
//! | `POST /api/v1/devices` | `201` the entry with `Location`; `409 conflict` if the id is registered. |
//! | `PUT /api/v1/devices/{id}` | `201` created or `200` replaced; `400 invalid_device` (field `id`) if the body's id differs from the path. |
//! | `DELETE /api/v1/devices/{id}` | `204`; `404 not_found` if not registered. |
//! | `GET /api/v1/devices/unknown` | `200 {"devices":[{"id","kind","district","readings","first_seen_ms","last_seen_ms"}],"count":n,"dropped":k,"max":m}` |
//!
//! Bodies are one device as JSON (`content-type: application/json`), checked by serde
//! (unknown fields refused) and [`Device::validate`](ioc_schemas::Device::validate); a bad
//! one is `400 invalid_device` whose message and `field` name the field. The id `unknown`
//! is reserved.
//!
//! **Changes go through the pipeline.** The API does not own the pipeline: a `POST`,
//! `PUT` or `DELETE` sends a [`RegistryRequest`] (the [`DeviceChange`](ioc_schemas::DeviceChange)
//! and a one-shot reply) on the bounded channel given to [`ApiState::set_registry_sender`]
//! and waits for the answer; the receiver (iocd) stores the change and feeds it to the
//! dataflow, then answers. Only on `Ok` does the API update its [`DeviceDirectory`] (and
//! take the id off the unknown list) and answer `201`/`200`/`204`. Changes go one at a
//! time, within `registry_timeout_ms` (default 5 s) in all:
//!
//! - no sender set: `503 registry_read_only`;
//! - the channel is full for the whole timeout (backpressure), its receiver is gone, or an
//!   earlier change is still unanswered: `503 unavailable`, nothing changed;
//! - the pipeline answers `Err(reason)`: `503 change_refused` with the reason, nothing
//!   changed; it drops the reply unanswered: `503 unavailable`;
//! - taken but not answered in time: `504 timeout`. The change may still be applied: the
//!   directory keeps waiting for the answer and follows it, whatever became of the request.
//!
//! Checks against the directory (`404`, `409`) come before the change is sent, so the
//! pipeline receives only changes the API will report. The caller fills the directory at
//! start-up ([`ApiState::with_devices`]) and applies there any change it makes itself
//! ([`DeviceDirectory::apply`]).
//!
//! Device status comes from device-scope `HealthKpi` rows published with
//! [`LiveFeed::publish_kpi`]: the row with the newest window end sets `status`
//! (`never_seen` until one arrives); `last_seen_ms` is the newest seen.
//!
//! **Unknown devices.** The pipeline stores and counts readings from ids the registry
//! does not know, and calls [`UnknownDevices::record`] for each. The list holds at most
//! `unknown_devices_max` ids (default 10 000). When it is full, readings from further new
//! ids are not tracked, only counted (`dropped`, `ioc_api_unknown_devices_dropped_total`);
//! tracked ids keep updating. An id leaves the list when it is registered through the API,
//! which frees its place.
//!
//! # WebSocket protocol (version 2)
//!
//! Every message is a JSON object in a text frame, with a `"type"` field. Version 2 adds
//! to version 1 (nothing was removed or renamed): a `seq` number on every update, a
//! `snapshot` of the latest values after each subscribe (and after a lag), and
//! `heartbeat` messages. A version 1 client that ignores unknown types and fields keeps
//! working.
//!
//! Client to server:
//!
//! | message | effect |
//! |---|---|
//! | `{"type":"subscribe","channels":["windows","kpi.air"],"kinds":["traffic_signal"],"districts":["hai_chau"],"devices":["tsc-hai_chau-001"],"metrics":["vehicles"]}` | start receiving the updates of `channels` that match every non-empty list that applies to them; each list is optional and an absent, `null` or empty list means "all". The server answers `subscribed`, then a `snapshot`, then updates. A new subscribe replaces the filter (and sends a new snapshot). |
//! | `{"type":"unsubscribe"}` | stop receiving updates (answered by `subscribed` with `"filter":null`) |
//! | `{"type":"ping"}` | the server answers `{"type":"pong"}` |
//!
//! Channels are `windows` (window results), `kpi.<family>` with family `traffic`,
//! `camera`, `air`, `water`, `hydrology`, `bridge` or `health` (KPI rows, see
//! `ioc_schemas::Kpi`), `alerts` (alert lifecycle events) and `dead_letters` (rejected
//! messages; none for a department token). Leaving `channels` out (or
//! `null`) means `["windows"]`, so clients written before KPIs keep working; an empty list
//! or an unknown name is refused. `kinds` and `metrics` narrow window results only;
//! `districts` and `devices` narrow the others too: a KPI row or alert matches `districts`
//! by its district (a city- or department-wide one has none, so it does not match a
//! district list) and `devices` by its entity id (a device id, or for aggregate rows the
//! district or department slug, or `da_nang`). A department token's `alerts` channel
//! carries only its department's alerts, in snapshots too.
//!
//! Kinds are `sensor`, `traffic_signal`, `camera_event`, `environment`; districts are the
//! slugs `hai_chau`, `thanh_khe`, `son_tra`, `ngu_hanh_son`, `lien_chieu`, `cam_le`,
//! `hoa_vang`. Unknown fields, channels, kinds or districts are refused.
//!
//! Server to client:
//!
//! | message | when |
//! |---|---|
//! | `{"type":"hello","protocol":2,"channels":["windows","kpi.traffic",...,"alerts","dead_letters"]}` | on connect, listing the channels. Until the client subscribes, nothing else is sent (no heartbeat either). |
//! | `{"type":"subscribed","filter":{"channels":["windows"],"kinds":[],"districts":["hai_chau"],"devices":[],"metrics":[]}}` | after each subscribe, with the filter in force (sorted, duplicates removed); `"filter":null` after an unsubscribe. A `snapshot` follows at once. |
//! | `{"type":"snapshot","seq":1,"windows":[{...}],"kpis":[{...}],"alerts":[{...}]}` | right after each `subscribed` with a filter, and after each `lagged`: the latest value of every key that matches the filter, for the subscribed channels only (the others are `[]`). `windows`: the newest `WindowResult` per (device, metric, window size); `kpis`: the newest `Kpi` per (family, entity id, window size or AQI period; camera rows also per event type, water rows per parameter); `alerts`: the newest `AlertEvent` of every open (active or acknowledged) alert. The client replaces what it holds with it. Every update published after the snapshot follows as a delta; one published while the snapshot was taken may come both in it and as a delta. |
//! | `{"type":"window","seq":2,"data":{...}}` | each matching window result; `data` is a `WindowResult` (`window-result.schema.json`). |
//! | `{"type":"kpi","seq":3,"family":"air","kpi":{"family":"air","station_id":...}}` | each matching KPI row; `kpi` is a `Kpi` (tagged by `family`). |
//! | `{"type":"alert","seq":4,"event":{"event_id":...,"alert":{...},"transition":"opened",...}}` | each matching alert event (`AlertEvent`). |
//! | `{"type":"dead_letter","seq":5,"dead_letter":{"code":"malformed_json",...}}` | each rejected message ([`DeadLetterView`]); a snapshot with `dead_letters` subscribed also carries the newest 50 as `"dead_letters":[...]`. |
//! | `{"type":"heartbeat","seq":5,"at_ms":1795827661000}` | every `ws_ping_interval_ms` (20 s) while subscribed, with the server's wall clock: a browser, which cannot see WebSocket pings, treats a link without one for a few intervals as dead and reconnects. |
//! | `{"type":"lagged","feed":"windows","skipped":46}` | the client fell behind on one feed (`windows`, `kpi` for every family, or `alerts`): `skipped` updates (counted before filtering) were dropped for it. A `snapshot` follows at once, then deltas; the client stays connected. |
//! | `{"type":"pong"}` | answer to a ping. |
//! | `{"type":"error","message":"invalid message: ..."}` | the client's last message was refused; `message` names what was wrong (not json, a missing `type`, an unknown field, channel, kind or district, a binary frame). The connection stays open and the previous filter stays in force. |
//!
//! **Sequence numbers.** `seq` numbers the messages that carry it (`snapshot`, `window`,
//! `kpi`, `alert`, `heartbeat`) on one connection: 1, 2, 3, ... in the order sent, across
//! subscribes, and never skips. A gap means the client lost messages (it should
//! reconnect); `hello`, `subscribed`, `lagged`, `pong` and `error` carry none.
//!
//! The server sends a WebSocket Ping frame every 20 s (`ws_ping_interval_ms`); browsers
//! answer automatically. A client that sends nothing, not even a Pong, for three intervals
//! is closed with code 1008. On server shutdown clients are closed with code 1001.
//!
//! # Snapshots and slow clients
//!
//! The live feed keeps the latest value of each key (as above) of each feed; resolved
//! alerts leave it. A feed keeps at most `snapshot_max_keys` keys (100 000): updates of
//! further new keys are still pushed, but not kept for snapshots, and counted in
//! `ioc_api_snapshot_keys_dropped_total`. The value is kept before it is broadcast, and a
//! connection subscribes its broadcast receivers before it takes the snapshot, so nothing
//! published between the snapshot and the first delta is lost.
//!
//! Each connection has a bounded queue of `ws_buffer` outgoing messages. A client that
//! reads slowly fills it; its forwarding then waits (backpressure: the feed itself never
//! waits on a client), and once it is more than `broadcast_capacity` updates behind on a
//! broadcast, it gets `lagged` for that feed (`skipped` counts the updates it missed and
//! those still queued for it), then a fresh `snapshot` of every subscribed channel; the
//! backlog is dropped, since the snapshot supersedes it. So a slow client is never
//! dropped silently nor left with a stale picture: lagging coalesces its missed updates
//! into the latest value per key. Skipped updates are counted in `ioc_api_ws_lagged_total`.
//! A connection holds a receiver only for the broadcasts its channels need.
//!
//! # Metrics
//!
//! `ioc_api_ws_clients` (gauge), `ioc_api_ws_updates_total` (window results published),
//! `ioc_api_ws_kpi_updates_total{family}` (KPI rows published), `ioc_api_ws_lagged_total`
//! (updates skipped by lagging clients), `ioc_api_snapshot_keys_dropped_total` (updates of
//! new keys not kept for snapshots because the feed was full), `ioc_api_http_requests_total{route,status}`
//! (route is the route template, `unmatched` for unknown paths),
//! `ioc_api_registry_changes_total{op,outcome}` (`upsert`/`remove`; `applied`, `refused`,
//! `unavailable`, `timeout`, `read_only`), `ioc_api_unknown_devices` (gauge: ids tracked)
//! and `ioc_api_unknown_devices_dropped_total` (readings from untracked unknown ids),
//! `ioc_api_auth_failures_total{reason}` (requests refused by access control).

mod auth;
mod config;
mod dead_letters;
mod devices;
mod error;
mod extract;
mod feed;
mod health;
mod history;
mod limits;
mod metrics;
mod openapi;
mod page;
pub mod protocol;
mod rest;
mod server;
mod source;
mod state;
mod token;
mod token_store;
mod ws;

pub use config::{AuthConfig, DashboardConfig, HttpConfig, TokenSpec};
pub use dead_letters::DeadLetterView;
pub use devices::{DeviceDirectory, DeviceView, RegistryRequest, UnknownDevice, UnknownDevices};
pub use error::ApiError;
pub use feed::LiveFeed;
pub use health::{ComponentHealth, Health, HealthReport, HealthStatus};
pub use metrics::ApiMetrics;
pub use openapi::api_description;
pub use server::{bind, router, router_with, serve, serve_with};
pub use source::{
    BoxError, DeadLetterQuery, HistoryError, HistoryFuture, HistorySource, KpiHistoryQuery,
    DEAD_LETTERS_MAX_ROWS, KPI_HISTORY_MAX_ROWS,
};
pub use state::ApiState;
pub use token::{generate_token, hash_token};
