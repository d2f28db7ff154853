//! Bearer-token access control over a real socket: 401 without a known token, the role
//! matrix (with an extra router standing in for iocd's alert routes), the WebSocket, the
//! admin token API and the tokens file.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use axum::routing::post;
use axum::{Extension, Json, Router};
use common::{http_get, http_request, next_json, next_json_within, send_json, Response, Server};
use ioc_dashboard_api::{hash_token, ApiState, AuthConfig, HttpConfig, TokenSpec};
use ioc_schemas::{
    Alert, AlertEvent, AlertState, Category, Department, District, Principal, Role, Severity,
    Transition,
};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite;

const ADMIN: &str = "admin-secret";
const OPERATOR: &str = "operator-secret";
const ANALYST: &str = "analyst-secret";
const POLICE: &str = "police-secret";

fn tokens() -> Vec<TokenSpec> {
    vec![
        TokenSpec::from_token("root", Role::Admin, None, ADMIN),
        TokenSpec::from_token("ops", Role::Operator, None, OPERATOR),
        TokenSpec::from_token("ana", Role::Analyst, None, ANALYST),
        TokenSpec::from_token("police", Role::Department, Some(Department::Police), POLICE),
    ]
}

fn config() -> HttpConfig {
    HttpConfig {
        auth: AuthConfig {
            tokens: tokens(),
            ..AuthConfig::default()
        },
        ..HttpConfig::default()
    }
}

/// Answers with the caller the middleware put in the request.
async fn echo(Extension(principal): Extension<Principal>) -> Json<Principal> {
    Json(principal)
}

/// Stands in for iocd's alert routes.
fn extra() -> Router {
    Router::new()
        .route("/api/v1/subscriptions", post(echo))
        .route("/api/v1/alerts/{id}/acknowledge", post(echo))
}

async fn start(config: HttpConfig) -> anyhow::Result<Server> {
    let state = ApiState::new(&config, prometheus::Registry::new())?;
    Server::serve_state_with(state, extra()).await
}

async fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<Response> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth.as_str()));
    }
    let body = body.map(Value::to_string);
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    http_request(
        server.addr,
        method,
        path,
        &headers,
        body.as_deref().map(str::as_bytes),
    )
    .await
}

fn assert_unauthorized(response: &Response) -> anyhow::Result<()> {
    assert_eq!(response.status, 401, "{}", response.body);
    assert_eq!(response.header("www-authenticate"), Some("Bearer"));
    assert_eq!(response.json()?["error"]["code"], "unauthorized");
    Ok(())
}

fn assert_forbidden(response: &Response, role: &str) -> anyhow::Result<()> {
    assert_eq!(response.status, 403, "{}", response.body);
    let body = response.json()?;
    assert_eq!(body["error"]["code"], "forbidden");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("the {role} role")), "{message}");
    Ok(())
}

fn assert_allowed(response: &Response) {
    assert!(
        ![401, 403].contains(&response.status),
        "{} {}",
        response.status,
        response.body
    );
}

fn metric_line(metrics: &str, prefix: &str) -> Option<String> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .map(str::to_owned)
}

#[tokio::test]
async fn no_token_no_entry_but_health_and_public_metrics() -> anyhow::Result<()> {
    let server = start(config()).await?;
    assert_unauthorized(&http_get(server.addr, "/api/v1/devices").await?)?;
    assert_unauthorized(&http_get(server.addr, "/no/such/route").await?)?;
    assert_unauthorized(&call(&server, "GET", "/api/v1/devices", Some("wrong"), None).await?)?;
    let basic = http_request(
        server.addr,
        "GET",
        "/api/v1/devices",
        &[("authorization", "Basic YWRtaW4=")],
        None,
    )
    .await?;
    assert_unauthorized(&basic)?;
    assert_unauthorized(
        &call(
            &server,
            "POST",
            "/api/v1/subscriptions",
            None,
            Some(&json!({})),
        )
        .await?,
    )?;
    assert_eq!(http_get(server.addr, "/healthz").await?.status, 200);
    let metrics = http_get(server.addr, "/metrics").await?;
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metric_line(
            &metrics.body,
            "ioc_api_auth_failures_total{reason=\"missing\"}"
        )
        .as_deref(),
        Some("ioc_api_auth_failures_total{reason=\"missing\"} 4")
    );
    assert_eq!(
        metric_line(
            &metrics.body,
            "ioc_api_auth_failures_total{reason=\"unknown\"}"
        )
        .as_deref(),
        Some("ioc_api_auth_failures_total{reason=\"unknown\"} 1")
    );
    // 401s are counted in the request metrics too.
    assert!(
        metrics
            .body
            .contains("ioc_api_http_requests_total{route=\"/api/v1/devices\",status=\"401\"} 3"),
        "{}",
        metrics.body
    );
    server.shutdown().await?;

    let mut private = config();
    private.auth.metrics_public = false;
    let server = start(private).await?;
    assert_unauthorized(&http_get(server.addr, "/metrics").await?)?;
    assert_eq!(http_get(server.addr, "/healthz").await?.status, 200);
    let metrics = call(&server, "GET", "/metrics", Some(ANALYST), None).await?;
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("ioc_api_auth_failures_total"));
    server.shutdown().await?;

    // Off: everything is open, and no principal is set.
    let mut off = config();
    off.auth.enabled = false;
    let server = Server::start_with_auth(off).await?;
    assert_eq!(http_get(server.addr, "/api/v1/devices").await?.status, 200);
    server.shutdown().await
}

