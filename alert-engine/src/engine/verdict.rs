//! What the engine reports: a [`Verdict`] per (rule, entity) pair that changed or whose breach
//! repeats, with the rule's message filled in.

use ioc_schemas::{Department, District};
use serde::{Deserialize, Serialize};

use super::state::{EntityState, Phase, RuleState};
use crate::model::{Category, Severity};
use crate::rules::{Rule, RuleDepartment};

/// The department of alerts whose rule says `owner` when the observation names none: Sở
/// Thông tin và Truyền thông, which runs the IOC.
pub const FALLBACK_DEPARTMENT: Department = Department::Information;

/// A change of the state of one (rule, entity) pair, or a repeated breach, for the lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The rule.
    pub rule_id: String,
    /// The entity.
    pub entity_id: String,
    /// The entity's district, if any.
    pub district: Option<District>,
    /// The department owning the alert.
    pub department: Department,
    /// The rule's severity.
    pub severity: Severity,
    /// The rule's category.
    pub category: Category,
    /// True: breached (newly, or again); false: cleared.
    pub breached: bool,
    /// The value behind it: the observed value, the rate per hour for rate-of-change rules,
    /// the silence in seconds for absence rules; none for composite rules and never-seen
    /// devices.
    pub value: Option<f64>,
    /// The event time it happened at, epoch ms.
    pub event_ms: u64,
    /// The rule's message, filled in.
    pub message: String,
    /// The rule's hold time, seconds.
    pub hold_s: u64,
    /// The rule's escalation delay, seconds, if it escalates.
    pub escalate_after_s: Option<u64>,
}

/// The clear verdicts of every open entity of a rule (when the rule goes away).
pub(super) fn clears_of(rule: &Rule, state: &RuleState) -> Vec<Verdict> {
    state
        .entities
        .iter()
        .filter(|(_, st)| st.phase == Phase::Open)
        .map(|(entity, st)| verdict_of(rule, entity, st, false, st.last_event_ms))
        .collect()
}

/// The verdict of a (rule, entity) pair as its state stands.
pub(super) fn verdict_of(
    rule: &Rule,
    entity: &str,
    st: &EntityState,
    breached: bool,
    event_ms: u64,
) -> Verdict {
    let department = match rule.department {
        RuleDepartment::Fixed(d) => d,
        RuleDepartment::Owner => st.department.unwrap_or(FALLBACK_DEPARTMENT),
    };
    Verdict {
        rule_id: rule.id.clone(),
        entity_id: entity.to_owned(),
        district: st.district,
        department,
        severity: rule.severity,
        category: rule.category,
        breached,
        value: st.value,
        event_ms,
        message: render_message(
            &rule.message,
            st.value,
            entity,
            st.district,
            department,
            &rule.name,
        ),
        hold_s: secs(rule.hold_s),
        escalate_after_s: rule.escalate_after_s.map(secs),
    }
}

/// A value as a message shows it: whole numbers without decimals, others with at most two.
pub fn format_value(value: Option<f64>) -> String {
    match value {
        None => "–".to_owned(),
        Some(v) if !v.is_finite() => "–".to_owned(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => {
            let text = format!("{v:.2}");
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
    }
}

/// Fills a rule's message template.
pub fn render_message(
    template: &str,
    value: Option<f64>,
    entity: &str,
    district: Option<District>,
    department: Department,
    rule_name: &str,
) -> String {
    template
        .replace("{value}", &format_value(value))
        .replace("{entity}", entity)
        .replace("{district}", district.map_or("", |d| d.name_vi()))
        .replace("{department}", department.name_vi())
        .replace("{rule}", rule_name)
}

fn secs(seconds: i64) -> u64 {
    u64::try_from(seconds).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_format_for_messages() {
        assert_eq!(format_value(Some(151.0)), "151");
        assert_eq!(format_value(Some(0.35)), "0.35");
        assert_eq!(format_value(Some(25.499)), "25.5");
        assert_eq!(format_value(None), "–");
    }
}
