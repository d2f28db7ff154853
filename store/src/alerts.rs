//! Alert lifecycle events and webhook delivery attempts, as stored for analysts.

use ioc_schemas::{AlertEvent, AlertState, Category, District, Severity, Transition};
use serde::{Deserialize, Serialize};

use crate::kpi::department_code;
use crate::rows::{position_code, seconds, StoreRow};

/// One transition of one alert, as stored in `alert_events`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct AlertEventRow {
    /// `<alert id>:<sequence>`: unique and stable.
    pub event_id: String,
    /// The alert.
    pub alert_id: String,
    /// The rule (`storm:<scope>` for a storm summary).
    pub rule_id: String,
    /// What the alert is about.
    pub entity_id: String,
    /// `Enum8` district, when the alert has one.
    pub district: Option<i8>,
    /// `Enum8` department.
    pub department: i8,
    /// `Enum8` category.
    pub category: i8,
    /// `Enum8` severity after the transition.
    pub severity: i8,
    /// `Enum8` state after the transition.
    pub state: i8,
    /// `Enum8` transition.
    pub transition: i8,
    /// When, whole seconds.
    pub at: u32,
    /// When, epoch ms.
    pub at_ms: u64,
    /// Who: an operator, or `system`.
    pub actor: String,
    /// The alert's message.
    pub message: String,
    /// The value that breached, last seen.
    pub value: Option<f64>,
    /// Breaches gathered so far.
    pub breaches: u32,
    /// Escalations so far.
    pub escalations: u32,
    /// 1 when departments were notified of it.
    pub notified: u8,
    /// 1 when storm control suppressed the alert.
    pub suppressed: u8,
    /// When the alert opened, epoch ms.
    pub opened_ms: u64,
}

impl From<&AlertEvent> for AlertEventRow {
    fn from(e: &AlertEvent) -> AlertEventRow {
        let a = &e.alert;
        AlertEventRow {
            event_id: e.event_id.clone(),
            alert_id: a.id.clone(),
            rule_id: a.rule_id.clone(),
            entity_id: a.entity_id.clone(),
            district: a.district.map(|d| position_code(&District::ALL, &d)),
            department: department_code(a.department),
            category: position_code(&Category::ALL, &a.category),
            severity: position_code(&Severity::ALL, &a.severity),
            state: position_code(
                &[
                    AlertState::Active,
                    AlertState::Acknowledged,
                    AlertState::Resolved,
                ],
                &a.state,
            ),
            transition: position_code(&Transition::ALL, &e.transition),
            at: seconds(e.at_ms),
            at_ms: e.at_ms,
            actor: e.actor.clone(),
            message: a.message.clone(),
            value: a.value,
            breaches: a.breaches,
            escalations: a.escalations,
            notified: u8::from(e.notify),
            suppressed: u8::from(a.suppressed),
            opened_ms: a.opened_ms,
        }
    }
}

impl StoreRow for AlertEventRow {
    const TABLE: &'static str = "alert_events";
}

/// One attempt to deliver a webhook, as stored in `webhook_attempts`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct WebhookAttemptRow {
    /// The delivery (one per event and subscription).
    pub delivery_id: String,
    /// The `webhook-id` header: the same on every attempt of a delivery.
    pub webhook_id: String,
    /// The subscription.
    pub subscription_id: String,
    /// `Enum8` department of the subscription.
    pub department: i8,
    /// The endpoint.
    pub url: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When, whole seconds.
    pub at: u32,
    /// When, epoch ms.
    pub at_ms: u64,
    /// The HTTP status, when one came back.
    pub status: Option<u16>,
    /// How long the attempt took, ms.
    pub latency_ms: u64,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// `delivered`, `retry` or `dead`.
    pub outcome: String,
}

impl StoreRow for WebhookAttemptRow {
    const TABLE: &'static str = "webhook_attempts";
}