#[tokio::test]
async fn each_role_gets_what_it_may() -> anyhow::Result<()> {
    let server = start(config()).await?;
    let device = json!({});
    let ack = "/api/v1/alerts/a-1/acknowledge";

    // Admin: everything.
    let r = call(&server, "GET", "/api/v1/devices", Some(ADMIN), None).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        &server,
        "POST",
        "/api/v1/subscriptions",
        Some(ADMIN),
        Some(&json!({})),
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()?,
        json!({"name": "root", "role": "admin", "department": null})
    );
    assert_allowed(
        &call(
            &server,
            "POST",
            "/api/v1/devices",
            Some(ADMIN),
            Some(&device),
        )
        .await?,
    );
    assert_eq!(
        call(&server, "GET", "/api/v1/tokens", Some(ADMIN), None)
            .await?
            .status,
        200
    );

    // Operator: reads, alert actions, devices; not subscriptions nor tokens.
    assert_eq!(
        call(&server, "GET", "/api/v1/devices", Some(OPERATOR), None)
            .await?
            .status,
        200
    );
    let r = call(&server, "POST", ack, Some(OPERATOR), Some(&json!({}))).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()?["name"], "ops");
    let r = call(
        &server,
        "POST",
        "/api/v1/devices",
        Some(OPERATOR),
        Some(&device),
    )
    .await?;
    assert_allowed(&r);
    assert_eq!(r.json()?["error"]["code"], "invalid_device");
    assert_allowed(&call(&server, "DELETE", "/api/v1/devices/x", Some(OPERATOR), None).await?);
    assert_forbidden(
        &call(
            &server,
            "POST",
            "/api/v1/subscriptions",
            Some(OPERATOR),
            Some(&json!({})),
        )
        .await?,
        "operator",
    )?;
    assert_forbidden(
        &call(&server, "GET", "/api/v1/tokens", Some(OPERATOR), None).await?,
        "operator",
    )?;

    // Analyst: reads only.
    assert_eq!(
        call(
            &server,
            "GET",
            "/api/v1/devices/unknown",
            Some(ANALYST),
            None
        )
        .await?
        .status,
        200
    );
    assert_forbidden(
        &call(&server, "POST", ack, Some(ANALYST), Some(&json!({}))).await?,
        "analyst",
    )?;
    assert_forbidden(
        &call(&server, "DELETE", "/api/v1/devices/x", Some(ANALYST), None).await?,
        "analyst",
    )?;
    assert_forbidden(
        &call(
            &server,
            "POST",
            "/api/v1/devices",
            Some(ANALYST),
            Some(&device),
        )
        .await?,
        "analyst",
    )?;

    // Department: its own subscriptions and alert actions; no device changes.
    assert_eq!(
        call(&server, "GET", "/api/v1/devices", Some(POLICE), None)
            .await?
            .status,
        200
    );
    let r = call(
        &server,
        "POST",
        "/api/v1/subscriptions",
        Some(POLICE),
        Some(&json!({})),
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()?,
        json!({"name": "police", "role": "department", "department": "police"})
    );
    assert_eq!(
        call(&server, "POST", ack, Some(POLICE), Some(&json!({})))
            .await?
            .status,
        200
    );
    assert_forbidden(
        &call(
            &server,
            "POST",
            "/api/v1/devices",
            Some(POLICE),
            Some(&device),
        )
        .await?,
        "department",
    )?;
    assert_forbidden(
        &call(
            &server,
            "PUT",
            "/api/v1/devices/x",
            Some(POLICE),
            Some(&device),
        )
        .await?,
        "department",
    )?;
    assert_forbidden(
        &call(
            &server,
            "POST",
            "/api/v1/tokens",
            Some(POLICE),
            Some(&json!({})),
        )
        .await?,
        "department",
    )?;

    let metrics = call(&server, "GET", "/metrics", None, None).await?;
    assert_eq!(
        metric_line(
            &metrics.body,
            "ioc_api_auth_failures_total{reason=\"forbidden\"}"
        )
        .as_deref(),
        Some("ioc_api_auth_failures_total{reason=\"forbidden\"} 8")
    );
    server.shutdown().await
}

