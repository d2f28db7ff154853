//! The OpenAPI description of this crate's routes, and `GET /openapi.json`, which serves it
//! merged with the description of the routes served beside them (the alerts' API).

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ioc_schemas::openapi::{ApiDescription, Method, Operation};
use ioc_schemas::{Device, KpiFamily};

use crate::auth::{IssueRequest, Issued, TokenList};
use crate::devices::DeviceView;
use crate::health::HealthReport;
use crate::history::{DeadLetterParams, DeadLetters, History, HistoryParams};
use crate::page::PageConfig;
use crate::rest::{DeviceList, ListQuery, UnknownList};
use crate::state::ApiState;

const DEVICE_ID: &str = "the device id";

const REGISTRY_ERRORS: &[(u16, &str)] = &[
    (
        503,
        "the registry is read-only, the pipeline is busy or refused the change (`registry_read_only`, `unavailable`, `change_refused`)",
    ),
    (504, "the pipeline took the change but did not confirm it in time (`timeout`)"),
];

/// The operations of the routes this crate serves (the page's, the API's, `/healthz`,
/// `/metrics`, `/ws` and `/openapi.json`).
pub fn api_description() -> ApiDescription {
    let health = |id| {
        Operation::new(id, "Health", "Health of the process and its components")
            .ok::<HealthReport>(200, "every component is ok")
            .ok::<HealthReport>(503, "some component is not ok (`status: degraded`)")
    };
    ApiDescription::new()
        .route(Method::Get, "/healthz", health("healthz").public())
        .route(Method::Get, "/api/v1/health", health("getHealth"))
        .route(
            Method::Get,
            "/metrics",
            Operation::new(
                "metrics",
                "Health",
                "Prometheus metrics (text format 0.0.4)",
            )
            .description("Public unless `http.auth.metrics_public` is false.")
            .ok_other(200, "the metrics", "text/plain"),
        )
        .route(
            Method::Get,
            "/openapi.json",
            Operation::new("openapi", "Health", "This document")
                .public()
                .ok_other(200, "the OpenAPI 3.1 document", "application/json"),
        )
        .route(
            Method::Get,
            "/ws",
            Operation::new("websocket", "Live", "The live feed (WebSocket, protocol 2)")
                .description(
                    "Upgrade to a WebSocket; the token may also come as `?token=`. The \
                     messages are described in the README (WebSocket protocol).",
                )
                .query::<String>("token", "the bearer token, for browsers")
                .empty(101, "switching to the WebSocket protocol")
                .errors(&[(
                    426,
                    "not a WebSocket upgrade request (`websocket_required`)",
                )]),
        )
        .route(
            Method::Get,
            "/",
            Operation::new("page", "Page", "The operator page")
                .public()
                .ok_other(200, "the page", "text/html"),
        )
        .route(
            Method::Get,
            "/ui/config.json",
            Operation::new("pageConfig", "Page", "What the page needs before log-in")
                .public()
                .ok::<PageConfig>(200, "whether a token is needed, and the map tiles"),
        )
        .route(
            Method::Get,
            "/assets/{file}",
            Operation::new(
                "asset",
                "Page",
                "A file of the page (script, styles, map library)",
            )
            .public()
            .path::<String>("file", "the file, e.g. `app.js`")
            .ok_other(200, "the file", "application/octet-stream")
            .errors(&[(404, "no such asset")]),
        )
        .route(
            Method::Get,
            "/api/v1/devices",
            Operation::new(
                "listDevices",
                "Devices",
                "Registered devices with their status",
            )
            .query_struct::<ListQuery>()
            .ok::<DeviceList>(200, "the devices, by id"),
        )
        .route(
            Method::Post,
            "/api/v1/devices",
            Operation::new("createDevice", "Devices", "Register a device")
                .body::<Device>()
                .ok::<DeviceView>(201, "registered; `Location` names it")
                .errors(&[(409, "the id is registered (`conflict`)")])
                .errors(REGISTRY_ERRORS),
        )
        .route(
            Method::Get,
            "/api/v1/devices/unknown",
            Operation::new(
                "listUnknownDevices",
                "Devices",
                "Ids that send readings but are not registered",
            )
            .ok::<UnknownList>(200, "the ids tracked"),
        )
        .route(
            Method::Get,
            "/api/v1/devices/{id}",
            Operation::new("getDevice", "Devices", "One registered device")
                .path::<String>("id", DEVICE_ID)
                .ok::<DeviceView>(200, "the device")
                .errors(&[(404, "not registered")]),
        )
        .route(
            Method::Put,
            "/api/v1/devices/{id}",
            Operation::new("putDevice", "Devices", "Register or replace a device")
                .path::<String>("id", DEVICE_ID)
                .body::<Device>()
                .ok::<DeviceView>(200, "replaced")
                .ok::<DeviceView>(201, "registered")
                .errors(REGISTRY_ERRORS),
        )
        .route(
            Method::Delete,
            "/api/v1/devices/{id}",
            Operation::new(
                "deleteDevice",
                "Devices",
                "Remove a device from the registry",
            )
            .path::<String>("id", DEVICE_ID)
            .empty(204, "removed")
            .errors(&[(404, "not registered")])
            .errors(REGISTRY_ERRORS),
        )
        .route(
            Method::Get,
            "/api/v1/kpis/{family}",
            Operation::new("kpiHistory", "KPIs", "KPI history")
                .description(
                    "The newest version of each KPI row of a family whose window starts in \
                     `[from, to)`, oldest first: from ClickHouse, or without one from the \
                     rows kept in memory since start-up (`source`).",
                )
                .path::<KpiFamily>("family", "the KPI family")
                .query_struct::<HistoryParams>()
                .ok::<History>(200, "the rows")
                .errors(&[
                    (404, "no such family"),
                    (503, "ClickHouse is not reached yet, or cannot be read"),
                ]),
        )
        .route(
            Method::Get,
            "/api/v1/dead-letters",
            Operation::new("deadLetters", "Dead letters", "Recent rejected messages")
                .description(
                    "The newest rejected messages, newest first, with their code, reason, \
                     source, time and first bytes: from ClickHouse's `dead_letters`, or \
                     without one from the newest 1000 kept in memory since start-up \
                     (`source`). The WebSocket's `dead_letters` channel pushes them live.",
                )
                .query_struct::<DeadLetterParams>()
                .ok::<DeadLetters>(200, "the letters")
                .errors(&[(503, "ClickHouse cannot be read")]),
        )
        .route(
            Method::Get,
            "/api/v1/tokens",
            Operation::new(
                "listTokens",
                "Tokens",
                "The tokens access control knows (admin)",
            )
            .ok::<TokenList>(200, "every token, never its hash"),
        )
        .route(
            Method::Post,
            "/api/v1/tokens",
            Operation::new("issueToken", "Tokens", "Issue a token (admin)")
                .body::<IssueRequest>()
                .ok::<Issued>(201, "the token, shown this once")
                .errors(&[
                    (409, "the name is taken"),
                    (500, "the tokens file cannot be written"),
                ]),
        )
        .route(
            Method::Delete,
            "/api/v1/tokens/{name}",
            Operation::new("revokeToken", "Tokens", "Revoke an issued token (admin)")
                .path::<String>("name", "the token's name")
                .empty(204, "revoked")
                .errors(&[
                    (404, "no such token"),
                    (409, "a configured token cannot be revoked here"),
                    (500, "the tokens file cannot be written"),
                ]),
        )
}

/// `GET /openapi.json`.
pub(crate) async fn openapi_json(State(state): State<ApiState>) -> Response {
    let document = api_description()
        .merge(state.extra_api_description())
        .document(
            "Da Nang IOC API",
            env!("CARGO_PKG_VERSION"),
            "The HTTP API of the Da Nang IOC streaming backend: devices, KPI history, alerts, \
         rules, webhook subscriptions and deliveries, tokens, health, and the live WebSocket.",
        );
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        Json(document),
    )
        .into_response()
}
