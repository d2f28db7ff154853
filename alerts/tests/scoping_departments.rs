//! Department scoping of the alerts' REST API, served for real on 127.0.0.1: a department
//! token (a `Principal` in the request's extensions, put there here by a test-only layer from
//! an `x-test-department` header) sees and manages only its department's alerts,
//! subscriptions and deliveries; a request without a principal sees everything.

#[path = "webhooks_support.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use ioc_alerts::webhooks::{MemoryAttemptLog, SubscriptionFilter, SubscriptionSpec};
use ioc_alerts::{Alerts, AlertsConfig, DeviceLookup};
use ioc_schemas::{Body, Department, District, EventTime, Principal, Reading, Role, SensorBody};
use serde_json::{json, Value};
use support::*;

/// `tr-*` devices are Sở GTVT's, `env-*` Sở TN&MT's.
struct Owners;

impl DeviceLookup for Owners {
    fn device(&self, id: &str) -> Option<(Department, u32)> {
        if id.starts_with("tr-") {
            Some((Department::Transport, 10))
        } else if id.starts_with("env-") {
            Some((Department::Environment, 10))
        } else {
            None
        }
    }
}

/// Stands in for the server's authentication: `x-test-department: <slug>` makes the request
/// a department token's.
async fn test_principal(mut request: Request, next: Next) -> Response {
    let department = request
        .headers()
        .get("x-test-department")
        .and_then(|v| v.to_str().ok())
        .and_then(Department::from_slug);
    if let Some(department) = department {
        request.extensions_mut().insert(Principal {
            name: format!("{}-token", department.slug()),
            role: Role::Department,
            department: Some(department),
        });
    }
    next.run(request).await
}

