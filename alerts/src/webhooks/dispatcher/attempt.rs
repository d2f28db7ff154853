//! One attempt of one delivery: read it from the outbox, POST it signed, record the outcome
//! in the outbox, count and log it; and the backoff before the next attempt.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ioc_schemas::{now_ms, EpochMs};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use tracing::{debug, warn};

use super::shared::{read, Shared, SubRuntime, STORE_RETRY_MS};
use crate::webhooks::config::WebhookConfig;
use crate::webhooks::delivery::{AttemptOutcome, DeliveryAttempt, DeliveryState};
use crate::webhooks::outbox::{AttemptChange, StoredDelivery};
use crate::webhooks::signing::{secure_random, signature_header};
use crate::webhooks::ssrf;
use crate::webhooks::subscription::StoredSubscription;

/// The most bytes of a refusing answer's body kept in the attempt's error.
const ERROR_BODY_BYTES: usize = 200;

/// What an attempt leaves for its task.
pub(super) enum Step {
    /// Try again at this time (epoch ms).
    Retry(EpochMs),
    /// Nothing more (delivered, dead, or no longer pending).
    Done,
}

/// One attempt of one delivery: send, record the outcome in the outbox, count and log it.
pub(super) async fn attempt(shared: Arc<Shared>, runtime: Arc<SubRuntime>, id: u64) -> Step {
    let record = match pending(&shared, id).await {
        Ok(record) => record,
        Err(step) => return step,
    };
    let target = Arc::clone(&*read(&runtime.target));
    let tried = try_once(&shared, &target, &record).await;
    let step = record_outcome(&shared, id, &record, &tried).await;
    shared
        .metrics
        .attempt(tried.outcome, tried.latency.as_secs_f64());
    report(&shared, id, &record, &target, tried);
    step
}

/// The delivery and its body, while it is pending; otherwise what the task does instead:
/// nothing more (delivered, dead or gone meanwhile), or try again soon (the outbox failed).
async fn pending(shared: &Shared, id: u64) -> Result<StoredDelivery, Step> {
    match shared.blocking(move |o| o.get_with_body(id)).await {
        Ok(Some(r)) if r.info.state == DeliveryState::Pending => Ok(r),
        Ok(_) => Err(Step::Done),
        Err(e) => {
            warn!(
                delivery = id,
                error = &e as &dyn std::error::Error,
                "webhook outbox read failed"
            );
            Err(Step::Retry(
                now_ms() + STORE_RETRY_MS.min(shared.config.backoff_max_ms),
            ))
        }
    }
}

/// An HTTP attempt made, and what it decided.
struct Tried {
    /// Its number, 1-based.
    number: u32,
    /// When it started, epoch ms.
    at_ms: EpochMs,
    /// How long it took, to the answer or the error.
    latency: Duration,
    /// When it ended, epoch ms.
    finished_ms: EpochMs,
    sent: Sent,
    outcome: AttemptOutcome,
    /// When the next attempt is due, for a retry.
    next_attempt_ms: Option<EpochMs>,
}

/// Sends the delivery once and decides: delivered, dead (its last attempt failed), or retry
/// after a backoff.
async fn try_once(shared: &Shared, target: &StoredSubscription, record: &StoredDelivery) -> Tried {
    let number = record.info.attempts.saturating_add(1);
    let at_ms = now_ms();
    let started = Instant::now();
    let sent = send(shared, target, record).await;
    let latency = started.elapsed();
    let finished_ms = now_ms();
    let success = sent.status.is_some_and(|s| (200..300).contains(&s));
    let outcome = if success {
        AttemptOutcome::Delivered
    } else if number >= shared.config.max_attempts {
        AttemptOutcome::Dead
    } else {
        AttemptOutcome::Retry
    };
    let next_attempt_ms = (outcome == AttemptOutcome::Retry)
        .then(|| finished_ms + backoff_ms(&shared.config, number, sent.retry_after_ms));
    Tried {
        number,
        at_ms,
        latency,
        finished_ms,
        sent,
        outcome,
        next_attempt_ms,
    }
}

