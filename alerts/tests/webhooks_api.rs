//! The subscriptions and deliveries REST routes, served for real on 127.0.0.1.

#[path = "webhooks_support.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use ioc_alerts::webhooks::{
    router, Dispatcher, MemoryAttemptLog, SubscriptionFilter, SubscriptionSpec, WebhookConfig,
};
use ioc_schemas::Department;
use serde_json::{json, Value};
use support::*;

struct Api {
    base: String,
    client: reqwest::Client,
    dispatcher: Dispatcher,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(dir: &TempDir, config: WebhookConfig) -> Api {
    let dispatcher = Dispatcher::open(&dir.outbox(), config, Arc::new(MemoryAttemptLog::new(100)))
        .await
        .unwrap();
    let app: axum::Router = router(dispatcher.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Api {
        base: format!("http://{addr}"),
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
        dispatcher,
        server,
    }
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, url);
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

fn assert_error(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "{answer:?}");
    assert_eq!(answer.1["error"]["code"], code, "{answer:?}");
    assert!(answer.1["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn subscriptions_are_managed_and_secrets_shown_once() {
    let dir = TempDir::new("api-subs");
    let receiver = Receiver::start().await;
    let config = WebhookConfig {
        subscriptions: vec![SubscriptionSpec {
            id: "from-config".into(),
            department: Department::Police,
            url: receiver.url("/config"),
            secret: None,
            filter: SubscriptionFilter::default(),
            enabled: true,
        }],
        ..test_config()
    };
    let api = serve(&dir, config).await;

    let body = json!({
        "id": "tnmt-air",
        "department": "environment",
        "url": receiver.url("/air"),
        "filter": {"categories": ["air_quality"], "min_severity": "major", "districts": ["hai_chau", "son_tra"]}
    });
    let (status, created) = api
        .call("POST", "/api/v1/subscriptions", Some(body.clone()))
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created["subscription"]["id"], "tnmt-air");
    assert_eq!(created["subscription"]["source"], "api");
    assert!(secret.starts_with(
        created["subscription"]["secret_prefix"]
            .as_str()
            .unwrap()
            .trim_end_matches('…')
    ));

    let (status, got) = api
        .call("GET", "/api/v1/subscriptions/tnmt-air", None)
        .await;
    assert_eq!(status, 200);
    assert!(
        !got.to_string().contains(&secret[6..]),
        "secret shown: {got}"
    );
    assert_eq!(got["filter"]["min_severity"], "major");

    assert_error(
        &api.call("POST", "/api/v1/subscriptions", Some(body)).await,
        409,
        "conflict",
    );

    let (status, list) = api.call("GET", "/api/v1/subscriptions", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["count"], 2);
    let (_, list) = api
        .call("GET", "/api/v1/subscriptions?department=police", None)
        .await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["subscriptions"][0]["id"], "from-config");
    assert_eq!(list["subscriptions"][0]["source"], "config");
    assert_error(
        &api.call("GET", "/api/v1/subscriptions?department=army", None)
            .await,
        400,
        "invalid_query",
    );
    assert_error(
        &api.call("GET", "/api/v1/subscriptions?x=1", None).await,
        400,
        "invalid_query",
    );

    // Replace: disabled, no secret change.
    let (status, put) = api
        .call(
            "PUT",
            "/api/v1/subscriptions/tnmt-air",
            Some(json!({"department": "environment", "url": receiver.url("/air2"), "enabled": false})),
        )
        .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["subscription"]["enabled"], false);
    assert!(put.get("secret").is_none());
    // Create through PUT.
    let (status, put) = api
        .call(
            "PUT",
            "/api/v1/subscriptions/xd-bridges",
            Some(json!({"department": "construction", "url": receiver.url("/b"), "filter": {"categories": ["structure"]}})),
        )
        .await;
    assert_eq!(status, 201, "{put}");
    assert!(put["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_error(
        &api.call(
            "PUT",
            "/api/v1/subscriptions/xd-bridges",
            Some(json!({"id": "other", "department": "construction", "url": receiver.url("/b")})),
        )
        .await,
        400,
        "invalid_subscription",
    );

    // Rotation: a new secret, once; the old one signs until the grace period ends.
    let (status, rotated) = api
        .call("POST", "/api/v1/subscriptions/tnmt-air/rotate-secret", None)
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap();
    assert!(new.starts_with("whsec_") && new != secret);
    assert!(rotated["previous_secret_expires_ms"].as_u64().unwrap() > now_ms());
    assert_error(
        &api.call("POST", "/api/v1/subscriptions/nope/rotate-secret", None)
            .await,
        404,
        "not_found",
    );

    // Config subscriptions are the config's; their secret can still be rotated.
    assert_error(
        &api.call(
            "PUT",
            "/api/v1/subscriptions/from-config",
            Some(json!({"department": "police", "url": receiver.url("/c")})),
        )
        .await,
        409,
        "conflict",
    );
    assert_error(
        &api.call("DELETE", "/api/v1/subscriptions/from-config", None)
            .await,
        409,
        "conflict",
    );
    assert_eq!(
        api.call(
            "POST",
            "/api/v1/subscriptions/from-config/rotate-secret",
            None
        )
        .await
        .0,
        200
    );

    // Delete.
    assert_eq!(
        api.call("DELETE", "/api/v1/subscriptions/xd-bridges", None)
            .await
            .0,
        204
    );
    assert_error(
        &api.call("GET", "/api/v1/subscriptions/xd-bridges", None)
            .await,
        404,
        "not_found",
    );
    assert_error(
        &api.call("DELETE", "/api/v1/subscriptions/xd-bridges", None)
            .await,
        404,
        "not_found",
    );
    assert_error(
        &api.call("PATCH", "/api/v1/subscriptions/tnmt-air", None)
            .await,
        405,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn requests_are_validated() {
    let dir = TempDir::new("api-validate");
    let api = serve(&dir, test_config()).await;
    let post = |body: Value| api.call("POST", "/api/v1/subscriptions", Some(body));
    let ok_url = "http://127.0.0.1:9/hook";

    let bad_scheme = post(json!({"department": "police", "url": "ftp://x.example/hook"})).await;
    assert_error(&bad_scheme, 400, "invalid_subscription");
    assert_eq!(bad_scheme.1["error"]["field"], "url");
    assert_error(
        &post(json!({"department": "police", "url": "not a url"})).await,
        400,
        "invalid_subscription",
    );
    assert_error(
        &post(
            json!({"department": "police", "url": ok_url, "filter": {"categories": ["weather"]}}),
        )
        .await,
        400,
        "invalid_subscription",
    );
    assert_error(
        &post(
            json!({"department": "police", "url": ok_url, "filter": {"min_severity": "extreme"}}),
        )
        .await,
        400,
        "invalid_subscription",
    );
    assert_error(
        &post(json!({"department": "police", "url": ok_url, "filter": {"districts": ["hue"]}}))
            .await,
        400,
        "invalid_subscription",
    );
    let bad_rule =
        post(json!({"department": "police", "url": ok_url, "filter": {"rules": ["a*b"]}})).await;
    assert_error(&bad_rule, 400, "invalid_subscription");
    assert_eq!(bad_rule.1["error"]["field"], "filter.rules");
    assert_error(
        &post(json!({"department": "police", "url": ok_url, "colour": "red"})).await,
        400,
        "invalid_subscription",
    );
    assert_error(
        &post(json!({"department": "army", "url": ok_url})).await,
        400,
        "invalid_subscription",
    );
    assert_error(
        &post(json!({"id": "Bad Id", "department": "police", "url": ok_url})).await,
        400,
        "invalid_subscription",
    );
    let bad_secret =
        post(json!({"department": "police", "url": ok_url, "secret": "hunter2"})).await;
    assert_error(&bad_secret, 400, "invalid_subscription");
    assert_eq!(bad_secret.1["error"]["field"], "secret");
    // A generated id.
    let (status, made) = post(json!({"department": "police", "url": ok_url})).await;
    assert_eq!(status, 201);
    assert!(made["subscription"]["id"]
        .as_str()
        .unwrap()
        .starts_with("sub_"));

    // Not JSON.
    let resp = api
        .client
        .post(format!("{}/api/v1/subscriptions", api.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let resp = api
        .client
        .post(format!("{}/api/v1/subscriptions", api.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    assert_error(
        &api.call("GET", "/api/v1/deliveries?state=lost", None).await,
        400,
        "invalid_query",
    );
    assert_error(
        &api.call("GET", "/api/v1/deliveries?limit=0", None).await,
        400,
        "invalid_query",
    );
    assert_error(
        &api.call("GET", "/api/v1/deliveries?limit=5000", None).await,
        400,
        "invalid_query",
    );
    assert_error(
        &api.call("POST", "/api/v1/deliveries/abc/redeliver", None)
            .await,
        400,
        "invalid_path",
    );
    assert_error(
        &api.call("POST", "/api/v1/deliveries/42/redeliver", None)
            .await,
        404,
        "not_found",
    );
    assert_error(
        &api.call("GET", "/api/v1/deliveries/42", None).await,
        404,
        "not_found",
    );

    let (status, schema) = api
        .call("GET", "/api/v1/webhooks/payload-schema", None)
        .await;
    assert_eq!(status, 200);
    assert!(schema["properties"]["data"].is_object(), "{schema}");
}

#[tokio::test]
async fn private_urls_are_refused_when_not_allowed() {
    let dir = TempDir::new("api-ssrf");
    let config = WebhookConfig {
        allow_private_urls: false,
        ..test_config()
    };
    let api = serve(&dir, config).await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.7/hook",
        "http://172.20.1.1/hook",
        "http://192.168.1.20/hook",
        "http://0.0.0.0/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ] {
        let answer = api
            .call(
                "POST",
                "/api/v1/subscriptions",
                Some(json!({"department": "police", "url": url})),
            )
            .await;
        assert_error(&answer, 400, "url_not_allowed");
        assert_eq!(answer.1["error"]["field"], "url", "{url}");
    }
    assert_eq!(
        api.call("GET", "/api/v1/subscriptions", None).await.1["count"],
        0
    );

    // A config subscription to a private address is refused at open, too.
    let dir2 = TempDir::new("api-ssrf-config");
    let refused = Dispatcher::open(
        &dir2.outbox(),
        WebhookConfig {
            allow_private_urls: false,
            subscriptions: vec![SubscriptionSpec {
                id: "local".into(),
                department: Department::Police,
                url: "http://127.0.0.1:9/hook".into(),
                secret: None,
                filter: SubscriptionFilter::default(),
                enabled: true,
            }],
            ..test_config()
        },
        Arc::new(MemoryAttemptLog::new(10)),
    )
    .await
    .unwrap_err();
    assert!(refused.to_string().contains("url not allowed"), "{refused}");
}

#[tokio::test]
async fn dead_deliveries_are_listed_and_redelivered_through_the_api() {
    let dir = TempDir::new("api-deliveries");
    let receiver = Receiver::start().await;
    receiver.set_mode(FAIL);
    let config = WebhookConfig {
        max_attempts: 2,
        backoff_initial_ms: 10,
        backoff_max_ms: 20,
        ..test_config()
    };
    let api = serve(&dir, config).await;
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/subscriptions",
            Some(json!({"id": "pctt", "department": "disaster_prevention", "url": receiver.url("/h")})),
        )
        .await;
    assert_eq!(status, 201);
    let e = flood("flood_warning:gauge-3:1:1");
    assert_eq!(api.dispatcher.notify(&e).await.unwrap(), 1);

    let mut dead = Value::Null;
    for _ in 0..300 {
        dead = api
            .call(
                "GET",
                "/api/v1/deliveries?state=dead&subscription=pctt",
                None,
            )
            .await
            .1;
        if dead["count"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(dead["count"], 1, "{dead}");
    let d = &dead["deliveries"][0];
    assert_eq!(d["attempts"], 2);
    assert_eq!(d["last_status"], 500);
    let id = d["id"].as_u64().unwrap();
    let (status, detail) = api
        .call("GET", &format!("/api/v1/deliveries/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(detail["payload"]["type"], "alert.opened");
    assert_eq!(detail["payload"]["data"]["event_id"], e.event_id.as_str());

    receiver.set_mode(OK);
    let (status, again) = api
        .call("POST", &format!("/api/v1/deliveries/{id}/redeliver"), None)
        .await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["delivery"]["state"], "pending");
    assert!(wait_until(Duration::from_secs(5), || receiver.accepted().len() == 1).await);
    let mut delivered = Value::Null;
    for _ in 0..300 {
        delivered = api
            .call("GET", "/api/v1/deliveries?state=delivered", None)
            .await
            .1;
        if delivered["count"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(delivered["deliveries"][0]["webhook_id"], d["webhook_id"]);
    let ids: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.webhook_id.clone())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids
        .iter()
        .all(|i| Value::String(i.clone()) == d["webhook_id"]));
    let other = api
        .call("GET", "/api/v1/deliveries?department=police", None)
        .await
        .1;
    assert_eq!(other["count"], 0);
    let mine = api
        .call(
            "GET",
            "/api/v1/deliveries?department=disaster_prevention",
            None,
        )
        .await
        .1;
    assert_eq!(mine["count"], 1);
    // Paging: limit 1 gives a next page cursor.
    let page = api.call("GET", "/api/v1/deliveries?limit=1", None).await.1;
    assert_eq!(page["count"], 1);
    assert_eq!(page["next_before"], id);
}
