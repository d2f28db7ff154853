//! Validation of one rule on its own: every field, the condition and its source, the message
//! template; and a rule read from JSON.

use std::collections::{BTreeSet, HashSet};

use super::error::RuleError;
use super::rule::{CompositeScope, Condition, Rule, RuleDepartment};
use crate::model::Category;

/// The longest duration any duration field accepts: 7 days, in seconds.
pub const MAX_DURATION_S: i64 = 7 * 24 * 3600;
/// The most inputs a composite rule may combine.
pub const MAX_COMPOSITE_INPUTS: usize = 16;
/// The most device ids a rule may list (filter or linked devices).
pub const MAX_RULE_DEVICES: usize = 1000;
/// The longest accepted rule name and message, in bytes.
const MAX_TEXT_BYTES: usize = 500;
/// The placeholders a message template may use.
pub const MESSAGE_PLACEHOLDERS: [&str; 5] = ["value", "entity", "district", "department", "rule"];

impl Rule {
    /// Checks every field of the rule on its own (references to other rules are checked by
    /// [`RuleSet`](super::RuleSet)), naming the first that is wrong.
    pub fn validate(&self) -> Result<(), RuleError> {
        let id = self.id.as_str();
        let bad = |field: &str, reason: String| Err(RuleError::invalid(id, field, reason));
        if !is_slug(id) {
            return bad(
                "id",
                "must be 1 to 64 characters of a-z, 0-9, `_` and `-`".to_owned(),
            );
        }
        if self.name.trim().is_empty() || self.name.len() > MAX_TEXT_BYTES {
            return bad(
                "name",
                format!("must be 1 to {MAX_TEXT_BYTES} bytes and not blank"),
            );
        }
        if self.category == Category::Storm {
            return bad(
                "category",
                "`storm` is kept for storm summaries; pick the category of what the rule watches"
                    .to_owned(),
            );
        }
        check_duration(id, "for_s", self.for_s, true)?;
        check_duration(id, "hold_s", self.hold_s, true)?;
        if let Some(s) = self.escalate_after_s {
            check_duration(id, "escalate_after_s", s, false)?;
        }
        if let Some(s) = self.clear_after_s {
            check_duration(id, "clear_after_s", s, false)?;
        }
        let mut seen = BTreeSet::new();
        for d in &self.districts {
            if !seen.insert(*d) {
                return bad("districts", format!("`{}` is listed twice", d.slug()));
            }
        }
        check_devices(id, "devices", &self.devices)?;
        check_message(id, &self.message)?;
        self.validate_condition()
    }

    /// Checks the condition and whether the rule has the source its condition needs.
    fn validate_condition(&self) -> Result<(), RuleError> {
        self.check_source()?;
        let id = self.id.as_str();
        match &self.condition {
            Condition::Threshold {
                above,
                below,
                clear,
            } => check_threshold(id, *above, *below, *clear),
            Condition::RateOfChange {
                over_s,
                rise_above,
                fall_below,
            } => check_rate(id, *over_s, *rise_above, *fall_below),
            Condition::Absence { intervals } => check_absence(id, *intervals),
            Condition::Composite { of, scope, .. } => self.check_composite(of, scope),
        }
    }

    /// A threshold or a rate of change watches a valid source; an absence or a composite rule
    /// takes none.
    fn check_source(&self) -> Result<(), RuleError> {
        let id = self.id.as_str();
        let bad = |reason: String| Err(RuleError::invalid(id, "source", reason));
        let needs_source = matches!(
            self.condition,
            Condition::Threshold { .. } | Condition::RateOfChange { .. }
        );
        match (&self.source, needs_source) {
            (Some(source), true) => source.validate(id),
            (None, true) => bad(format!(
                "a {} rule needs a source",
                self.condition.type_name()
            )),
            (Some(_), false) => bad(format!(
                "a {} rule takes no source{}",
                self.condition.type_name(),
                if matches!(self.condition, Condition::Absence { .. }) {
                    " (it watches the device health rows)"
                } else {
                    " (its inputs are other rules)"
                }
            )),
            (None, false) => Ok(()),
        }
    }

    /// A composite rule: 1 to [`MAX_COMPOSITE_INPUTS`] distinct inputs other than itself,
    /// valid linked devices, a named department, and no device filter or silence clear of its
    /// own.
    fn check_composite(&self, of: &[String], scope: &CompositeScope) -> Result<(), RuleError> {
        let id = self.id.as_str();
        let bad = |field: &str, reason: String| Err(RuleError::invalid(id, field, reason));
        if of.is_empty() || of.len() > MAX_COMPOSITE_INPUTS {
            return bad(
                "condition.of",
                format!("must list 1 to {MAX_COMPOSITE_INPUTS} rule ids"),
            );
        }
        let mut seen = BTreeSet::new();
        for input in of {
            if input == id {
                return bad("condition.of", "a rule cannot combine itself".to_owned());
            }
            if !seen.insert(input) {
                return bad("condition.of", format!("`{input}` is listed twice"));
            }
        }
        if let CompositeScope::Devices(devices) = scope {
            if devices.is_empty() {
                return bad(
                    "condition.scope.devices",
                    "must list at least one device id".to_owned(),
                );
            }
            check_devices(id, "condition.scope.devices", devices)?;
        }
        if self.department == RuleDepartment::Owner {
            return bad(
                "department",
                "a composite rule spans devices of several owners; name a department".to_owned(),
            );
        }
        if !self.devices.is_empty() {
            return bad(
                "devices",
                "a composite rule takes its devices from `condition.scope`".to_owned(),
            );
        }
        if self.clear_after_s.is_some() {
            return bad(
                "clear_after_s",
                "a composite rule clears when its inputs clear".to_owned(),
            );
        }
        Ok(())
    }

