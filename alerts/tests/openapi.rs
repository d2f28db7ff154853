//! The OpenAPI description of the alerts' routes ([`ioc_alerts::api_description`]) against
//! the real router: every route the routers declare is described, every method described is
//! served (and every other method is `405`), what a simple request gets is a documented
//! status, and every `$ref` of the document resolves.

#[path = "webhooks_support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::http::StatusCode;
use ioc_alerts::webhooks::MemoryAttemptLog;
use ioc_alerts::{api_description, Alerts, AlertsConfig, DeviceLookup};
use ioc_schemas::openapi::{self, Method};
use ioc_schemas::Department;
use serde_json::Value;
use support::*;

/// What the test router answers for a path no route has.
const NO_ROUTE: StatusCode = StatusCode::IM_A_TEAPOT;

const TAGS: [&str; 4] = ["Alerts", "Rules", "Subscriptions", "Deliveries"];

struct NoDevices;

impl DeviceLookup for NoDevices {
    fn device(&self, _id: &str) -> Option<(Department, u32)> {
        None
    }
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
    }
}

/// The paths of the `.route(` calls in a router's source.
fn routes_in_source(source: &str) -> BTreeSet<String> {
    source
        .split(".route(")
        .skip(1)
        .filter_map(|rest| {
            let start = rest.find('"')?;
            // Only a string literal right after `.route(`.
            if !rest[..start].trim().is_empty() {
                return None;
            }
            let rest = &rest[start + 1..];
            Some(rest[..rest.find('"')?].to_owned())
        })
        .collect()
}

fn document() -> Value {
    api_description().document("t", "1", "d")
}

#[test]
fn every_route_of_the_routers_is_described() {
    let mut served = routes_in_source(include_str!("../src/api.rs"));
    served.extend(routes_in_source(include_str!("../src/webhooks/api.rs")));
    assert!(served.len() >= 14, "{served:?}");
    let described: BTreeSet<String> = api_description()
        .routes()
        .map(|(_, path)| path.to_owned())
        .collect();
    assert_eq!(served, described);
}

#[test]
fn operations_are_named_tagged_and_their_refs_resolve() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = BTreeSet::new();
    let paths = doc["paths"].as_object().unwrap();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            assert!(
                id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && id.chars().all(|c| c.is_ascii_alphanumeric()),
                "{id} is not camelCase"
            );
            let tag = op["tags"][0].as_str().unwrap();
            assert!(TAGS.contains(&tag), "{method} {path}: tag {tag}");
            assert!(!op["summary"].as_str().unwrap().is_empty());
            // Every `{name}` of the path is a path parameter, and nothing else is.
            let in_path: BTreeSet<&str> = path
                .split('{')
                .skip(1)
                .filter_map(|s| s.split_once('}').map(|(name, _)| name))
                .collect();
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let path_params: BTreeSet<&str> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(in_path, path_params, "{method} {path}");
            for p in &params {
                assert!(
                    !p["description"].as_str().unwrap_or_default().is_empty(),
                    "{method} {path}: parameter {} has no description",
                    p["name"]
                );
                let schema = p["schema"].to_string();
                assert!(
                    !schema.contains("\"null\""),
                    "{method} {path}: parameter {} may be null: {schema}",
                    p["name"]
                );
            }
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path}: no success answer"
            );
        }
    }
    assert_eq!(ids.len(), api_description().routes().count());

    assert!(!openapi::refs(&doc).is_empty());
    assert_eq!(openapi::dangling_refs(&doc), Vec::<&str>::new());
}

/// A value for each path parameter: one no resource has.
fn concrete(path: &str, op: &Value) -> String {
    let mut concrete = path.to_owned();
    for p in op["parameters"].as_array().into_iter().flatten() {
        if p["in"] != "path" {
            continue;
        }
        let value = if p["schema"]["type"] == "integer" {
            "424242"
        } else {
            "no-such-thing"
        };
        concrete = concrete.replace(&format!("{{{}}}", p["name"].as_str().unwrap()), value);
    }
    concrete
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_described_is_served_and_answers_a_documented_status() {
    let dir = TempDir::new("openapi");
    let config = AlertsConfig {
        state_dir: dir.0.clone(),
        tick_ms: 50,
        webhooks: test_config(),
        ..AlertsConfig::default()
    };
    let (alerts, _task, mut events): (Alerts, _, _) = Alerts::start(
        &config,
        Arc::new(NoDevices),
        Arc::new(MemoryAttemptLog::new(100)),
        &prometheus::Registry::new(),
    )
    .await
    .unwrap();
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let app =
        ioc_alerts::api::router(alerts.clone()).fallback(|| async { (NO_ROUTE, "no such route") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    // The router itself answers `NO_ROUTE` for an unknown path.
    let unknown = client
        .get(format!("{base}/api/v1/no-such-route"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), NO_ROUTE);

    let doc = document();
    let mut described: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (method, path) in api_description().routes() {
        described
            .entry(method_name(method))
            .or_default()
            .insert(path.to_owned());
    }
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        // Any operation of the path gives the parameters' types.
        let any_op = item.as_object().unwrap().values().next().unwrap();
        let url = format!("{base}{}", concrete(path, any_op));
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            let mut request = client.request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                &url,
            );
            let op = &item[method.to_lowercase()];
            if op["requestBody"].is_object() {
                request = request.json(&serde_json::json!({}));
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            let is_described = described.get(method).is_some_and(|p| p.contains(path));
            assert_eq!(
                is_described,
                op.is_object(),
                "{method} {path}: routes() and the document differ"
            );
            if !is_described {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is served but not described: {status} {body}"
                );
                continue;
            }
            assert!(
                status != NO_ROUTE && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is described but not served: {status} {body}"
            );
            let documented = &op["responses"][status.as_str()];
            assert!(
                documented.is_object(),
                "{method} {url}: {status} is not documented: {body}"
            );
            if documented["content"]["application/json"].is_object() {
                let value: Value = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("{method} {url}: {e}: {body}"));
                assert!(value.is_object(), "{method} {url}: {body}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, api_description().routes().count());
    server.abort();
    drop(alerts);
}
