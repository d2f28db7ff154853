//! What the README promises about the API and `/metrics`, checked against a real pipeline
//! (`iocd::pipeline::run` with ClickHouse, its full router: devices, KPI history, alerts,
//! subscriptions, deliveries):
//!
//! - every metric the README names is on `/metrics` from start-up, before any message;
//! - every bad query parameter of every JSON route is `400 invalid_query` in the README's
//!   envelope, with a lowercase message and `field` naming the parameter; an unknown parameter
//!   lists the known ones once; `limit` over its documented maximum is refused.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Names the README mentions that are not on `/metrics` at start-up, each for a reason that
/// holds by design: their series are per item, and there is no item yet.
const PER_ITEM: &[(&str, &str)] = &[
    (
        "ioc_ingest_kafka_lag_messages",
        "one series per assigned Kafka partition; this pipeline reads no Kafka",
    ),
    (
        "ioc_ingest_kafka_partition_caught_up",
        "one series per assigned Kafka partition",
    ),
    (
        "ioc_ingest_kafka_partition_paused",
        "one series per assigned Kafka partition",
    ),
    (
        "ioc_ingest_kafka_paused_seconds_total",
        "one series per assigned Kafka partition",
    ),
    (
        "ioc_dataflow_source_watermark_ms",
        "one series per source (a Kafka partition, or mqtt once it has delivered a reading): \
         a 0 watermark before then would be a false value",
    ),
];

/// Names the README documents for another configuration than this test's.
const OTHER_CONFIGURATION: &[(&str, &str)] = &[(
    "ioc_pipeline_unstored_total",
    "the README says \"demo only\": records acknowledged without a store, counted only by a \
     pipeline without ClickHouse; this one stores",
)];

/// The metric names README.md mentions: `ioc_<letter>...`, not a Rust path (`ioc_schemas::`),
/// a log target (`RUST_LOG=ioc_ingest=debug`), a pattern (`ioc_store_spool_*`) nor a token
/// (`ioc_3q2...`, `ioc_$(...)`).
fn readme_metric_names() -> BTreeSet<String> {
    // The README and the documentation it links to.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
        let path = entry.expect("a docs/ entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            readme.push_str(&std::fs::read_to_string(&path).expect("a docs/ page"));
        }
    }
    let mut names = BTreeSet::new();
    let bytes = readme.as_bytes();
    let mut at = 0;
    while let Some(found) = readme[at..].find("ioc_") {
        let start = at + found;
        at = start + 4;
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        let end = start
            + readme[start..]
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(readme.len() - start);
        let name = &readme[start..end];
        let first = name.as_bytes().get(4).copied().unwrap_or(b'0');
        let rest = &readme[end..];
        if first.is_ascii_lowercase() && !rest.starts_with(['=', '*']) && !rest.starts_with("::") {
            names.insert(name.trim_end_matches('_').to_owned());
        }
    }
    names
}

