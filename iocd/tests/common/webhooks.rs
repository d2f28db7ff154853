//! A department's webhook receiver for the tests, and Standard Webhooks signatures checked
//! independently of the crate under test.

use axum::http::HeaderMap;
use base64::Engine as _;
use hmac::{KeyInit, Mac};

/// Verifies a Standard Webhooks signature independently of the crate under test.
pub fn signature_ok(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let recent = timestamp
        .parse::<u64>()
        .is_ok_and(|t| t.abs_diff(now) < 300);
    recent
        && header("webhook-signature")
            .split(' ')
            .any(|s| s == expected)
}

/// Serves `app` on a free loopback port; returns the URL of its `/hooks/construction`.
pub async fn serve_construction_hooks(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/hooks/construction",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}
