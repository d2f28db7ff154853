//! `GET /openapi.json` over a real socket: public, every `$ref` resolves, the extra routes'
//! description is merged in, and every route described is one the server serves.

mod common;

use common::{http_get, http_request, Server};
use ioc_dashboard_api::{api_description, ApiState, AuthConfig, HttpConfig, TokenSpec};
use ioc_schemas::openapi::{self, ApiDescription, Method, Operation};
use ioc_schemas::Role;

const ADMIN: &str = "admin-secret";

#[tokio::test]
async fn the_document_is_public_complete_and_true_to_the_routes() -> anyhow::Result<()> {
    let config = HttpConfig {
        auth: AuthConfig {
            tokens: vec![TokenSpec::from_token("root", Role::Admin, None, ADMIN)],
            ..AuthConfig::default()
        },
        ..HttpConfig::default()
    };
    let state = ApiState::new(&config, prometheus::Registry::new())?;
    state.add_api_description(ApiDescription::new().route(
        Method::Get,
        "/api/v1/extra",
        Operation::new("extra", "Extra", "A route served beside the API"),
    ));
    let extra = axum::Router::new().route("/api/v1/extra", axum::routing::get(|| async { "" }));
    let server = Server::serve_state_with(state, extra).await?;

    // No token needed.
    let response = http_get(server.addr, "/openapi.json").await?;
    assert_eq!(response.status, 200, "{}", response.body);
    let doc = response.json()?;
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/extra"]["get"].is_object());
    assert_eq!(
        doc["paths"]["/api/v1/devices"]["get"]["parameters"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    assert!(!openapi::refs(&doc).is_empty());
    assert_eq!(openapi::dangling_refs(&doc), Vec::<&str>::new());

    // Every route described is served: with a token the router never answers its
    // "no such route" 404 or 405 to it.
    let auth = format!("Bearer {ADMIN}");
    for (method, path) in api_description().routes() {
        let method = match method {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        };
        let concrete = path
            .replace("{id}", "x")
            .replace("{name}", "x")
            .replace("{family}", "air")
            .replace("{file}", "x");
        let response = http_request(
            server.addr,
            method,
            &concrete,
            &[("authorization", &auth)],
            None,
        )
        .await?;
        assert_ne!(response.status, 405, "{method} {path}");
        assert!(
            !response.body.contains("no such route"),
            "{method} {path}: {}",
            response.body
        );
    }
    server.shutdown().await
}