async fn get_text(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

fn config(run: &str, database: &str) -> iocd::Config {
    let mut config = iocd::Config::default();
    config.alerts.state_dir = common::state_dir(run).into();
    config.mqtt.client_id = format!("iocd-{run}");
    // A topic nothing publishes to: no message arrives during the test.
    config.mqtt.topics = vec![format!("ioc/v1/{run}/#")];
    config.clickhouse = Some(ioc_store::ClickHouseConfig {
        database: database.to_owned(),
        ..Default::default()
    });
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_readme_names_is_exported_from_the_start() {
    let run = common::run_id("readme_metrics");
    let database = format!("ioc_test_{run}");
    let pipeline = common::Pipeline::start(config(&run, &database)).await;
    let text = get_text(pipeline.addr, "/metrics").await;
    assert_eq!(
        common::scrape_metric(pipeline.addr, "ioc_ingest_received_total", "").await,
        0.0,
        "no message arrived"
    );
    let documented = readme_metric_names();
    assert!(
        documented.len() > 60 && documented.contains("ioc_ingest_rejected_total"),
        "the README's metric names: {documented:?}"
    );
    // A family with its type line and a sample (a histogram's samples are its buckets).
    let exported = |name: &str| {
        text.lines()
            .any(|l| l.starts_with(&format!("# TYPE {name} ")))
            && text.lines().any(|l| {
                l.strip_prefix(name).is_some_and(|rest| {
                    rest.starts_with([' ', '{']) || rest.starts_with("_bucket{")
                })
            })
    };
    let excepted: BTreeSet<&str> = PER_ITEM
        .iter()
        .chain(OTHER_CONFIGURATION)
        .map(|(name, _)| *name)
        .collect();
    // Each exception is still needed: named in the README and absent here.
    for name in &excepted {
        assert!(
            documented.contains(*name),
            "{name} is excepted but the README no longer names it: drop the exception"
        );
        assert!(
            !exported(name),
            "{name} is excepted but exported from the start now: drop the exception"
        );
    }
    let missing: Vec<&String> = documented
        .iter()
        .filter(|name| !excepted.contains(name.as_str()) && !exported(name))
        .collect();
    assert!(
        missing.is_empty(),
        "named in README.md but not on /metrics at start-up: {missing:?}"
    );
    // Labelled families show their known label values at 0.
    for (name, labels) in [
        (
            "ioc_ingest_rejected_total",
            &[
                "transport=\"mqtt\"",
                "kind=\"sensor\"",
                "code=\"malformed_json\"",
            ][..],
        ),
        ("ioc_ingest_reconnects_total", &["transport=\"mqtt\""]),
        (
            "ioc_dataflow_late_readings_total",
            &["kind=\"environment\""],
        ),
        ("ioc_dataflow_kpis_total", &["family=\"hydrology\""]),
        (
            "ioc_store_batch_failures_total",
            &["table=\"dead_letters\"", "kind=\"permanent\""],
        ),
        ("ioc_api_ws_kpi_updates_total", &["family=\"air\""]),
        ("ioc_alerts_webhook_attempts_total", &["outcome=\"dead\""]),
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{name}{{"))
                && l.ends_with(" 0")
                && labels.iter().all(|label| l.contains(label))),
            "no {name} {labels:?} at 0 in\n{text}"
        );
    }
    pipeline.stop().await;
    common::drop_database(&database).await;
}

fn assert_bad_query(answer: &(u16, Value), field: &str, what: &str) -> String {
    let (status, body) = answer;
    assert_eq!(*status, 400, "{what}: {body}");
    let error = &body["error"];
    assert_eq!(error["code"], "invalid_query", "{what}: {body}");
    assert_eq!(error["field"], field, "{what}: {body}");
    let message = error["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.starts_with(|c: char| !c.is_uppercase()) && !message.is_empty(),
        "{what}: the message is lowercase: {message}"
    );
    assert!(
        !message.contains("Failed to deserialize"),
        "{what}: {message}"
    );
    message
}

/// The query parameters of each `GET` route in the OpenAPI document, paths filled in.
fn query_routes(doc: &Value) -> Vec<(String, Vec<String>)> {
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(parameters) = item["get"]["parameters"].as_array() else {
            continue;
        };
        let query: Vec<String> = parameters
            .iter()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect();
        // The JSON routes: `/ws` takes `token` but answers only a WebSocket upgrade.
        if !query.is_empty() && path.starts_with("/api/") && !path.contains("{id}") {
            routes.push((path.replace("{family}", "air"), query));
        }
    }
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_parameters_answer_the_readme_envelope() {
    let run = common::run_id("bad_queries");
    let database = format!("ioc_test_{run}");
    let pipeline = common::Pipeline::start(config(&run, &database)).await;
    let addr = pipeline.addr;
    let get = |path: String| async move { common::http(addr, "GET", &path, "").await };

    // An unknown parameter on every JSON route with a query string: named in `field`, and
    // the known ones listed once.
    let doc: Value = serde_json::from_str(&get_text(addr, "/openapi.json").await).unwrap();
    let routes = query_routes(&doc);
    let paths: Vec<&str> = routes.iter().map(|(p, _)| p.as_str()).collect();
    for expected in [
        "/api/v1/alerts",
        "/api/v1/devices",
        "/api/v1/kpis/air",
        "/api/v1/subscriptions",
        "/api/v1/deliveries",
    ] {
        assert!(paths.contains(&expected), "{expected} in {paths:?}");
    }
    for (path, known) in &routes {
        let message = assert_bad_query(
            &get(format!("{path}?bogus=1")).await,
            "bogus",
            &format!("{path}?bogus=1"),
        );
        assert!(message.contains("`bogus`"), "{path}: {message}");
        for name in known {
            assert_eq!(
                message.matches(&format!("`{name}`")).count(),
                1,
                "{path}: `{name}` listed once in: {message}"
            );
        }
    }

    // A bad value names its parameter.
    for (path, field) in [
        ("/api/v1/alerts?state=bogus", "state"),
        ("/api/v1/alerts?open=maybe", "open"),
        ("/api/v1/alerts?min_severity=huge", "min_severity"),
        ("/api/v1/alerts?limit=many", "limit"),
        ("/api/v1/alerts?limit=5&limit=6", "limit"),
        ("/api/v1/kpis/air?window_size_ms=abc", "window_size_ms"),
        ("/api/v1/kpis/air?limit=-1", "limit"),
        ("/api/v1/devices?kind=bus", "kind"),
        ("/api/v1/deliveries?state=lost", "state"),
    ] {
        assert_bad_query(&get(path.to_owned()).await, field, path);
    }

    // `limit` within and beyond the documented maximum, which the OpenAPI document states.
    let alerts_limit = doc["paths"]["/api/v1/alerts"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .expect("alerts take `limit`")
        .to_string();
    assert!(
        alerts_limit.contains("\"maximum\":1000") && alerts_limit.contains("\"minimum\":1"),
        "{alerts_limit}"
    );
    let (status, list) = get("/api/v1/alerts?limit=1000".to_owned()).await;
    assert_eq!(status, 200, "{list}");
    for (path, max) in [
        ("/api/v1/alerts?limit=5000", "1000"),
        ("/api/v1/alerts?limit=1001", "1000"),
        ("/api/v1/alerts?limit=0", "1000"),
        ("/api/v1/kpis/air?limit=10001", "10000"),
        ("/api/v1/deliveries?limit=5000", "1000"),
    ] {
        let message = assert_bad_query(&get(path.to_owned()).await, "limit", path);
        assert!(message.contains(max), "{path}: {message}");
    }
    pipeline.stop().await;
    common::drop_database(&database).await;
}
