//! What a rule is: its fields, the condition that breaches it, who owns its alerts.

use ioc_schemas::{Department, District};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::source::RuleSource;
use crate::model::{Category, Severity};

/// The hold time a rule gets when it names none, in seconds.
pub const DEFAULT_HOLD_S: i64 = 300;

/// Who owns the alerts of a rule: a fixed department, or the owner of the device or entity the
/// observation comes from. Written as a department slug or `"owner"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RuleDepartment {
    /// The department that owns the observed device (from the registry or the KPI row).
    Owner,
    /// Always this department.
    Fixed(Department),
}

impl RuleDepartment {
    /// The slug: `owner` or the department's slug.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleDepartment::Owner => "owner",
            RuleDepartment::Fixed(d) => d.slug(),
        }
    }
}

impl JsonSchema for RuleDepartment {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RuleDepartment".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut slugs = vec!["owner"];
        slugs.extend(Department::ALL.iter().map(|d| d.slug()));
        schemars::json_schema!({"type": "string", "enum": slugs})
    }
}

impl TryFrom<String> for RuleDepartment {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value == "owner" {
            return Ok(RuleDepartment::Owner);
        }
        Department::from_slug(&value)
            .map(RuleDepartment::Fixed)
            .ok_or_else(|| {
                let all: Vec<&str> = Department::ALL.iter().map(|d| d.slug()).collect();
                format!(
                    "unknown department `{value}`: use `owner` or one of {}",
                    all.join(", ")
                )
            })
    }
}

impl From<RuleDepartment> for String {
    fn from(value: RuleDepartment) -> Self {
        value.as_str().to_owned()
    }
}

/// How a composite rule combines its inputs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CompositeOp {
    /// Breached when every input is breached.
    All,
    /// Breached when at least one input is breached.
    Any,
}

/// Where the inputs of a composite rule must be breached together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompositeScope {
    /// In the same district, on any of its devices: `scope = "district"`. The alert's entity is
    /// the district slug.
    District,
    /// On a group of linked devices: `scope = { devices = ["a", "b"] }`. An input counts as
    /// breached when it is breached on any of them. The alert's entity is the device ids joined
    /// with `+`.
    Devices(Vec<String>),
}

/// When a rule is breached, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// The value crosses a threshold, with hysteresis. Exactly one of `above` and `below`.
    ///
    /// With `above`: breached when the value is at or above it; it clears when the value falls
    /// strictly below `clear` (default: `above`). With `below`: breached when the value is at
    /// or below it; it clears when the value rises strictly above `clear` (default: `below`).
    /// Between the two levels the state does not change.
    Threshold {
        /// Breached at or above this value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        above: Option<f64>,
        /// Breached at or below this value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        below: Option<f64>,
        /// The level at which a breach clears (hysteresis): at most `above`, at least `below`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clear: Option<f64>,
    },
    /// The value changes too fast. The rate is the change **per hour** (in the value's unit),
    /// from the sample nearest `over_s` ago to the newest; it is evaluated once the samples
    /// span at least half of `over_s`. Exactly one of `rise_above` and `fall_below`.
    RateOfChange {
        /// The span the rate is measured over, seconds (> 0).
        over_s: i64,
        /// Breached when the change per hour is at or above this (a rise).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rise_above: Option<f64>,
        /// Breached when the change per hour is at or below this (a fall: negative, e.g.
        /// `-20.0`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fall_below: Option<f64>,
    },
    /// A device sends no data for `intervals` × its expected reporting interval. Evaluated on
    /// the device-scope health KPI rows (every 5 minutes, carrying the last event time seen);
    /// a never-seen device counts as silent since the engine first saw its health row. Takes
    /// no `source`.
    Absence {
        /// How many expected intervals of silence make a device absent (> 0).
        intervals: f64,
    },
    /// Other rules breached together. Takes no `source`; the inputs are evaluated by their own
    /// rules (set `raises_alerts = false` on an input that should not alert on its own).
    Composite {
        /// `all` (AND) or `any` (OR).
        op: CompositeOp,
        /// The ids of the rules combined.
        of: Vec<String>,
        /// Where they must be breached together.
        scope: CompositeScope,
    },
}

impl Condition {
    /// The `type` tag.
    pub fn type_name(&self) -> &'static str {
        match self {
            Condition::Threshold { .. } => "threshold",
            Condition::RateOfChange { .. } => "rate_of_change",
            Condition::Absence { .. } => "absence",
            Condition::Composite { .. } => "composite",
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_hold_s() -> i64 {
    DEFAULT_HOLD_S
}

/// One alert rule, as written in the rules file (`[[rule]]`) and sent to the REST API (JSON,
/// same fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique id, an ASCII slug: 1 to 64 characters of a-z, 0-9, `_` and `-`.
    #[schemars(pattern(r"^[a-z0-9_-]{1,64}$"))]
    pub id: String,
    /// A short human name (UTF-8, Vietnamese welcome).
    pub name: String,
    /// Whether the rule is evaluated; default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Whether a breach raises an alert; default true. False for a rule that only feeds
    /// composite rules.
    #[serde(default = "default_true")]
    pub raises_alerts: bool,
    /// The severity of its alerts (escalation raises it).
    pub severity: Severity,
    /// The category of its alerts (not `storm`, which storm control uses).
    pub category: Category,
    /// The department that owns its alerts: a department slug (`transport`, `environment`,
    /// `police`, `construction`, `industry_trade`, `disaster_prevention`, `information`) or
    /// `owner` for the department owning the observed device or entity.
    pub department: RuleDepartment,
    /// What it watches; required for `threshold` and `rate_of_change`, absent for `absence`
    /// and `composite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<RuleSource>,
    /// When it is breached.
    pub condition: Condition,
    /// How long (event time, seconds) a breach must hold before the alert opens; default 0.
    #[serde(default)]
    pub for_s: i64,
    /// How long (event time, seconds) the condition must stay clear before its alert resolves
    /// by itself; stops flapping; default 300.
    #[serde(default = "default_hold_s")]
    pub hold_s: i64,
    /// Left unacknowledged this long (wall time, seconds), the alert's severity is raised and
    /// it is notified again; none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate_after_s: Option<i64>,
    /// For sources that only report breaches (camera events): the condition clears when no
    /// breaching observation came for this long (event time, seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_after_s: Option<i64>,
    /// Only observations from these districts; all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub districts: Vec<District>,
    /// Only observations from these device ids; all when empty. Not for composite rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// The alert's one-line message. Placeholders: `{value}`, `{entity}`, `{district}`
    /// (Vietnamese name), `{department}` (Vietnamese name), `{rule}` (the rule's name).
    pub message: String,
}

impl Rule {
    /// The ids of the rules a composite rule combines (empty for other rules).
    pub fn inputs(&self) -> &[String] {
        match &self.condition {
            Condition::Composite { of, .. } => of,
            _ => &[],
        }
    }
}
