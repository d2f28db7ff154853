//! Shared by the `webhooks_*` tests (included with `#[path]`): a real HTTP receiver (axum on
//! 127.0.0.1), an independent Standard Webhooks signature check, alert events, temp dirs.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use ioc_alerts::webhooks::WebhookConfig;
use ioc_alerts::{Alert, AlertEvent, AlertState, Category, Severity, Transition};
use ioc_schemas::{Department, District};
use tokio::task::JoinHandle;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A directory of its own for one test, removed at the end.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "ioc-webhooks-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn outbox(&self) -> PathBuf {
        self.0.join("outbox.redb")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Small backoffs, loopback allowed.
pub fn test_config() -> WebhookConfig {
    WebhookConfig {
        allow_private_urls: true,
        max_attempts: 8,
        backoff_initial_ms: 20,
        backoff_max_ms: 200,
        request_timeout_ms: 2_000,
        ..WebhookConfig::default()
    }
}

/// Verifies a `webhook-signature` header with one secret, written from the Standard Webhooks
/// text without the crate's code: HMAC-SHA256 keyed with the base64-decoded part of
/// `whsec_...`, over `{id}.{timestamp}.{body}`, base64, any of the space-separated `v1,`
/// signatures.
pub fn verify(secret: &str, id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    header.split(' ').any(|sig| sig == expected)
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub webhook_id: String,
    pub timestamp: String,
    pub signature: String,
    pub content_type: String,
    pub body: Vec<u8>,
    pub at: Instant,
    pub at_ms: u64,
    /// The status it answered (0 when it never answered).
    pub answered: u16,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn event_id(&self) -> String {
        self.json()["data"]["event_id"].as_str().unwrap().to_owned()
    }

    pub fn verifies_with(&self, secret: &str) -> bool {
        verify(
            secret,
            &self.webhook_id,
            &self.timestamp,
            &self.body,
            &self.signature,
        )
    }

    /// The timestamp is within 30 s of when the request arrived.
    pub fn timestamp_is_recent(&self) -> bool {
        let ts: u64 = self.timestamp.parse().unwrap();
        (ts as i64 - (self.at_ms / 1000) as i64).abs() <= 30
    }
}

/// How the receiver answers.
pub const OK: u8 = 0;
/// Always 500.
pub const FAIL: u8 = 1;
/// Accepts the request and never answers.
pub const HANG: u8 = 2;

#[derive(Debug, Default)]
struct ReceiverState {
    mode: AtomicU8,
    fail_first: AtomicU32,
    count: AtomicU32,
    received: Mutex<Vec<Received>>,
}

/// A real webhook receiver: axum on 127.0.0.1.
#[derive(Debug)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
    server: JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::start_on(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await
    }

    pub async fn start_on(listener: tokio::net::TcpListener) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ReceiverState::default());
        let app = Router::new().fallback(hook).with_state(Arc::clone(&state));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            addr,
            state,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_mode(&self, mode: u8) {
        self.state.mode.store(mode, Ordering::SeqCst);
    }

    /// Answers 500 to the first `n` requests.
    pub fn fail_first(&self, n: u32) {
        self.state.fail_first.store(n, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Requests answered 2xx.
    pub fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }

    pub fn count(&self) -> u32 {
        self.state.count.load(Ordering::SeqCst)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn hook(
    State(state): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let n = state.count.fetch_add(1, Ordering::SeqCst) + 1;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mode = state.mode.load(Ordering::SeqCst);
    let status = if mode == FAIL || n <= state.fail_first.load(Ordering::SeqCst) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let answered = if mode == HANG { 0 } else { status.as_u16() };
    state.received.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        webhook_id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        content_type: header("content-type"),
        body: body.to_vec(),
        at: Instant::now(),
        at_ms: now_ms(),
        answered,
    });
    if mode == HANG {
        std::future::pending::<()>().await;
    }
    status
}

/// Polls `done` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An alert event to notify.
pub fn event(
    event_id: &str,
    rule: &str,
    category: Category,
    severity: Severity,
    district: Option<District>,
    department: Department,
) -> AlertEvent {
    let now = now_ms();
    AlertEvent {
        event_id: event_id.to_owned(),
        alert: Alert {
            id: format!("{rule}:dev-1:{now}"),
            rule_id: rule.to_owned(),
            entity_id: "dev-1".to_owned(),
            district,
            department,
            category,
            severity,
            state: AlertState::Active,
            message: "Mực nước sông Hàn vượt báo động 2".to_owned(),
            value: Some(2.4),
            opened_ms: now,
            breach_event_ms: now,
            updated_ms: now,
            breaches: 1,
            escalations: 0,
            acknowledged: None,
            resolved: None,
            comments: Vec::new(),
            suppressed: false,
        },
        transition: Transition::Opened,
        at_ms: now,
        actor: "system".to_owned(),
        notify: true,
    }
}

/// A flood alert in Hải Châu.
pub fn flood(event_id: &str) -> AlertEvent {
    event(
        event_id,
        "flood_warning",
        Category::Flood,
        Severity::Major,
        Some(District::HaiChau),
        Department::DisasterPrevention,
    )
}
