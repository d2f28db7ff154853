//! Storm control: at most so many new alerts notified per rule, department and district in a
//! storm window; the alerts beyond a cap are folded into a storm summary (see the module docs
//! of [`crate::lifecycle`]).

use std::collections::HashMap;

use ioc_schemas::{Department, District};

use super::config::LifecycleConfig;
use crate::engine::Verdict;
use crate::model::{Alert, AlertState, Category, Severity};

/// The rule id prefix of storm summaries.
pub const STORM_PREFIX: &str = "storm:";

/// What a storm summary covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum StormScope {
    /// New alerts of one rule.
    Rule(String),
    /// New alerts of one department.
    Department(Department),
    /// New alerts in one district.
    District(District),
}

impl StormScope {
    /// `rule`, `department` or `district`.
    fn kind(&self) -> &'static str {
        match self {
            StormScope::Rule(_) => "rule",
            StormScope::Department(_) => "department",
            StormScope::District(_) => "district",
        }
    }

    /// The rule id, department slug or district slug: the summary's entity.
    pub(super) fn value(&self) -> String {
        match self {
            StormScope::Rule(r) => r.clone(),
            StormScope::Department(d) => d.slug().to_owned(),
            StormScope::District(d) => d.slug().to_owned(),
        }
    }

    /// The summary's rule id: `storm:<kind>:<value>`.
    pub(super) fn rule_id(&self) -> String {
        format!("{STORM_PREFIX}{}:{}", self.kind(), self.value())
    }

    /// The scope of a summary's rule id; `None` for the rule id of any other alert.
    pub(super) fn parse(rule_id: &str) -> Option<StormScope> {
        let rest = rule_id.strip_prefix(STORM_PREFIX)?;
        let (kind, value) = rest.split_once(':')?;
        match kind {
            "rule" => Some(StormScope::Rule(value.to_owned())),
            "department" => Department::from_slug(value).map(StormScope::Department),
            "district" => District::from_slug(value).map(StormScope::District),
            _ => None,
        }
    }

    /// The scope in a summary's message, in Vietnamese.
    fn describe(&self) -> String {
        match self {
            StormScope::Rule(r) => format!("của quy tắc `{r}`"),
            StormScope::Department(d) => format!("của {}", d.name_vi()),
            StormScope::District(d) => format!("tại {}", d.name_vi()),
        }
    }
}

/// The run-time state of a storm summary.
#[derive(Debug, Clone)]
pub(super) struct Summary {
    pub(super) scope: StormScope,
    pub(super) last_fold_ms: u64,
    pub(super) last_notified_ms: u64,
}

/// New alerts counted in the current storm window.
#[derive(Debug, Clone, Default)]
pub(super) struct Storm {
    start_ms: u64,
    per_rule: HashMap<String, u32>,
    per_department: HashMap<Department, u32>,
    per_district: HashMap<District, u32>,
}

impl Storm {
    /// Starts a new window, counting from zero, when the current one is over (or the clock
    /// went back).
    pub(super) fn roll(&mut self, now_ms: u64, window_s: u64) {
        let window_ms = window_s.saturating_mul(1000);
        if now_ms >= self.start_ms.saturating_add(window_ms) || now_ms < self.start_ms {
            *self = Storm {
                start_ms: now_ms,
                ..Storm::default()
            };
        }
    }

    /// The caps a new alert of this verdict would exceed in this window: its rule's, its
    /// department's, its district's, in that order.
    pub(super) fn exceeded(&self, v: &Verdict, config: &LifecycleConfig) -> Vec<StormScope> {
        let mut exceeded = Vec::new();
        if self.per_rule.get(&v.rule_id).copied().unwrap_or(0) >= config.max_per_rule {
            exceeded.push(StormScope::Rule(v.rule_id.clone()));
        }
        if self.per_department.get(&v.department).copied().unwrap_or(0) >= config.max_per_department
        {
            exceeded.push(StormScope::Department(v.department));
        }
        if let Some(d) = v.district {
            if self.per_district.get(&d).copied().unwrap_or(0) >= config.max_per_district {
                exceeded.push(StormScope::District(d));
            }
        }
        exceeded
    }

    /// Counts a new alert that is notified.
    pub(super) fn count(&mut self, v: &Verdict) {
        *self.per_rule.entry(v.rule_id.clone()).or_insert(0) += 1;
        *self.per_department.entry(v.department).or_insert(0) += 1;
        if let Some(d) = v.district {
            *self.per_district.entry(d).or_insert(0) += 1;
        }
    }
}

/// The scopes whose open summary a suppressed alert of this verdict is folded into, in the
/// order they are looked for: its rule's, its department's, its district's.
pub(super) fn scopes_of(v: &Verdict) -> Vec<StormScope> {
    let mut scopes = vec![
        StormScope::Rule(v.rule_id.clone()),
        StormScope::Department(v.department),
    ];
    if let Some(d) = v.district {
        scopes.push(StormScope::District(d));
    }
    scopes
}

/// Folds one more suppressed alert (of this severity) into an open summary's alert: its count
/// (`breaches`, also its value), its severity and its message.
pub(super) fn fold_into(alert: &mut Alert, summary: &mut Summary, severity: Severity, now_ms: u64) {
    alert.breaches = alert.breaches.saturating_add(1);
    alert.severity = alert.severity.max(severity);
    alert.value = Some(f64::from(alert.breaches));
    alert.updated_ms = now_ms;
    alert.message = summary_message(&summary.scope, alert.breaches);
    summary.last_fold_ms = now_ms;
}

/// The alert of a new summary of `scope`, holding the one suppressed alert of `v`: its id,
/// and when it opened (wall time).
pub(super) fn summary_alert(
    scope: &StormScope,
    v: &Verdict,
    id: String,
    opened_ms: u64,
    now_ms: u64,
) -> Alert {
    let district = match scope {
        StormScope::District(d) => Some(*d),
        StormScope::Rule(_) | StormScope::Department(_) => None,
    };
    let department = match scope {
        StormScope::Department(d) => *d,
        StormScope::Rule(_) | StormScope::District(_) => v.department,
    };
    Alert {
        id,
        rule_id: scope.rule_id(),
        entity_id: scope.value(),
        district,
        department,
        category: Category::Storm,
        severity: v.severity,
        state: AlertState::Active,
        message: summary_message(scope, 1),
        value: Some(1.0),
        opened_ms,
        breach_event_ms: v.event_ms,
        updated_ms: now_ms,
        breaches: 1,
        escalations: 0,
        acknowledged: None,
        resolved: None,
        comments: Vec::new(),
        suppressed: false,
    }
}

fn summary_message(scope: &StormScope, folded: u32) -> String {
    format!(
        "Bão cảnh báo: {folded} cảnh báo {} vượt ngưỡng thông báo, gộp vào bản tóm tắt này",
        scope.describe()
    )
}