struct Api {
    base: String,
    client: reqwest::Client,
    alerts: Alerts,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Api {
    async fn call(
        &self,
        department: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(d) = department {
            req = req.header("x-test-department", d);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }
}

fn subscription(id: &str, department: Department, receiver: &Receiver) -> SubscriptionSpec {
    SubscriptionSpec {
        id: id.into(),
        department,
        url: receiver.url(&format!("/{id}")),
        secret: None,
        filter: SubscriptionFilter::default(),
        enabled: true,
    }
}

async fn serve(dir: &TempDir, receiver: &Receiver) -> Api {
    let mut config = AlertsConfig {
        state_dir: dir.0.clone(),
        tick_ms: 50,
        webhooks: test_config(),
        ..AlertsConfig::default()
    };
    config.webhooks.subscriptions = vec![
        subscription("gtvt", Department::Transport, receiver),
        subscription("tnmt", Department::Environment, receiver),
    ];
    let (alerts, _task, mut events) = Alerts::start(
        &config,
        Arc::new(Owners),
        Arc::new(MemoryAttemptLog::new(1_000)),
        &prometheus::Registry::new(),
    )
    .await
    .unwrap();
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let app = ioc_alerts::api::router(alerts.clone()).layer(middleware::from_fn(test_principal));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Api {
        base: format!("http://{addr}"),
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
        alerts,
        server,
    }
}

fn wind(device: &str, value: f64) -> Reading {
    Reading {
        message_id: format!("{device}-1"),
        device_id: device.into(),
        event_time: EventTime(now_ms()),
        body: Body::Sensor(SensorBody {
            metric: "wind_speed_ms".into(),
            value,
            unit: "m/s".into(),
        }),
    }
}

fn departments(list: &Value, key: &str) -> Vec<String> {
    let mut found: Vec<String> = list[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["department"].as_str().unwrap().to_owned())
        .collect();
    found.sort();
    found.dedup();
    found
}

fn id_of(list: &Value, key: &str, department: &str) -> Value {
    list[key]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["department"] == department)
        .unwrap_or_else(|| panic!("no {department} in {list}"))["id"]
        .clone()
}

fn assert_error(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "{answer:?}");
    assert_eq!(answer.1["error"]["code"], code, "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_department_token_sees_and_manages_only_its_own() {
    let dir = TempDir::new("scoping");
    let receiver = Receiver::start().await;
    let api = serve(&dir, &receiver).await;
    const TR: Option<&str> = Some("transport");

    // A rule owned by the device's department (written without a principal: allowed), and a
    // department token may read rules but not change them.
    let rule = json!({
        "id": "wind_owner",
        "name": "Wind at the owner's device",
        "severity": "major",
        "category": "structure",
        "department": "owner",
        "source": {"reading": "wind_speed_ms", "kind": "sensor"},
        "condition": {"type": "threshold", "above": 25, "clear": 20},
        "message": "wind {value} at {entity}"
    });
    let created = api
        .call(None, "POST", "/api/v1/rules", Some(rule.clone()))
        .await;
    assert_eq!(created.0, 201, "{created:?}");
    assert_eq!(api.call(TR, "GET", "/api/v1/rules", None).await.0, 200);
    assert_eq!(
        api.call(TR, "GET", "/api/v1/rules/wind_owner", None)
            .await
            .0,
        200
    );
    let mut other = rule.clone();
    other["id"] = json!("wind_other");
    assert_error(
        &api.call(TR, "POST", "/api/v1/rules", Some(other)).await,
        403,
        "forbidden",
    );
    assert_error(
        &api.call(TR, "PUT", "/api/v1/rules/wind_owner", Some(rule))
            .await,
        403,
        "forbidden",
    );
    assert_error(
        &api.call(TR, "DELETE", "/api/v1/rules/wind_owner", None)
            .await,
        403,
        "forbidden",
    );

    // Wind at a transport and an environment device: an alert for each (and two for
    // construction, from the default bridge rule).
    let feeder = api.alerts.clone();
    tokio::task::spawn_blocking(move || {
        feeder.observe_reading(&wind("tr-1", 31.0), District::HaiChau);
        feeder.observe_reading(&wind("env-1", 31.0), District::SonTra);
    })
    .await
    .unwrap();
    let all = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let (_, list) = api.call(None, "GET", "/api/v1/alerts", None).await;
            if departments(&list, "alerts").len() >= 3 {
                break list;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("alerts of three departments");
    assert_eq!(
        departments(&all, "alerts"),
        ["construction", "environment", "transport"]
    );
    let env_alert = id_of(&all, "alerts", "environment");
    let env_alert = env_alert.as_str().unwrap();
    let tr_alert = id_of(&all, "alerts", "transport");
    let tr_alert = tr_alert.as_str().unwrap();

    // Alerts.
    let (status, mine) = api.call(TR, "GET", "/api/v1/alerts", None).await;
    assert_eq!(status, 200);
    assert_eq!(departments(&mine, "alerts"), ["transport"]);
    let (status, mine) = api
        .call(TR, "GET", "/api/v1/alerts?department=transport", None)
        .await;
    assert_eq!(
        (status, departments(&mine, "alerts")),
        (200, vec!["transport".to_owned()])
    );
    assert_error(
        &api.call(TR, "GET", "/api/v1/alerts?department=environment", None)
            .await,
        403,
        "forbidden",
    );
    assert_error(
        &api.call(TR, "GET", &format!("/api/v1/alerts/{env_alert}"), None)
            .await,
        404,
        "not_found",
    );
    let actor = json!({"actor": "gtvt-duty", "text": "on it"});
    for action in ["acknowledge", "resolve", "comments"] {
        let path = format!("/api/v1/alerts/{env_alert}/{action}");
        assert_error(
            &api.call(TR, "POST", &path, Some(actor.clone())).await,
            404,
            "not_found",
        );
    }
    let (_, env) = api
        .call(None, "GET", &format!("/api/v1/alerts/{env_alert}"), None)
        .await;
    assert_eq!(env["state"], "active", "untouched: {env}");
    assert!(
        env["comments"].as_array().is_none_or(|c| c.is_empty()),
        "{env}"
    );
    let (status, got) = api
        .call(TR, "GET", &format!("/api/v1/alerts/{tr_alert}"), None)
        .await;
    assert_eq!(
        (status, got["department"].clone()),
        (200, json!("transport"))
    );
    let path = format!("/api/v1/alerts/{tr_alert}/comments");
    assert_eq!(
        api.call(TR, "POST", &path, Some(actor.clone())).await.0,
        201
    );
    let path = format!("/api/v1/alerts/{tr_alert}/acknowledge");
    let (status, acked) = api.call(TR, "POST", &path, Some(actor.clone())).await;
    assert_eq!(status, 200);
    // The token's name is recorded, whatever actor the body claims.
    assert_eq!(
        acked["alert"]["acknowledged"][0], "transport-token",
        "{acked}"
    );

    // Subscriptions.
    let (status, subs) = api.call(TR, "GET", "/api/v1/subscriptions", None).await;
    assert_eq!(status, 200);
    assert_eq!(departments(&subs, "subscriptions"), ["transport"]);
    assert_error(
        &api.call(
            TR,
            "GET",
            "/api/v1/subscriptions?department=environment",
            None,
        )
        .await,
        403,
        "forbidden",
    );
    let (_, subs) = api.call(None, "GET", "/api/v1/subscriptions", None).await;
    assert_eq!(
        departments(&subs, "subscriptions"),
        ["environment", "transport"]
    );
    assert_error(
        &api.call(TR, "GET", "/api/v1/subscriptions/tnmt", None)
            .await,
        404,
        "not_found",
    );
    assert_error(
        &api.call(TR, "DELETE", "/api/v1/subscriptions/tnmt", None)
            .await,
        404,
        "not_found",
    );
    assert_error(
        &api.call(TR, "POST", "/api/v1/subscriptions/tnmt/rotate-secret", None)
            .await,
        404,
        "not_found",
    );
    let env_body = json!({"department": "environment", "url": receiver.url("/x")});
    assert_error(
        &api.call(
            TR,
            "PUT",
            "/api/v1/subscriptions/tnmt",
            Some(env_body.clone()),
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &api.call(TR, "POST", "/api/v1/subscriptions", Some(env_body.clone()))
            .await,
        403,
        "forbidden",
    );
    assert_error(
        &api.call(TR, "PUT", "/api/v1/subscriptions/new-env", Some(env_body))
            .await,
        403,
        "forbidden",
    );
    assert_eq!(
        api.call(None, "GET", "/api/v1/subscriptions/tnmt", None)
            .await
            .0,
        200,
        "still there"
    );
    let own = json!({"id": "gtvt-2", "department": "transport", "url": receiver.url("/gtvt-2")});
    let (status, made) = api
        .call(TR, "POST", "/api/v1/subscriptions", Some(own))
        .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(
        api.call(TR, "GET", "/api/v1/subscriptions/gtvt-2", None)
            .await
            .0,
        200
    );
    assert_eq!(
        api.call(
            TR,
            "POST",
            "/api/v1/subscriptions/gtvt-2/rotate-secret",
            None
        )
        .await
        .0,
        200
    );

    // Deliveries.
    let all = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let (_, list) = api.call(None, "GET", "/api/v1/deliveries", None).await;
            if departments(&list, "deliveries").len() >= 2 {
                break list;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("deliveries of both departments");
    let env_delivery = id_of(&all, "deliveries", "environment");
    let tr_delivery = id_of(&all, "deliveries", "transport");
    let (status, mine) = api.call(TR, "GET", "/api/v1/deliveries", None).await;
    assert_eq!(status, 200);
    assert_eq!(departments(&mine, "deliveries"), ["transport"]);
    assert_error(
        &api.call(TR, "GET", "/api/v1/deliveries?department=environment", None)
            .await,
        403,
        "forbidden",
    );
    let (_, none) = api
        .call(TR, "GET", "/api/v1/deliveries?subscription=tnmt", None)
        .await;
    assert_eq!(none["count"], 0, "{none}");
    assert_error(
        &api.call(
            TR,
            "GET",
            &format!("/api/v1/deliveries/{env_delivery}"),
            None,
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &api.call(
            TR,
            "POST",
            &format!("/api/v1/deliveries/{env_delivery}/redeliver"),
            None,
        )
        .await,
        404,
        "not_found",
    );
    let (status, got) = api
        .call(
            TR,
            "GET",
            &format!("/api/v1/deliveries/{tr_delivery}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["delivery"]["department"], "transport");
    assert_eq!(
        api.call(
            None,
            "GET",
            &format!("/api/v1/deliveries/{env_delivery}"),
            None
        )
        .await
        .0,
        200
    );

    // Deleting its own subscription works.
    assert_eq!(
        api.call(TR, "DELETE", "/api/v1/subscriptions/gtvt-2", None)
            .await
            .0,
        204
    );
}
