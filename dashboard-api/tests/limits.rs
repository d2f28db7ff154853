//! Input limits over a real socket: a client over its rate gets 429 with `Retry-After` (and
//! health checks are never throttled), and an oversized body gets 413.

mod common;

use common::{http_get, http_request, Server};
use ioc_dashboard_api::HttpConfig;

#[tokio::test]
async fn a_client_over_its_rate_is_told_when_to_retry() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig {
        rate_limit_per_s: 0.5,
        rate_limit_burst: 3,
        ..HttpConfig::default()
    })
    .await?;
    for _ in 0..3 {
        assert_eq!(http_get(server.addr, "/api/v1/devices").await?.status, 200);
    }
    let refused = http_get(server.addr, "/api/v1/devices").await?;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()?["error"]["code"], "rate_limited");
    // One token comes back every 2 s.
    assert_eq!(refused.header("retry-after"), Some("2"));
    // Monitoring is never throttled.
    assert_eq!(http_get(server.addr, "/healthz").await?.status, 200);
    assert_eq!(http_get(server.addr, "/metrics").await?.status, 200);
    assert_eq!(server.state.metrics().rate_limited.get(), 1);
    server.shutdown().await
}

#[tokio::test]
async fn an_oversized_body_is_refused() -> anyhow::Result<()> {
    let server = Server::start(HttpConfig {
        max_body_bytes: 1024,
        ..HttpConfig::default()
    })
    .await?;
    let body = format!(r#"{{"id":"x","name":"{}"}}"#, "a".repeat(4096));
    let response = http_request(
        server.addr,
        "POST",
        "/api/v1/devices",
        &[("content-type", "application/json")],
        Some(body.as_bytes()),
    )
    .await?;
    assert_eq!(response.status, 413, "{}", response.body);
    assert!(response.json().is_ok(), "a JSON error: {}", response.body);
    server.shutdown().await
}