/// Records the attempt in the outbox (unless the delivery changed meanwhile) and says what
/// the task does next.
async fn record_outcome(shared: &Shared, id: u64, record: &StoredDelivery, tried: &Tried) -> Step {
    let change = AttemptChange {
        attempts: tried.number,
        at_ms: tried.at_ms,
        finished_ms: tried.finished_ms,
        state: match tried.outcome {
            AttemptOutcome::Delivered => DeliveryState::Delivered,
            AttemptOutcome::Retry => DeliveryState::Pending,
            AttemptOutcome::Dead => DeliveryState::Dead,
        },
        next_attempt_ms: tried.next_attempt_ms,
        status: tried.sent.status,
        error: tried.sent.error.clone(),
    };
    let expected = record.info.attempts;
    let recorded = shared
        .blocking(move |o| o.finish_attempt(id, expected, &change))
        .await;
    let next = match tried.next_attempt_ms {
        Some(next) => Step::Retry(next),
        None => Step::Done,
    };
    match recorded {
        Ok(Some(pending)) => {
            shared.metrics.set_pending(pending);
            next
        }
        // Changed meanwhile (subscription deleted, redelivered): nothing more here.
        Ok(None) => Step::Done,
        Err(e) => {
            // The outbox still has it pending as before: retry (a delivered one is sent again
            // at the next start, which at-least-once allows).
            warn!(
                delivery = id,
                error = &e as &dyn std::error::Error,
                "webhook attempt not recorded"
            );
            next
        }
    }
}

/// Logs the attempt and hands it to the attempt log.
fn report(
    shared: &Shared,
    id: u64,
    record: &StoredDelivery,
    target: &StoredSubscription,
    tried: Tried,
) {
    let Tried {
        number,
        at_ms,
        latency,
        sent,
        outcome,
        next_attempt_ms,
        ..
    } = tried;
    let logged = DeliveryAttempt {
        delivery_id: id,
        webhook_id: record.info.webhook_id.clone(),
        subscription_id: record.info.subscription_id.clone(),
        department: target.department,
        event_id: record.info.event_id.clone(),
        url: ssrf::redact_url(&target.url),
        attempt: number,
        at_ms,
        status: sent.status,
        latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
        error: sent.error,
        outcome,
        next_attempt_ms,
    };
    match outcome {
        AttemptOutcome::Delivered => debug!(delivery = id, attempt = number, "webhook delivered"),
        AttemptOutcome::Retry => {
            debug!(delivery = id, attempt = number, error = ?logged.error, "webhook attempt failed")
        }
        AttemptOutcome::Dead => {
            warn!(delivery = id, subscription = %logged.subscription_id, attempts = number, error = ?logged.error, "webhook delivery dead-lettered")
        }
    }
    shared.log.attempt(&logged);
}

/// What an HTTP attempt got.
struct Sent {
    status: Option<u16>,
    error: Option<String>,
    retry_after_ms: Option<u64>,
}

impl Sent {
    fn failed(error: String) -> Sent {
        Sent {
            status: None,
            error: Some(error),
            retry_after_ms: None,
        }
    }
}

