//! `/healthz` and `/metrics` over a real socket.

mod common;

use common::{http_get, Server};
use ioc_dashboard_api::{bind, ApiError, ApiState, HttpConfig};

#[tokio::test]
async fn healthz_is_200_when_all_ok_and_503_when_degraded() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig::default()).await?;
    let health = server.state.health().clone();
    health.set_component("mqtt", true, "connected to 127.0.0.1:1883");
    health.set_component("clickhouse", true, "ok");
    health.set_component("dataflow", true, "running");

    let ok = http_get(server.addr, "/healthz").await?;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.header("content-type"), Some("application/json"));
    let body = ok.json()?;
    assert_eq!(body["status"], "ok");
    assert!(body["uptime_s"].is_u64(), "{body}");
    assert_eq!(
        body["components"]["mqtt"],
        serde_json::json!({"ok": true, "detail": "connected to 127.0.0.1:1883"})
    );
    assert_eq!(body["components"].as_object().map(|c| c.len()), Some(3));

    health.set_component("clickhouse", false, "connection refused".to_owned());
    let degraded = http_get(server.addr, "/healthz").await?;
    assert_eq!(degraded.status, 503, "{degraded:?}");
    let body = degraded.json()?;
    assert_eq!(body["status"], "degraded");
    assert!(body["uptime_s"].is_u64(), "{body}");
    assert_eq!(
        body["components"]["clickhouse"],
        serde_json::json!({"ok": false, "detail": "connection refused"})
    );
    assert_eq!(body["components"]["dataflow"]["ok"], true);

    server.shutdown().await
}

#[tokio::test]
async fn metrics_render_the_shared_registry_by_route_template() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig::default()).await?;
    // Another component's metric in the same registry is rendered too.
    let other = prometheus::IntCounter::new("ioc_test_other_total", "test")?;
    server.state.registry().register(Box::new(other.clone()))?;
    other.inc_by(7);

    assert_eq!(http_get(server.addr, "/healthz").await?.status, 200);
    assert_eq!(http_get(server.addr, "/nope/123").await?.status, 404);
    let metrics = http_get(server.addr, "/metrics").await?;
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4")
    );
    let body = &metrics.body;
    for line in [
        "# TYPE ioc_api_ws_clients gauge",
        "ioc_api_ws_clients 0",
        "ioc_api_ws_updates_total 0",
        "ioc_api_ws_lagged_total 0",
        r#"ioc_api_http_requests_total{route="/healthz",status="200"} 1"#,
        r#"ioc_api_http_requests_total{route="unmatched",status="404"} 1"#,
        "ioc_test_other_total 7",
    ] {
        assert!(body.lines().any(|l| l == line), "no `{line}` in:\n{body}");
    }
    assert!(
        !body.contains("/nope/123"),
        "raw path leaked into labels:\n{body}"
    );

    server.shutdown().await
}

#[tokio::test]
async fn startup_errors_are_classified() -> anyhow::Result<()> {
    let registry = prometheus::Registry::new();
    let _first = ApiState::new(&HttpConfig::default(), registry.clone())?;
    let twice = ApiState::new(&HttpConfig::default(), registry).unwrap_err();
    assert!(matches!(twice, ApiError::Metrics(_)), "{twice}");
    assert!(!twice.is_retryable());

    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let config = HttpConfig {
        listen: taken.local_addr()?,
        ..HttpConfig::default()
    };
    let err = bind(&config).await.unwrap_err();
    assert!(
        err.to_string().starts_with("cannot listen on 127.0.0.1:"),
        "{err}"
    );
    assert!(err.is_retryable());

    let zero = HttpConfig {
        broadcast_capacity: 0,
        ..HttpConfig::default()
    };
    let err = ApiState::new(&zero, prometheus::Registry::new()).unwrap_err();
    assert!(err.to_string().contains("broadcast_capacity"), "{err}");
    Ok(())
}