fn alert_event(entity: &str, department: Department) -> AlertEvent {
    let alert = Alert {
        id: format!("rule:{entity}:1"),
        rule_id: "rule".into(),
        entity_id: entity.into(),
        district: Some(District::HaiChau),
        department,
        category: Category::PublicSafety,
        severity: Severity::Major,
        state: AlertState::Active,
        message: "something".into(),
        value: Some(1.0),
        opened_ms: 1,
        breach_event_ms: 1,
        updated_ms: 1,
        breaches: 1,
        escalations: 0,
        acknowledged: None,
        resolved: None,
        comments: Vec::new(),
        suppressed: false,
    };
    AlertEvent {
        event_id: format!("{}:1", alert.id),
        alert,
        transition: Transition::Opened,
        at_ms: 1,
        actor: "system".into(),
        notify: true,
    }
}

async fn ws_connect(server: &Server, token: &str) -> anyhow::Result<common::Ws> {
    let (mut ws, response) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws?token={token}", server.addr)).await?;
    assert_eq!(response.status().as_u16(), 101);
    assert_eq!(next_json(&mut ws).await?["type"], "hello");
    send_json(
        &mut ws,
        json!({"type": "subscribe", "channels": ["alerts"]}),
    )
    .await?;
    assert_eq!(next_json(&mut ws).await?["type"], "subscribed");
    common::expect_snapshot(&mut ws).await?;
    Ok(ws)
}

#[tokio::test]
async fn the_websocket_needs_a_token_and_confines_departments() -> anyhow::Result<()> {
    let server = start(config()).await?;
    match tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr)).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    match tokio_tungstenite::connect_async(format!("ws://{}/ws?token=nope", server.addr)).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    // The header works as well as the query parameter.
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}/ws",
        server.addr
    ))?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {ANALYST}").parse()?);
    let (_analyst, response) = tokio_tungstenite::connect_async(request).await?;
    assert_eq!(response.status().as_u16(), 101);

    let mut police = ws_connect(&server, POLICE).await?;
    let mut admin = ws_connect(&server, ADMIN).await?;
    let feed = server.state.feed().clone();
    feed.publish_alert(alert_event("tsc-1", Department::Transport));
    feed.publish_alert(alert_event("cam-1", Department::Police));

    let first = next_json(&mut police).await?;
    assert_eq!(first["type"], "alert", "{first}");
    assert_eq!(first["event"]["alert"]["entity_id"], "cam-1");
    assert_eq!(
        next_json_within(&mut police, Duration::from_millis(300)).await?,
        None
    );
    // An unconfined client gets both.
    assert_eq!(
        next_json(&mut admin).await?["event"]["alert"]["entity_id"],
        "tsc-1"
    );
    assert_eq!(
        next_json(&mut admin).await?["event"]["alert"]["entity_id"],
        "cam-1"
    );
    server.shutdown().await
}

