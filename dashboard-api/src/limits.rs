//! Limits on what clients may send: a token-bucket rate limit per client address on the API
//! and the WebSocket, and a cap on request bodies. `/healthz` and `/metrics` are not limited,
//! so monitoring keeps working while a client is being throttled.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ioc_schemas::api_error::ApiError as HttpError;
use prometheus::IntCounter;

/// Most client addresses tracked at once; beyond it, addresses whose bucket is full again
/// (idle clients) are forgotten first.
const MAX_CLIENTS: usize = 10_000;

/// One client's bucket: tokens now, and when they were counted.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per client address: `per_s` tokens a second, up to `burst`.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_s: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    /// `ioc_api_rate_limited_total`.
    refused: IntCounter,
}

impl RateLimiter {
    /// A limiter counting refusals in `refused`, or none when `per_s` is 0 (off).
    pub(crate) fn new(per_s: f64, burst: u32, refused: IntCounter) -> Option<RateLimiter> {
        (per_s > 0.0).then(|| RateLimiter {
            per_s,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
            refused,
        })
    }

    /// Takes a token for `client`; when there is none, how many seconds until there is.
    fn take(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(()); // a poisoned lock must not lock everyone out
        };
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            let (per_s, burst) = (self.per_s, self.burst);
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * per_s < burst);
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refilled = bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * self.per_s;
        bucket.tokens = refilled.min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_s;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

/// Answers 429 with `Retry-After` to a client over its rate; counts it. No limiter: every
/// request passes.
pub(crate) async fn rate_limit(
    State(limiter): State<Option<Arc<RateLimiter>>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let exempt = path == "/healthz" || path == "/metrics";
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let (false, Some(limiter), Some(client)) = (exempt, limiter.as_deref(), client) {
        if let Err(retry_after_s) = limiter.take(client, Instant::now()) {
            limiter.refused.inc();
            let mut response = HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests from {client}; retry in {retry_after_s} s"),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&retry_after_s.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(2.0, 3, IntCounter::new("x", "x").unwrap()).unwrap();
        let client: IpAddr = [10, 0, 0, 1].into();
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.take(client, t0).is_ok()));
        assert_eq!(limiter.take(client, t0), Err(1));
        // Half a second later one token (2 a second) is back.
        assert_eq!(
            limiter.take(client, t0 + Duration::from_millis(500)),
            Ok(())
        );
        assert!(limiter
            .take(client, t0 + Duration::from_millis(500))
            .is_err());
        // Another client has its own bucket.
        assert!(limiter.take([10, 0, 0, 2].into(), t0).is_ok());
        assert!(
            RateLimiter::new(0.0, 10, limiter.refused.clone()).is_none(),
            "0 turns it off"
        );
    }
}
