//! Deliveries (one per notified event and matching subscription), their attempts, and the
//! attempt log the lead writes to ClickHouse.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ioc_schemas::{Department, EpochMs};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a delivery is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt (or for its subscription to be enabled again).
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// Dead-lettered: every attempt failed (or its subscription was deleted); only a manual
    /// redelivery sends it again.
    Dead,
}

impl DeliveryState {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }
}

/// One delivery of one event to one subscription, as stored in the outbox (its body apart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Delivery {
    /// Its id in the outbox (increasing: newer deliveries have larger ids).
    pub id: u64,
    /// The `webhook-id` header of every attempt: `msg_<event id>_<subscription id>`; the
    /// receiver's idempotency key.
    pub webhook_id: String,
    /// The subscription.
    pub subscription_id: String,
    /// The subscription's department.
    pub department: Department,
    /// The alert event delivered.
    pub event_id: String,
    /// The payload's `type` (`alert.opened`, ...).
    pub event_type: String,
    /// The alert.
    pub alert_id: String,
    /// Where it is.
    pub state: DeliveryState,
    /// Attempts made since it was created or last redelivered.
    pub attempts: u32,
    /// Manual redeliveries.
    pub redeliveries: u32,
    /// When it was created, epoch ms.
    pub created_ms: EpochMs,
    /// When it last changed, epoch ms.
    pub updated_ms: EpochMs,
    /// When pending: when its next attempt is due, epoch ms.
    pub next_attempt_ms: Option<EpochMs>,
    /// When its last attempt started, epoch ms.
    pub last_attempt_ms: Option<EpochMs>,
    /// When a 2xx answer was received, epoch ms.
    pub delivered_ms: Option<EpochMs>,
    /// The HTTP status of the last attempt, when there was an answer.
    pub last_status: Option<u16>,
    /// What went wrong with the last attempt.
    pub last_error: Option<String>,
}

/// Which deliveries to list: newest first. Also the query parameters of
/// `GET /api/v1/deliveries` (hence the schema's parameters without `null`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryQuery {
    /// Only in this state.
    pub state: Option<DeliveryState>,
    /// Only of this subscription.
    pub subscription: Option<String>,
    /// Only of this department's subscriptions.
    pub department: Option<Department>,
    /// Only with an id below this one (the next page: the last id of the previous one).
    pub before: Option<u64>,
    /// At most this many (1 to 1000; default 100).
    #[schemars(range(min = 1, max = 1000))]
    pub limit: usize,
}

impl Default for DeliveryQuery {
    fn default() -> Self {
        DeliveryQuery {
            state: None,
            subscription: None,
            department: None,
            before: None,
            limit: DeliveryQuery::DEFAULT_LIMIT,
        }
    }
}

impl DeliveryQuery {
    /// The default page size.
    pub const DEFAULT_LIMIT: usize = 100;
    /// The largest page size.
    pub const MAX_LIMIT: usize = 1000;
}

/// How an attempt ended.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// A 2xx answer: the delivery is done.
    Delivered,
    /// Failed; another attempt is scheduled.
    Retry,
    /// Failed, and it was the last attempt: the delivery is dead-lettered.
    Dead,
}

impl AttemptOutcome {
    /// The snake_case name (also the `outcome` label of the attempts metric).
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Dead => "dead",
        }
    }
}

/// One HTTP attempt of one delivery, for the attempt log (ClickHouse).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryAttempt {
    /// The delivery's outbox id.
    pub delivery_id: u64,
    /// Its `webhook-id`.
    pub webhook_id: String,
    /// The subscription.
    pub subscription_id: String,
    /// The subscription's department.
    pub department: Department,
    /// The alert event delivered.
    pub event_id: String,
    /// The URL, without credentials, query or fragment.
    pub url: String,
    /// 1 for the first attempt (counting again from 1 after a manual redelivery).
    pub attempt: u32,
    /// When the attempt started, epoch ms.
    pub at_ms: EpochMs,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// From the start of the attempt to the answer (or the error), ms.
    pub latency_ms: u64,
    /// What went wrong: the connection, the timeout, or a non-2xx status and the start of
    /// the answer's body.
    pub error: Option<String>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// After a `retry`: when the next attempt is due, epoch ms.
    pub next_attempt_ms: Option<EpochMs>,
}

/// Where attempts are logged. Called from the delivery tasks after every attempt: it must not
/// block (hand the record to a bounded channel, say, and count what a full channel drops).
pub trait AttemptLog: Send + Sync + 'static {
    /// One attempt was made.
    fn attempt(&self, attempt: &DeliveryAttempt);
}

/// An attempt log that forgets everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopAttemptLog;

impl AttemptLog for NoopAttemptLog {
    fn attempt(&self, _attempt: &DeliveryAttempt) {}
}

/// An attempt log in memory, for tests and the embedded demo: keeps the newest `capacity`
/// attempts; when full, the oldest is dropped and counted in [`MemoryAttemptLog::dropped`].
#[derive(Debug)]
pub struct MemoryAttemptLog {
    capacity: usize,
    attempts: Mutex<VecDeque<DeliveryAttempt>>,
    dropped: AtomicU64,
}

impl MemoryAttemptLog {
    /// An empty log keeping at most `capacity` attempts (at least 1).
    pub fn new(capacity: usize) -> Self {
        MemoryAttemptLog {
            capacity: capacity.max(1),
            attempts: Mutex::new(VecDeque::new()),
            dropped: AtomicU64::new(0),
        }
    }

    /// The attempts kept, oldest first.
    pub fn snapshot(&self) -> Vec<DeliveryAttempt> {
        let attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        attempts.iter().cloned().collect()
    }

    /// Attempts dropped because the log was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl AttemptLog for MemoryAttemptLog {
    fn attempt(&self, attempt: &DeliveryAttempt) {
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        if attempts.len() >= self.capacity {
            attempts.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        attempts.push_back(attempt.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_log_is_bounded_and_counts_drops() {
        let log = MemoryAttemptLog::new(2);
        let a = DeliveryAttempt {
            delivery_id: 1,
            webhook_id: "msg_e_s".into(),
            subscription_id: "s".into(),
            department: Department::Police,
            event_id: "e".into(),
            url: "http://x/".into(),
            attempt: 1,
            at_ms: 0,
            status: Some(500),
            latency_ms: 3,
            error: Some("http status 500".into()),
            outcome: AttemptOutcome::Retry,
            next_attempt_ms: Some(10),
        };
        for i in 1..=3 {
            log.attempt(&DeliveryAttempt {
                attempt: i,
                ..a.clone()
            });
        }
        let kept = log.snapshot();
        assert_eq!(
            kept.iter().map(|a| a.attempt).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(log.dropped(), 1);
        let json = serde_json::to_value(&kept[0]).unwrap();
        assert_eq!(json["outcome"], "retry");
        assert_eq!(json["department"], "police");
    }
}
