//! The body of every webhook request, its JSON Schema, and webhook ids.

use ioc_alert_engine::model::{AlertEvent, Transition};
use ioc_schemas::format_rfc3339_ms;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::WebhookError;

/// The payload's `type`: `alert.` and the transition.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum WebhookEventType {
    /// A new alert.
    #[serde(rename = "alert.opened")]
    AlertOpened,
    /// A repeat breach of an open alert (notified for storm summaries).
    #[serde(rename = "alert.updated")]
    AlertUpdated,
    /// An operator acknowledged the alert.
    #[serde(rename = "alert.acknowledged")]
    AlertAcknowledged,
    /// Left unacknowledged too long: its severity was raised.
    #[serde(rename = "alert.escalated")]
    AlertEscalated,
    /// Resolved, by an operator or because its condition cleared.
    #[serde(rename = "alert.resolved")]
    AlertResolved,
    /// An operator commented.
    #[serde(rename = "alert.commented")]
    AlertCommented,
    /// Storm control kept the alert from being notified on its own.
    #[serde(rename = "alert.suppressed")]
    AlertSuppressed,
}

impl WebhookEventType {
    /// The type of a transition.
    pub fn of(transition: Transition) -> Self {
        match transition {
            Transition::Opened => WebhookEventType::AlertOpened,
            Transition::Updated => WebhookEventType::AlertUpdated,
            Transition::Acknowledged => WebhookEventType::AlertAcknowledged,
            Transition::Escalated => WebhookEventType::AlertEscalated,
            Transition::Resolved => WebhookEventType::AlertResolved,
            Transition::Commented => WebhookEventType::AlertCommented,
            Transition::Suppressed => WebhookEventType::AlertSuppressed,
        }
    }

    /// The wire name (`alert.opened`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEventType::AlertOpened => "alert.opened",
            WebhookEventType::AlertUpdated => "alert.updated",
            WebhookEventType::AlertAcknowledged => "alert.acknowledged",
            WebhookEventType::AlertEscalated => "alert.escalated",
            WebhookEventType::AlertResolved => "alert.resolved",
            WebhookEventType::AlertCommented => "alert.commented",
            WebhookEventType::AlertSuppressed => "alert.suppressed",
        }
    }
}

/// A webhook request's JSON body (the Standard Webhooks payload shape). The same bytes are
/// sent on every attempt of a delivery, and they are what the signature covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "IOC alert webhook",
    description = "The body of a Da Nang IOC alert webhook request. Requests carry \
                   `webhook-id`, `webhook-timestamp` and `webhook-signature` headers \
                   (Standard Webhooks)."
)]
pub struct WebhookPayload {
    /// What happened: `alert.` and the lifecycle transition.
    #[serde(rename = "type")]
    pub event_type: WebhookEventType,
    /// When it happened (the event's wall-clock time), RFC 3339 UTC with milliseconds.
    #[schemars(extend("format" = "date-time"))]
    pub timestamp: String,
    /// The alert event: the alert as it is after the transition, the transition, who made
    /// it, and when.
    pub data: AlertEvent,
}

impl WebhookPayload {
    /// The payload of an event.
    pub fn of(event: &AlertEvent) -> Self {
        WebhookPayload {
            event_type: WebhookEventType::of(event.transition),
            timestamp: format_rfc3339_ms(event.at_ms),
            data: event.clone(),
        }
    }
}

/// The payload's JSON Schema (draft 2020-12), pretty-printed; publish it as
/// `alert-webhook.schema.json`.
pub fn payload_schema() -> String {
    let schema = schemars::schema_for!(WebhookPayload);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

/// The body of an event's deliveries.
pub(crate) fn payload_body(event: &AlertEvent) -> Result<String, WebhookError> {
    serde_json::to_string(&WebhookPayload::of(event)).map_err(|source| WebhookError::Payload {
        event_id: event.event_id.clone(),
        source,
    })
}

/// The `webhook-id` of an event's delivery to a subscription: `msg_<event id>_<subscription
/// id>`, stable across attempts, restarts and redeliveries. Bytes other than ASCII letters,
/// digits and `-_.:` are percent-encoded so the id is a valid header value.
pub fn webhook_id(event_id: &str, subscription_id: &str) -> String {
    let mut id = String::with_capacity(event_id.len() + subscription_id.len() + 5);
    id.push_str("msg_");
    escape_into(event_id, &mut id);
    id.push('_');
    escape_into(subscription_id, &mut id);
    id
}

fn escape_into(text: &str, out: &mut String) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_ids_are_stable_header_values() {
        assert_eq!(
            webhook_id("aqi_high:env-01:1732752000000:1", "tnmt"),
            "msg_aqi_high:env-01:1732752000000:1_tnmt"
        );
        assert_eq!(webhook_id("a b/ở", "s"), "msg_a%20b%2F%E1%BB%9F_s");
        for t in Transition::ALL {
            let json = serde_json::to_string(&WebhookEventType::of(t)).unwrap();
            assert_eq!(json, format!("\"alert.{}\"", t.as_str()));
            assert_eq!(
                WebhookEventType::of(t).as_str(),
                format!("alert.{}", t.as_str())
            );
        }
    }

    #[test]
    fn the_schema_describes_the_envelope() {
        let schema: serde_json::Value = serde_json::from_str(&payload_schema()).unwrap();
        let props = &schema["properties"];
        assert!(props["type"].is_object() && props["data"].is_object());
        assert_eq!(props["timestamp"]["format"], "date-time");
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(required.len(), 3, "{required:?}");
        assert!(payload_schema().contains("alert.escalated"));
    }
}
