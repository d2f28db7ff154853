//! The lifecycle's settings, and which alerts a listing asks for.

use ioc_schemas::{Department, District};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{Alert, AlertState, Category, Severity};

/// Settings of the lifecycle. Every field has a default; a config file may give any of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleConfig {
    /// Length of a storm-control window, seconds (wall time); the caps count new alerts in it.
    pub storm_window_s: u64,
    /// New alerts of one rule notified per window; more are suppressed into a summary.
    pub max_per_rule: u32,
    /// New alerts of one department notified per window.
    pub max_per_department: u32,
    /// New alerts of one district notified per window.
    pub max_per_district: u32,
    /// A storm summary resolves once nothing was folded into it for this long, seconds.
    pub summary_hold_s: u64,
    /// A storm summary's growth is notified at most this often, seconds.
    pub summary_update_every_s: u64,
    /// Repeat breaches of an alert make at most one `updated` event this often, seconds.
    pub update_event_every_s: u64,
    /// How many times an unacknowledged alert is escalated at most.
    pub max_escalations: u32,
    /// Resolved alerts are kept in memory (for listing) this long after resolving, seconds.
    pub keep_resolved_s: u64,
    /// At most this many resolved alerts are kept in memory; the oldest go first.
    pub max_resolved: usize,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            storm_window_s: 300,
            max_per_rule: 20,
            max_per_department: 50,
            max_per_district: 30,
            summary_hold_s: 900,
            summary_update_every_s: 60,
            update_event_every_s: 60,
            max_escalations: 3,
            keep_resolved_s: 24 * 3600,
            max_resolved: 10_000,
        }
    }
}

/// Which alerts to list. Every field is optional; all given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AlertFilter {
    /// Only alerts in this state.
    pub state: Option<AlertState>,
    /// Only open (true) or only resolved (false) alerts.
    pub open: Option<bool>,
    /// Only alerts at least this severe.
    pub min_severity: Option<Severity>,
    /// Only this category.
    pub category: Option<Category>,
    /// Only this department's.
    pub department: Option<Department>,
    /// Only this district's.
    pub district: Option<District>,
    /// Only this rule's.
    pub rule_id: Option<String>,
    /// Only this entity's.
    pub entity_id: Option<String>,
    /// Only suppressed (true) or only notified (false) alerts.
    pub suppressed: Option<bool>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

impl AlertFilter {
    /// Whether an alert matches (the limit aside).
    pub fn matches(&self, a: &Alert) -> bool {
        self.state.is_none_or(|s| a.state == s)
            && self.open.is_none_or(|o| a.state.is_open() == o)
            && self.min_severity.is_none_or(|s| a.severity >= s)
            && self.category.is_none_or(|c| a.category == c)
            && self.department.is_none_or(|d| a.department == d)
            && self.district.is_none_or(|d| a.district == Some(d))
            && self.rule_id.as_ref().is_none_or(|r| &a.rule_id == r)
            && self.entity_id.as_ref().is_none_or(|e| &a.entity_id == e)
            && self.suppressed.is_none_or(|s| a.suppressed == s)
    }
}
