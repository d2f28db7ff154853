//! Alerts as they travel and are stored: severities, categories, states, the alert itself and
//! the events of its lifecycle (which are also what departments' webhooks carry).

use crate::district::District;
use crate::event_time::EpochMs;
use crate::registry::Department;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How serious an alert is. Ordered: escalation raises it one step.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For information.
    Info,
    /// Needs attention.
    Warning,
    /// Needs action soon.
    Major,
    /// Needs action now.
    Critical,
}

impl Severity {
    /// Every severity, least first.
    pub const ALL: [Severity; 4] = [
        Severity::Info,
        Severity::Warning,
        Severity::Major,
        Severity::Critical,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }

    /// One step up; critical stays critical.
    pub fn raised(self) -> Severity {
        match self {
            Severity::Info => Severity::Warning,
            Severity::Warning => Severity::Major,
            Severity::Major | Severity::Critical => Severity::Critical,
        }
    }
}

/// What an alert is about; departments subscribe by category.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Congestion, signal faults.
    Traffic,
    /// Air quality.
    AirQuality,
    /// Water quality.
    WaterQuality,
    /// Heavy rain, rising water, flooding.
    Flood,
    /// Bridges and structures.
    Structure,
    /// Crowds, accidents, security events.
    PublicSafety,
    /// Devices offline or unhealthy.
    DeviceHealth,
    /// A storm summary: alerts folded together by storm control.
    Storm,
}

impl Category {
    /// Every category.
    pub const ALL: [Category; 8] = [
        Category::Traffic,
        Category::AirQuality,
        Category::WaterQuality,
        Category::Flood,
        Category::Structure,
        Category::PublicSafety,
        Category::DeviceHealth,
        Category::Storm,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Traffic => "traffic",
            Category::AirQuality => "air_quality",
            Category::WaterQuality => "water_quality",
            Category::Flood => "flood",
            Category::Structure => "structure",
            Category::PublicSafety => "public_safety",
            Category::DeviceHealth => "device_health",
            Category::Storm => "storm",
        }
    }
}

/// Where an alert is in its lifecycle.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Raised and not yet acknowledged.
    Active,
    /// An operator has taken it.
    Acknowledged,
    /// Over: its condition cleared (after the hold time) or an operator resolved it.
    Resolved,
}

impl AlertState {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Active => "active",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
        }
    }

    /// Whether the alert is still open (active or acknowledged).
    pub fn is_open(self) -> bool {
        self != AlertState::Resolved
    }
}

/// An operator's note on an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Comment {
    /// Who wrote it.
    pub author: String,
    /// When, epoch ms.
    pub at_ms: EpochMs,
    /// The text.
    pub text: String,
}

/// One alert: at most one is open per (rule, entity); a repeat breach updates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Alert {
    /// Unique: `<rule id>:<entity id>:<opened_ms>`.
    pub id: String,
    /// The rule that raised it (`storm:<scope>` for a storm summary).
    pub rule_id: String,
    /// What it is about: a device id, a district slug, ...
    pub entity_id: String,
    /// Its district, when it has one.
    pub district: Option<District>,
    /// The department that owns it.
    pub department: Department,
    /// Its category.
    pub category: Category,
    /// Its severity now (raised by escalation).
    pub severity: Severity,
    /// Its state.
    pub state: AlertState,
    /// A one-line description (Vietnamese or English, as the rule says).
    pub message: String,
    /// The value that breached, last seen.
    pub value: Option<f64>,
    /// When it opened (wall clock), epoch ms.
    pub opened_ms: EpochMs,
    /// The event time of the breach that opened it, epoch ms.
    pub breach_event_ms: EpochMs,
    /// When it last changed, epoch ms.
    pub updated_ms: EpochMs,
    /// How many breaches it has gathered (1 when opened).
    pub breaches: u32,
    /// How many times it was escalated.
    pub escalations: u32,
    /// Who acknowledged it, and when.
    pub acknowledged: Option<(String, EpochMs)>,
    /// Who or what resolved it (`auto` when its condition cleared), and when.
    pub resolved: Option<(String, EpochMs)>,
    /// Operators' notes.
    pub comments: Vec<Comment>,
    /// Whether storm control kept it from being notified (it is in a storm summary).
    pub suppressed: bool,
}

/// A lifecycle transition.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// A new alert.
    Opened,
    /// A repeat breach of an open alert.
    Updated,
    /// An operator acknowledged it.
    Acknowledged,
    /// Left unacknowledged too long: severity raised, notified again.
    Escalated,
    /// Resolved, by an operator or because its condition cleared.
    Resolved,
    /// An operator commented.
    Commented,
    /// Storm control kept a new alert from being notified.
    Suppressed,
}

impl Transition {
    /// Every transition.
    pub const ALL: [Transition; 7] = [
        Transition::Opened,
        Transition::Updated,
        Transition::Acknowledged,
        Transition::Escalated,
        Transition::Resolved,
        Transition::Commented,
        Transition::Suppressed,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Opened => "opened",
            Transition::Updated => "updated",
            Transition::Acknowledged => "acknowledged",
            Transition::Escalated => "escalated",
            Transition::Resolved => "resolved",
            Transition::Commented => "commented",
            Transition::Suppressed => "suppressed",
        }
    }
}

/// One transition of one alert, as stored in ClickHouse and pushed to the WebSocket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertEvent {
    /// Unique and stable: `<alert id>:<sequence>`; the webhook id of its notifications.
    pub event_id: String,
    /// The alert, as it is after the transition.
    pub alert: Alert,
    /// What happened.
    pub transition: Transition,
    /// When, epoch ms (wall clock).
    pub at_ms: EpochMs,
    /// Who did it (`system` for the engine).
    pub actor: String,
    /// Whether departments are notified of it (opened, escalated, resolved, and a storm
    /// summary's updates; not suppressed alerts, updates or comments).
    pub notify: bool,
}
