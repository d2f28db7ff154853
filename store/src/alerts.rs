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

/// Migration 4: the alert lifecycle and webhook attempts.
pub(crate) fn alert_tables(db: &str) -> Vec<String> {
    use crate::migrate::{DEPARTMENT_ENUM, DISTRICT_ENUM};
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.alert_events (\
             event_id String, \
             alert_id String, \
             rule_id String, \
             entity_id String, \
             district Nullable({DISTRICT_ENUM}), \
             department {DEPARTMENT_ENUM}, \
             category {CATEGORY_ENUM}, \
             severity {SEVERITY_ENUM}, \
             state {STATE_ENUM}, \
             transition {TRANSITION_ENUM}, \
             at DateTime, \
             at_ms UInt64, \
             actor String, \
             message String, \
             value Nullable(Float64), \
             breaches UInt32, \
             escalations UInt32, \
             notified UInt8, \
             suppressed UInt8, \
             opened_ms UInt64\
             ) ENGINE = ReplacingMergeTree(at_ms) \
             PARTITION BY toYYYYMM(at) \
             ORDER BY (alert_id, event_id)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.webhook_attempts (\
             delivery_id String, \
             webhook_id String, \
             subscription_id String, \
             department {DEPARTMENT_ENUM}, \
             url String, \
             attempt UInt32, \
             at DateTime, \
             at_ms UInt64, \
             status Nullable(UInt16), \
             latency_ms UInt64, \
             error Nullable(String), \
             outcome String\
             ) ENGINE = MergeTree \
             PARTITION BY toYYYYMMDD(at) \
             ORDER BY (subscription_id, at_ms, delivery_id)"
        ),
    ]
}

/// `category` values, in `Category::ALL` order.
const CATEGORY_ENUM: &str = "Enum8('traffic' = 1, 'air_quality' = 2, 'water_quality' = 3, \
     'flood' = 4, 'structure' = 5, 'public_safety' = 6, 'device_health' = 7, 'storm' = 8)";
/// `severity` values, in `Severity::ALL` order.
const SEVERITY_ENUM: &str = "Enum8('info' = 1, 'warning' = 2, 'major' = 3, 'critical' = 4)";
/// Alert `state` values.
const STATE_ENUM: &str = "Enum8('active' = 1, 'acknowledged' = 2, 'resolved' = 3)";
/// `transition` values, in `Transition::ALL` order.
const TRANSITION_ENUM: &str = "Enum8('opened' = 1, 'updated' = 2, 'acknowledged' = 3, \
     'escalated' = 4, 'resolved' = 5, 'commented' = 6, 'suppressed' = 7)";

#[cfg(test)]
mod tests {
    use super::*;

    /// The enum literals are written out (a released migration never changes); they must
    /// still list the Rust names in order.
    #[test]
    fn enum_literals_follow_the_rust_names() {
        let names = |all: Vec<String>| {
            all.iter()
                .enumerate()
                .map(|(i, n)| format!("'{n}' = {}", i + 1))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let inner = |e: &str| {
            e.trim_start_matches("Enum8(")
                .trim_end_matches(')')
                .replace("     ", " ")
        };
        assert_eq!(
            inner(CATEGORY_ENUM),
            names(
                Category::ALL
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect()
            )
        );
        assert_eq!(
            inner(SEVERITY_ENUM),
            names(
                Severity::ALL
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect()
            )
        );
        assert_eq!(
            inner(TRANSITION_ENUM),
            names(
                Transition::ALL
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect()
            )
        );
    }
}