    /// Parses one rule from its JSON form (what the REST API receives) and validates it on
    /// its own; [`RuleSet::upsert`](super::RuleSet::upsert) then checks it against the set.
    pub fn from_json(text: &str) -> Result<Rule, RuleError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| RuleError::Malformed {
                rule: "?".to_owned(),
                reason: format!("not json: {e}"),
            })?;
        let label = value
            .get("id")
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_owned();
        let rule: Rule = serde_json::from_value(value).map_err(|e| RuleError::Malformed {
            rule: label,
            reason: e.to_string(),
        })?;
        rule.validate()?;
        Ok(rule)
    }
}

/// A threshold: exactly one finite level, and a finite `clear` on the breached side of it.
fn check_threshold(
    rule: &str,
    above: Option<f64>,
    below: Option<f64>,
    clear: Option<f64>,
) -> Result<(), RuleError> {
    let bad = |field: &str, reason: String| Err(RuleError::invalid(rule, field, reason));
    let (field, level) = match (above, below) {
        (Some(_), Some(_)) => {
            return bad(
                "condition.above",
                "give either `above` or `below`, not both".to_owned(),
            )
        }
        (None, None) => {
            return bad(
                "condition",
                "a threshold needs `above` or `below`".to_owned(),
            )
        }
        (Some(a), None) => ("condition.above", a),
        (None, Some(b)) => ("condition.below", b),
    };
    if !level.is_finite() {
        return bad(field, "must be a finite number".to_owned());
    }
    let Some(c) = clear else {
        return Ok(());
    };
    if !c.is_finite() {
        return bad("condition.clear", "must be a finite number".to_owned());
    }
    if above.is_some_and(|a| c > a) {
        return bad(
            "condition.clear",
            format!("{c} must be at most `above` ({level})"),
        );
    }
    if below.is_some_and(|b| c < b) {
        return bad(
            "condition.clear",
            format!("{c} must be at least `below` ({level})"),
        );
    }
    Ok(())
}

/// A rate of change: a span, and exactly one finite limit per hour.
fn check_rate(
    rule: &str,
    over_s: i64,
    rise_above: Option<f64>,
    fall_below: Option<f64>,
) -> Result<(), RuleError> {
    let bad = |field: &str, reason: String| Err(RuleError::invalid(rule, field, reason));
    check_duration(rule, "condition.over_s", over_s, false)?;
    let (field, v) = match (rise_above, fall_below) {
        (Some(_), Some(_)) => {
            return bad(
                "condition.rise_above",
                "give either `rise_above` or `fall_below`, not both".to_owned(),
            )
        }
        (None, None) => {
            return bad(
                "condition",
                "a rate of change needs `rise_above` or `fall_below`".to_owned(),
            )
        }
        (Some(r), None) => ("condition.rise_above", r),
        (None, Some(f)) => ("condition.fall_below", f),
    };
    if !v.is_finite() {
        return bad(
            field,
            "must be a finite number (change per hour)".to_owned(),
        );
    }
    Ok(())
}

/// An absence: above 0 and at most 1000 intervals.
fn check_absence(rule: &str, intervals: f64) -> Result<(), RuleError> {
    if !(intervals.is_finite() && intervals > 0.0 && intervals <= 1000.0) {
        return Err(RuleError::invalid(
            rule,
            "condition.intervals",
            format!("{intervals} must be above 0 and at most 1000"),
        ));
    }
    Ok(())
}

fn check_duration(rule: &str, field: &str, value: i64, zero_ok: bool) -> Result<(), RuleError> {
    let min = i64::from(!zero_ok);
    if value < min || value > MAX_DURATION_S {
        let lowest = if zero_ok { "0" } else { "1" };
        return Err(RuleError::invalid(
            rule,
            field,
            format!("{value} s must be {lowest} to {MAX_DURATION_S} seconds"),
        ));
    }
    Ok(())
}

fn check_devices(rule: &str, field: &str, devices: &[String]) -> Result<(), RuleError> {
    if devices.len() > MAX_RULE_DEVICES {
        return Err(RuleError::invalid(
            rule,
            field,
            format!(
                "lists {} devices, at most {MAX_RULE_DEVICES}",
                devices.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for d in devices {
        let ok = !d.is_empty()
            && d.len() <= 128
            && d.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        if !ok {
            return Err(RuleError::invalid(
                rule,
                field,
                format!("`{d}` is not a device id (ascii letters, digits, `_`, `-`, `.`, `:`)"),
            ));
        }
        if !seen.insert(d.as_str()) {
            return Err(RuleError::invalid(
                rule,
                field,
                format!("`{d}` is listed twice"),
            ));
        }
    }
    Ok(())
}

fn check_message(rule: &str, message: &str) -> Result<(), RuleError> {
    let bad = |reason: String| Err(RuleError::invalid(rule, "message", reason));
    if message.trim().is_empty() || message.len() > MAX_TEXT_BYTES {
        return bad(format!("must be 1 to {MAX_TEXT_BYTES} bytes and not blank"));
    }
    let mut rest = message;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return bad("has a `}` without a `{`".to_owned());
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return bad("has a `{` without a `}`".to_owned());
        };
        let name = &after[..close];
        if !MESSAGE_PLACEHOLDERS.contains(&name) {
            return bad(format!(
                "unknown placeholder `{{{name}}}`; use {}",
                MESSAGE_PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// Whether `s` is a rule id: 1 to 64 characters of a-z, 0-9, `_` and `-`.
pub fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