#[tokio::test]
async fn admins_issue_and_revoke_tokens() -> anyhow::Result<()> {
    let server = start(config()).await?;
    let issued = call(
        &server,
        "POST",
        "/api/v1/tokens",
        Some(ADMIN),
        Some(&json!({"name": "traffic-desk", "role": "department", "department": "transport"})),
    )
    .await?;
    assert_eq!(issued.status, 201, "{}", issued.body);
    let body = issued.json()?;
    assert_eq!(body["name"], "traffic-desk");
    assert_eq!(body["role"], "department");
    assert_eq!(body["department"], "transport");
    let token = body["token"].as_str().unwrap_or_default().to_owned();
    assert!(token.starts_with("ioc_") && token.len() == 47, "{token}");

    let r = call(
        &server,
        "POST",
        "/api/v1/subscriptions",
        Some(&token),
        Some(&json!({})),
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()?["name"], "traffic-desk");

    let list = call(&server, "GET", "/api/v1/tokens", Some(ADMIN), None).await?;
    assert_eq!(list.status, 200);
    assert!(!list.body.contains(&hash_token(&token)), "{}", list.body);
    assert!(!list.body.contains("sha256"), "{}", list.body);
    let list = list.json()?;
    assert_eq!(list["count"], 5);
    assert!(list["tokens"].as_array().is_some_and(|t| t
        .contains(&json!({"name": "traffic-desk", "role": "department",
            "department": "transport", "source": "issued"}))));

    // Refusals.
    let again = call(
        &server,
        "POST",
        "/api/v1/tokens",
        Some(ADMIN),
        Some(&json!({"name": "traffic-desk", "role": "analyst"})),
    )
    .await?;
    assert_eq!(again.status, 409, "{}", again.body);
    let bad = call(
        &server,
        "POST",
        "/api/v1/tokens",
        Some(ADMIN),
        Some(&json!({"name": "x", "role": "department"})),
    )
    .await?;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let unknown_field = call(
        &server,
        "POST",
        "/api/v1/tokens",
        Some(ADMIN),
        Some(&json!({"name": "x", "role": "admin", "sha256": "00"})),
    )
    .await?;
    assert_eq!(unknown_field.status, 400, "{}", unknown_field.body);
    assert_eq!(
        call(&server, "DELETE", "/api/v1/tokens/ops", Some(ADMIN), None)
            .await?
            .status,
        409
    );
    assert_eq!(
        call(
            &server,
            "DELETE",
            "/api/v1/tokens/nobody",
            Some(ADMIN),
            None
        )
        .await?
        .status,
        404
    );
    assert_forbidden(
        &call(
            &server,
            "DELETE",
            "/api/v1/tokens/traffic-desk",
            Some(OPERATOR),
            None,
        )
        .await?,
        "operator",
    )?;

    let deleted = call(
        &server,
        "DELETE",
        "/api/v1/tokens/traffic-desk",
        Some(ADMIN),
        None,
    )
    .await?;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_unauthorized(&call(&server, "GET", "/api/v1/devices", Some(&token), None).await?)?;
    server.shutdown().await
}

#[tokio::test]
async fn a_token_added_at_start_works_and_stays() -> anyhow::Result<()> {
    let state = ApiState::new(&config(), prometheus::Registry::new())?;
    let demo = ioc_dashboard_api::generate_token()?;
    state.add_token("demo-admin", Role::Admin, None, &demo)?;
    assert!(state
        .add_token("demo-admin", Role::Admin, None, "other")
        .is_err());
    assert!(state
        .add_token("d", Role::Department, None, "other")
        .is_err());
    let server = Server::serve_state(state).await?;
    assert_eq!(
        call(&server, "GET", "/api/v1/tokens", Some(&demo), None)
            .await?
            .status,
        200
    );
    assert_eq!(
        call(
            &server,
            "DELETE",
            "/api/v1/tokens/demo-admin",
            Some(&demo),
            None
        )
        .await?
        .status,
        409
    );
    server.shutdown().await
}

fn temp_path(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("ioc-{name}-{}-{nanos}.json", std::process::id()))
}

#[tokio::test]
async fn issued_tokens_survive_a_restart_in_the_tokens_file() -> anyhow::Result<()> {
    let path = temp_path("tokens");
    let mut with_file = config();
    with_file.auth.tokens_file = Some(path.clone());

    let server = start(with_file.clone()).await?;
    let issued = call(
        &server,
        "POST",
        "/api/v1/tokens",
        Some(ADMIN),
        Some(&json!({"name": "night-analyst", "role": "analyst"})),
    )
    .await?;
    assert_eq!(issued.status, 201, "{}", issued.body);
    let token = issued.json()?["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    server.shutdown().await?;

    let text = std::fs::read_to_string(&path)?;
    assert!(text.contains(&hash_token(&token)), "{text}");
    assert!(!text.contains(&token), "the token itself is never stored");
    assert!(
        !text.contains("\"root\""),
        "configured tokens stay in the config"
    );
    let file: Value = serde_json::from_str(&text)?;
    assert_eq!(
        file,
        json!({"tokens": [{"name": "night-analyst", "role": "analyst", "department": null,
            "sha256": hash_token(&token)}]})
    );

    // Loaded again after a restart.
    let server = start(with_file.clone()).await?;
    assert_eq!(
        call(&server, "GET", "/api/v1/devices", Some(&token), None)
            .await?
            .status,
        200
    );
    assert_eq!(
        call(
            &server,
            "DELETE",
            "/api/v1/tokens/night-analyst",
            Some(ADMIN),
            None
        )
        .await?
        .status,
        204
    );
    server.shutdown().await?;
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    assert_eq!(file, json!({"tokens": []}));

    let server = start(with_file.clone()).await?;
    assert_unauthorized(&call(&server, "GET", "/api/v1/devices", Some(&token), None).await?)?;
    server.shutdown().await?;

    // A broken file refuses to start.
    std::fs::write(&path, "{not json")?;
    let e = ApiState::new(&with_file, prometheus::Registry::new()).unwrap_err();
    assert!(e.to_string().contains("tokens file"), "{e}");
    std::fs::remove_file(&path)?;
    Ok(())
}