/// POSTs a delivery's body, signed with every secret valid now.
async fn send(shared: &Shared, target: &StoredSubscription, record: &StoredDelivery) -> Sent {
    // The SSRF policy again, at delivery time: IP literals here, names in the resolver.
    let url = match ssrf::check_syntax(&target.url, shared.config.allow_private_urls) {
        Ok(url) => url,
        Err(e) => return Sent::failed(e.to_string()),
    };
    let now = now_ms();
    let timestamp_s = now / 1000;
    let keys = target.signing_keys(now);
    if keys.is_empty() {
        return Sent::failed("the subscription has no valid secret".to_owned());
    }
    let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let signature = signature_header(
        &key_refs,
        &record.info.webhook_id,
        timestamp_s,
        record.body.as_bytes(),
    );
    let request = shared
        .client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header("webhook-id", record.info.webhook_id.as_str())
        .header("webhook-timestamp", timestamp_s.to_string())
        .header("webhook-signature", signature)
        .body(record.body.clone());
    match request.send().await {
        Ok(mut response) => {
            let status = response.status();
            if status.is_success() {
                return Sent {
                    status: Some(status.as_u16()),
                    error: None,
                    retry_after_ms: None,
                };
            }
            let retry_after_ms = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| s.saturating_mul(1000));
            let snippet = match response.chunk().await {
                Ok(Some(bytes)) => clean_snippet(&bytes),
                _ => String::new(),
            };
            let error = if snippet.is_empty() {
                format!("http status {}", status.as_u16())
            } else {
                format!("http status {}: {snippet}", status.as_u16())
            };
            Sent {
                status: Some(status.as_u16()),
                error: Some(error),
                retry_after_ms,
            }
        }
        Err(e) => Sent::failed(error_chain(e)),
    }
}

/// The start of an answer's body, on one line.
fn clean_snippet(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(ERROR_BODY_BYTES)];
    String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A request error and its causes, without the URL (it is logged apart, redacted).
fn error_chain(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    let e = e.without_url();
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    format!("{kind}: {}", parts.join(": "))
}

/// The delay before the attempt after attempt `number` (1-based): full jitter, uniform in
/// `0..=min(backoff_max, backoff_initial * 2^(number-1))`; at least a receiver's
/// `Retry-After` (itself capped by `backoff_max`).
pub(crate) fn backoff_ms(config: &WebhookConfig, number: u32, retry_after_ms: Option<u64>) -> u64 {
    let exponent = number.saturating_sub(1).min(63);
    let ceiling = config
        .backoff_initial_ms
        .saturating_mul(1u64 << exponent)
        .min(config.backoff_max_ms);
    let delay = random_below(ceiling.saturating_add(1));
    match retry_after_ms {
        Some(after) => delay.max(after.min(config.backoff_max_ms)),
        None => delay,
    }
}

/// Jitter only (not secrets): splitmix64 over a counter, seeded once from the secure random
/// source (or the clock).
fn random_below(bound: u64) -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    static SEED: OnceLock<u64> = OnceLock::new();
    if bound == 0 {
        return 0;
    }
    let seed = *SEED.get_or_init(|| {
        let mut bytes = [0u8; 8];
        match secure_random(&mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => now_ms() ^ u64::from(std::process::id()).rotate_left(32),
        }
    });
    let mut z = STATE
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(seed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    z % bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_an_exponential_ceiling() {
        let config = WebhookConfig {
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
            ..WebhookConfig::default()
        };
        for number in 1..=8u32 {
            let ceiling = (100u64 << (number - 1)).min(1_000);
            let draws: Vec<u64> = (0..2_000)
                .map(|_| backoff_ms(&config, number, None))
                .collect();
            assert!(draws.iter().all(|&d| d <= ceiling), "attempt {number}");
            // Spread over the whole range, not a constant.
            let max = draws.iter().copied().max().unwrap_or(0);
            let min = draws.iter().copied().min().unwrap_or(0);
            assert!(
                max > ceiling * 8 / 10 && min < ceiling / 5,
                "{number}: {min}..{max}"
            );
        }
        // Huge attempt numbers saturate at the ceiling instead of overflowing.
        assert!(backoff_ms(&config, u32::MAX, None) <= 1_000);
        // Retry-After is a floor, capped by the max.
        assert!(backoff_ms(&config, 1, Some(700)) >= 700);
        assert!(backoff_ms(&config, 1, Some(60_000)) <= 1_000);
    }
}
