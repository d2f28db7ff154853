//! Alert rules: their definition, the TOML file they come from, and validation.
//!
//! A rule file is a list of `[[rule]]` tables (see [`Rule`] for the fields and
//! [`DEFAULT_RULES_TOML`] for the city's default set). The REST API takes the same rule as
//! JSON: the two forms have the same field names and shapes. Everything is validated before it
//! is used, and every error names the rule and the field at fault.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use ioc_schemas::{Department, District, Kind, KpiFamily, Scope};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{kpi_field_known, kpi_field_names, kpi_scopes};
use crate::model::{Category, Severity};

/// The default rule set for Da Nang (`alerts/rules/da_nang.toml`).
pub const DEFAULT_RULES_TOML: &str = include_str!("../rules/da_nang.toml");

/// The hold time a rule gets when it names none, in seconds.
pub const DEFAULT_HOLD_S: i64 = 300;
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

/// Why a rule or a rule file was refused. Permanent: the rule must be fixed; retrying the same
/// input fails the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The text is not TOML, or not a list of `[[rule]]` tables.
    #[error("rules file is not valid: {0}")]
    Syntax(String),
    /// A rule has the wrong shape: an unknown field, a missing one, a value of the wrong type.
    #[error("rule `{rule}`: {reason}")]
    Malformed {
        /// The rule's id, or `#<n>` (1-based position) when it has none.
        rule: String,
        /// What the parser said.
        reason: String,
    },
    /// A field of a rule has a value that is not allowed.
    #[error("rule `{rule}`: {field}: {reason}")]
    Invalid {
        /// The rule's id.
        rule: String,
        /// The field at fault, dotted (`condition.above`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two rules share an id.
    #[error("rule id `{0}` appears twice")]
    Duplicate(String),
    /// No rule has this id.
    #[error("no rule `{0}`")]
    NotFound(String),
    /// The rule cannot be removed: a composite rule combines it.
    #[error("rule `{rule}` cannot be removed: composite rule `{by}` uses it")]
    InUse {
        /// The rule asked to be removed.
        rule: String,
        /// A composite rule that refers to it.
        by: String,
    },
    /// The set could not be written as TOML.
    #[error("rules cannot be written as toml: {0}")]
    Serialize(String),
}

impl RuleError {
    /// Whether retrying may succeed: never, every rule error is permanent.
    pub fn is_retryable(&self) -> bool {
        false
    }

    fn invalid(rule: &str, field: impl Into<String>, reason: impl Into<String>) -> RuleError {
        RuleError::Invalid {
            rule: rule.to_owned(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}

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

/// What a rule watches: one metric of raw readings, or one field of a KPI family.
///
/// Readings: `{ reading = "wind_speed_ms" }`, optionally `kind = "sensor"` to take only that
/// kind's readings (the metric names of [`ioc_schemas::Reading::samples`]: sensor metrics,
/// environment measurements, `vehicles`, `occupancy_pct`, `mean_speed_kmh`,
/// `queue_length_m` and `signal_available` (1 running, 0 faulted, flashing or dark) of junctions,
/// and camera event types whose value is the event's count).
///
/// KPIs: `{ kpi = "air", field = "aqi" }`, optionally `scope = "district"` (the default is the
/// family's device scope, or `district` for camera events). The fields of each family are
/// listed in [`crate::engine`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSource {
    /// The reading metric (snake_case) the rule watches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reading: Option<String>,
    /// With `reading`: only readings of this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// The KPI family the rule watches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kpi: Option<KpiFamily>,
    /// With `kpi`: the field of the family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With `kpi`: the rows' scope (`device`, `district`, `department`, `city`); the family's
    /// first scope when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
}

/// A validated source, as the engine matches it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SourceRef {
    /// A reading metric, of any kind or of one.
    Reading {
        /// The metric.
        metric: String,
        /// Only this kind, if set.
        kind: Option<Kind>,
    },
    /// A KPI field.
    Kpi {
        /// The family.
        family: KpiFamily,
        /// The rows' scope.
        scope: Scope,
        /// The field.
        field: String,
    },
}

impl RuleSource {
    /// What it refers to, once validated; `None` when it is not a valid source.
    pub fn resolve(&self) -> Option<SourceRef> {
        match (&self.reading, &self.kpi, &self.field) {
            (Some(metric), None, None) if self.scope.is_none() => Some(SourceRef::Reading {
                metric: metric.clone(),
                kind: self.kind,
            }),
            (None, Some(family), Some(field)) if self.kind.is_none() => {
                let scope = self
                    .scope
                    .or_else(|| kpi_scopes(*family).first().copied())?;
                Some(SourceRef::Kpi {
                    family: *family,
                    scope,
                    field: field.clone(),
                })
            }
            _ => None,
        }
    }

    fn validate(&self, rule: &str) -> Result<(), RuleError> {
        let bad = |field: &str, reason: String| Err(RuleError::invalid(rule, field, reason));
        match (&self.reading, &self.kpi) {
            (Some(_), Some(_)) => bad(
                "source",
                "give either `reading` or `kpi`, not both".to_owned(),
            ),
            (None, None) => bad("source", "give `reading` or `kpi`".to_owned()),
            (Some(metric), None) => {
                if self.field.is_some() {
                    return bad("source.field", "only a `kpi` source has a field".to_owned());
                }
                if self.scope.is_some() {
                    return bad("source.scope", "only a `kpi` source has a scope".to_owned());
                }
                if !is_snake_name(metric) {
                    return bad(
                        "source.reading",
                        format!("`{metric}` must be 1 to 64 characters of a-z, 0-9 and `_`"),
                    );
                }
                Ok(())
            }
            (None, Some(family)) => {
                if self.kind.is_some() {
                    return bad(
                        "source.kind",
                        "only a `reading` source has a kind".to_owned(),
                    );
                }
                let scopes = kpi_scopes(*family);
                let scope = match self.scope {
                    Some(s) if scopes.contains(&s) => s,
                    Some(s) => {
                        let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
                        return bad(
                            "source.scope",
                            format!(
                                "the {} family has no {} rows; use {}",
                                family.as_str(),
                                s.as_str(),
                                names.join(", ")
                            ),
                        );
                    }
                    None => match scopes.first() {
                        Some(s) => *s,
                        None => return bad("source.kpi", "family has no rows".to_owned()),
                    },
                };
                let Some(field) = &self.field else {
                    return bad("source.field", "a `kpi` source needs a field".to_owned());
                };
                if !kpi_field_known(*family, scope, field) {
                    return bad(
                        "source.field",
                        format!(
                            "the {} family ({} scope) has no field `{field}`; its fields: {}",
                            family.as_str(),
                            scope.as_str(),
                            kpi_field_names(*family, scope)
                        ),
                    );
                }
                Ok(())
            }
        }
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
    /// Checks every field of the rule on its own (references to other rules are checked by
    /// [`RuleSet`]), naming the first that is wrong.
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

    fn validate_condition(&self) -> Result<(), RuleError> {
        let id = self.id.as_str();
        let bad = |field: &str, reason: String| Err(RuleError::invalid(id, field, reason));
        let needs_source = matches!(
            self.condition,
            Condition::Threshold { .. } | Condition::RateOfChange { .. }
        );
        match (&self.source, needs_source) {
            (Some(source), true) => source.validate(id)?,
            (None, true) => {
                return bad(
                    "source",
                    format!("a {} rule needs a source", self.condition.type_name()),
                )
            }
            (Some(_), false) => {
                return bad(
                    "source",
                    format!(
                        "a {} rule takes no source{}",
                        self.condition.type_name(),
                        if matches!(self.condition, Condition::Absence { .. }) {
                            " (it watches the device health rows)"
                        } else {
                            " (its inputs are other rules)"
                        }
                    ),
                )
            }
            (None, false) => {}
        }
        match &self.condition {
            Condition::Threshold {
                above,
                below,
                clear,
            } => {
                let level = match (above, below) {
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
                    (Some(a), None) => ("condition.above", *a),
                    (None, Some(b)) => ("condition.below", *b),
                };
                if !level.1.is_finite() {
                    return bad(level.0, "must be a finite number".to_owned());
                }
                if let Some(c) = clear {
                    if !c.is_finite() {
                        return bad("condition.clear", "must be a finite number".to_owned());
                    }
                    if above.is_some_and(|a| *c > a) {
                        return bad(
                            "condition.clear",
                            format!("{c} must be at most `above` ({})", level.1),
                        );
                    }
                    if below.is_some_and(|b| *c < b) {
                        return bad(
                            "condition.clear",
                            format!("{c} must be at least `below` ({})", level.1),
                        );
                    }
                }
            }
            Condition::RateOfChange {
                over_s,
                rise_above,
                fall_below,
            } => {
                check_duration(id, "condition.over_s", *over_s, false)?;
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
                    (Some(r), None) => ("condition.rise_above", *r),
                    (None, Some(f)) => ("condition.fall_below", *f),
                };
                if !v.is_finite() {
                    return bad(
                        field,
                        "must be a finite number (change per hour)".to_owned(),
                    );
                }
            }
            Condition::Absence { intervals } => {
                if !(intervals.is_finite() && *intervals > 0.0 && *intervals <= 1000.0) {
                    return bad(
                        "condition.intervals",
                        format!("{intervals} must be above 0 and at most 1000"),
                    );
                }
            }
            Condition::Composite { of, scope, .. } => {
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
                        "a composite rule spans devices of several owners; name a department"
                            .to_owned(),
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
            }
        }
        Ok(())
    }

    /// Parses one rule from its JSON form (what the REST API receives) and validates it on
    /// its own; [`RuleSet::upsert`] then checks it against the set.
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

    /// The ids of the rules a composite rule combines (empty for other rules).
    pub fn inputs(&self) -> &[String] {
        match &self.condition {
            Condition::Composite { of, .. } => of,
            _ => &[],
        }
    }
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

fn is_snake_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The file form: `[[rule]]` tables.
#[derive(Serialize)]
struct RuleFile<'a> {
    rule: &'a [Rule],
}

/// A validated set of rules: distinct ids, every rule valid, composites referring to rules of
/// the set without cycles. Kept in file order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RuleSet {
    #[serde(rename = "rule")]
    rules: Vec<Rule>,
}

impl RuleSet {
    /// An empty set.
    pub fn empty() -> RuleSet {
        RuleSet::default()
    }

    /// The city's default set ([`DEFAULT_RULES_TOML`]).
    pub fn da_nang() -> Result<RuleSet, RuleError> {
        RuleSet::from_toml(DEFAULT_RULES_TOML)
    }

    /// Parses and validates a rules file: `[[rule]]` tables and nothing else.
    pub fn from_toml(text: &str) -> Result<RuleSet, RuleError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| RuleError::Syntax(e.to_string().trim().to_owned()))?;
        let mut rules = Vec::new();
        for (key, value) in table {
            if key != "rule" {
                return Err(RuleError::Syntax(format!(
                    "unknown top-level key `{key}`; a rules file holds `[[rule]]` tables"
                )));
            }
            let toml::Value::Array(items) = value else {
                return Err(RuleError::Syntax(
                    "`rule` must be an array of tables (`[[rule]]`)".to_owned(),
                ));
            };
            for (i, item) in items.into_iter().enumerate() {
                let label = item
                    .get("id")
                    .and_then(|v| v.as_str())
                    .map_or_else(|| format!("#{}", i + 1), str::to_owned);
                let rule: Rule =
                    item.try_into()
                        .map_err(|e: toml::de::Error| RuleError::Malformed {
                            rule: label,
                            reason: e.message().trim().to_owned(),
                        })?;
                rules.push(rule);
            }
        }
        RuleSet::from_rules(rules)
    }

    /// Validates a list of rules (from JSON, say) into a set.
    pub fn from_rules(rules: Vec<Rule>) -> Result<RuleSet, RuleError> {
        let set = RuleSet { rules };
        set.validate()?;
        Ok(set)
    }

    /// Writes the set as a rules file (`[[rule]]` tables); [`RuleSet::from_toml`] reads it
    /// back to an equal set. Comments of the original file are not kept.
    pub fn to_toml(&self) -> Result<String, RuleError> {
        toml::to_string(&RuleFile { rule: &self.rules })
            .map_err(|e| RuleError::Serialize(e.to_string()))
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with this id.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// How many rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Adds a rule, or replaces the one with its id (in place). Validated against the whole
    /// set; on error the set is unchanged. Returns the rule replaced, if any.
    pub fn upsert(&mut self, rule: Rule) -> Result<Option<Rule>, RuleError> {
        let mut next = self.rules.clone();
        let old = match next.iter_mut().find(|r| r.id == rule.id) {
            Some(slot) => Some(std::mem::replace(slot, rule)),
            None => {
                next.push(rule);
                None
            }
        };
        let candidate = RuleSet { rules: next };
        candidate.validate()?;
        *self = candidate;
        Ok(old)
    }

    /// Adds a new rule; refused if its id is taken.
    pub fn insert(&mut self, rule: Rule) -> Result<(), RuleError> {
        if self.get(&rule.id).is_some() {
            return Err(RuleError::Duplicate(rule.id));
        }
        self.upsert(rule).map(|_| ())
    }

    /// Replaces an existing rule; refused if no rule has its id. Returns the old rule.
    pub fn replace(&mut self, rule: Rule) -> Result<Rule, RuleError> {
        if self.get(&rule.id).is_none() {
            return Err(RuleError::NotFound(rule.id));
        }
        self.upsert(rule)?
            .ok_or_else(|| RuleError::NotFound(String::new()))
    }

    /// Removes a rule; refused if it does not exist or a composite rule uses it.
    pub fn remove(&mut self, id: &str) -> Result<Rule, RuleError> {
        let Some(i) = self.rules.iter().position(|r| r.id == id) else {
            return Err(RuleError::NotFound(id.to_owned()));
        };
        if let Some(by) = self
            .rules
            .iter()
            .find(|r| r.inputs().iter().any(|input| input == id))
        {
            return Err(RuleError::InUse {
                rule: id.to_owned(),
                by: by.id.clone(),
            });
        }
        Ok(self.rules.remove(i))
    }

    /// Checks every rule, distinct ids, composite references and cycles.
    fn validate(&self) -> Result<(), RuleError> {
        let mut ids = BTreeSet::new();
        for rule in &self.rules {
            rule.validate()?;
            if !ids.insert(rule.id.as_str()) {
                return Err(RuleError::Duplicate(rule.id.clone()));
            }
        }
        for rule in &self.rules {
            let on_devices = matches!(
                rule.condition,
                Condition::Composite {
                    scope: CompositeScope::Devices(_),
                    ..
                }
            );
            for input in rule.inputs() {
                let Some(input_rule) = self.get(input) else {
                    return Err(RuleError::invalid(
                        &rule.id,
                        "condition.of",
                        format!("no rule `{input}` in the set"),
                    ));
                };
                if on_devices && !input_rule.inputs().is_empty() {
                    return Err(RuleError::invalid(
                        &rule.id,
                        "condition.of",
                        format!(
                            "a `devices` composite combines rules about devices; `{input}` is a composite rule"
                        ),
                    ));
                }
            }
        }
        self.check_cycles()
    }

    /// Depth-first search over composite references; reports the first cycle found.
    fn check_cycles(&self) -> Result<(), RuleError> {
        let inputs: BTreeMap<&str, &[String]> = self
            .rules
            .iter()
            .map(|r| (r.id.as_str(), r.inputs()))
            .collect();
        // 0 unvisited, 1 on the path, 2 done.
        let mut mark: BTreeMap<&str, u8> = BTreeMap::new();
        for start in inputs.keys() {
            if mark.get(start).copied().unwrap_or(0) != 0 {
                continue;
            }
            // Stack of (rule, next input index); `path` mirrors it for the message.
            let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
            mark.insert(start, 1);
            while let Some((node, next)) = stack.last_mut() {
                let node_inputs = inputs.get(*node).copied().unwrap_or(&[]);
                if let Some(child) = node_inputs.get(*next) {
                    *next += 1;
                    let child = child.as_str();
                    match mark.get(child).copied().unwrap_or(0) {
                        0 => {
                            mark.insert(child, 1);
                            stack.push((child, 0));
                        }
                        1 => {
                            let from = stack.iter().position(|(n, _)| *n == child).unwrap_or(0);
                            let mut path: Vec<&str> =
                                stack.iter().skip(from).map(|(n, _)| *n).collect();
                            path.push(child);
                            return Err(RuleError::invalid(
                                child,
                                "condition.of",
                                format!("composite rules form a cycle: {}", path.join(" -> ")),
                            ));
                        }
                        _ => {}
                    }
                } else {
                    mark.insert(node, 2);
                    stack.pop();
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str) -> Rule {
        Rule {
            id: id.to_owned(),
            name: "Gió mạnh trên cầu".to_owned(),
            enabled: true,
            raises_alerts: true,
            severity: Severity::Major,
            category: Category::Structure,
            department: RuleDepartment::Fixed(Department::Construction),
            source: Some(RuleSource {
                reading: Some("wind_speed_ms".to_owned()),
                kind: Some(Kind::Sensor),
                ..RuleSource::default()
            }),
            condition: Condition::Threshold {
                above: Some(25.0),
                below: None,
                clear: Some(20.0),
            },
            for_s: 0,
            hold_s: 300,
            escalate_after_s: Some(900),
            clear_after_s: None,
            districts: vec![],
            devices: vec![],
            message: "Gió {value} m/s tại {entity}".to_owned(),
        }
    }

    fn composite(id: &str, of: &[&str]) -> Rule {
        Rule {
            source: None,
            condition: Condition::Composite {
                op: CompositeOp::All,
                of: of.iter().map(|s| (*s).to_owned()).collect(),
                scope: CompositeScope::District,
            },
            ..rule(id)
        }
    }

    #[test]
    fn the_default_set_parses_validates_and_round_trips() {
        let set = RuleSet::da_nang().unwrap();
        assert!(set.len() >= 8, "{}", set.len());
        for id in [
            "aqi_bad",
            "pm25_hourly_high",
            "congestion_e_f",
            "signal_fault",
            "flood_warning",
            "bridge_wind_high",
            "crowd_gathering",
            "device_offline",
        ] {
            assert!(set.get(id).is_some(), "missing {id}");
        }
        let text = set.to_toml().unwrap();
        assert_eq!(RuleSet::from_toml(&text).unwrap(), set);
        // JSON is the same form: each rule round-trips through it.
        for r in set.rules() {
            let json = serde_json::to_string(r).unwrap();
            let back: Rule = serde_json::from_str(&json).unwrap();
            assert_eq!(&back, r);
        }
    }

    #[test]
    fn toml_and_json_read_the_same_rule() {
        let toml_text = r#"
            [[rule]]
            id = "wind"
            name = "Gió mạnh"
            severity = "major"
            category = "structure"
            department = "owner"
            source = { reading = "wind_speed_ms", kind = "sensor" }
            condition = { type = "threshold", above = 25, clear = 20 }
            hold_s = 600
            message = "Gió {value} m/s tại {entity}"
        "#;
        let json_text = r#"{
            "id": "wind", "name": "Gió mạnh", "severity": "major", "category": "structure",
            "department": "owner",
            "source": {"reading": "wind_speed_ms", "kind": "sensor"},
            "condition": {"type": "threshold", "above": 25, "clear": 20},
            "hold_s": 600, "message": "Gió {value} m/s tại {entity}"
        }"#;
        let from_toml = RuleSet::from_toml(toml_text).unwrap();
        let from_json: Rule = serde_json::from_str(json_text).unwrap();
        assert_eq!(from_toml.rules(), std::slice::from_ref(&from_json));
        assert!(from_json.enabled && from_json.raises_alerts);
        assert_eq!(from_json.for_s, 0);
        assert_eq!(from_json.department, RuleDepartment::Owner);
    }

    #[test]
    fn errors_name_the_rule_and_the_field() {
        type Breaks = fn(&mut Rule);
        let cases: [(&str, Breaks); 16] = [
            ("id", |r| r.id = "Bad Id".into()),
            ("name", |r| r.name = " ".into()),
            ("category", |r| r.category = Category::Storm),
            ("for_s", |r| r.for_s = -5),
            ("hold_s", |r| r.hold_s = -1),
            ("escalate_after_s", |r| r.escalate_after_s = Some(0)),
            ("message", |r| r.message = "{valeur}".into()),
            ("message", |r| r.message = "{value".into()),
            ("source", |r| r.source = None),
            ("source.field", |r| {
                r.source = Some(RuleSource {
                    kpi: Some(KpiFamily::Air),
                    field: Some("aqii".into()),
                    ..RuleSource::default()
                })
            }),
            ("source.scope", |r| {
                r.source = Some(RuleSource {
                    kpi: Some(KpiFamily::Air),
                    field: Some("aqi".into()),
                    scope: Some(Scope::City),
                    ..RuleSource::default()
                })
            }),
            ("source", |r| {
                r.source = Some(RuleSource {
                    reading: Some("x".into()),
                    kpi: Some(KpiFamily::Air),
                    ..RuleSource::default()
                })
            }),
            ("condition.above", |r| {
                r.condition = Condition::Threshold {
                    above: Some(1.0),
                    below: Some(0.0),
                    clear: None,
                }
            }),
            ("condition.clear", |r| {
                r.condition = Condition::Threshold {
                    above: Some(1.0),
                    below: None,
                    clear: Some(2.0),
                }
            }),
            ("condition.over_s", |r| {
                r.condition = Condition::RateOfChange {
                    over_s: -60,
                    rise_above: Some(1.0),
                    fall_below: None,
                }
            }),
            ("condition.intervals", |r| {
                r.source = None;
                r.condition = Condition::Absence { intervals: 0.0 }
            }),
        ];
        for (field, break_it) in cases {
            let mut r = rule("wind");
            break_it(&mut r);
            let rule_id = r.id.clone();
            match r.validate() {
                Err(RuleError::Invalid { rule, field: f, .. }) => {
                    assert_eq!((rule.as_str(), f.as_str()), (rule_id.as_str(), field));
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_fields_and_bad_types_name_the_rule() {
        let text = r#"
            [[rule]]
            id = "wind"
            name = "x"
            severity = "major"
            category = "structure"
            department = "construction"
            source = { reading = "wind_speed_ms" }
            condition = { type = "threshold", above = 25 }
            message = "x"
            colour = "red"
        "#;
        let e = RuleSet::from_toml(text).unwrap_err();
        assert!(
            matches!(&e, RuleError::Malformed { rule, reason } if rule == "wind" && reason.contains("colour")),
            "{e}"
        );
        let e =
            RuleSet::from_toml(&text.replace("colour = \"red\"", "department2 = 1")).unwrap_err();
        assert!(e.to_string().starts_with("rule `wind`:"), "{e}");
        let e = RuleSet::from_toml(
            &text
                .replace("\"construction\"", "\"roads\"")
                .replace("colour = \"red\"", ""),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown department `roads`"), "{e}");
        let e = RuleSet::from_toml(
            &text
                .replace("colour = \"red\"", "")
                .replace("above = 25", "above = 25, below = 3, hysteresis = 1"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("hysteresis"), "{e}");
        let e = RuleSet::from_toml("[rules]\nx = 1").unwrap_err();
        assert!(matches!(e, RuleError::Syntax(_)), "{e}");
        let e = RuleSet::from_toml("[[rule]\n").unwrap_err();
        assert!(matches!(e, RuleError::Syntax(_)), "{e}");
    }

    #[test]
    fn sets_refuse_duplicates_missing_inputs_and_cycles() {
        let e = RuleSet::from_rules(vec![rule("a"), rule("a")]).unwrap_err();
        assert_eq!(e, RuleError::Duplicate("a".into()));

        let e = RuleSet::from_rules(vec![rule("a"), composite("c", &["a", "zz"])]).unwrap_err();
        assert!(
            matches!(&e, RuleError::Invalid { rule, field, reason } if rule == "c" && field == "condition.of" && reason.contains("zz")),
            "{e}"
        );

        let e = RuleSet::from_rules(vec![
            rule("a"),
            composite("c1", &["a", "c2"]),
            composite("c2", &["c1"]),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("cycle"), "{e}");
        assert!(
            e.to_string().contains("c1 -> c2 -> c1") || e.to_string().contains("c2 -> c1 -> c2"),
            "{e}"
        );

        // Nested composites without a cycle are fine.
        RuleSet::from_rules(vec![
            rule("a"),
            rule("b"),
            composite("c1", &["a", "b"]),
            composite("c2", &["c1", "a"]),
        ])
        .unwrap();
    }

    #[test]
    fn single_rule_changes_are_validated_and_atomic() {
        let mut set = RuleSet::from_rules(vec![rule("a"), rule("b")]).unwrap();
        set.insert(composite("c", &["a", "b"])).unwrap();
        assert_eq!(
            set.insert(rule("a")).unwrap_err(),
            RuleError::Duplicate("a".into())
        );
        assert_eq!(
            set.replace(rule("zz")).unwrap_err(),
            RuleError::NotFound("zz".into())
        );
        let mut changed = rule("a");
        changed.severity = Severity::Critical;
        let old = set.replace(changed).unwrap();
        assert_eq!(old.severity, Severity::Major);
        assert_eq!(set.get("a").map(|r| r.severity), Some(Severity::Critical));
        assert_eq!(set.rules()[0].id, "a", "replaced in place");

        // An invalid rule leaves the set as it was.
        let before = set.clone();
        let mut broken = rule("b");
        broken.for_s = -1;
        assert!(set.upsert(broken).is_err());
        assert_eq!(set, before);
        // A composite that would form a cycle is refused too.
        assert!(set.upsert(composite("a", &["c"])).is_err());
        assert_eq!(set, before);

        assert_eq!(
            set.remove("a").unwrap_err(),
            RuleError::InUse {
                rule: "a".into(),
                by: "c".into()
            }
        );
        set.remove("c").unwrap();
        set.remove("a").unwrap();
        assert_eq!(
            set.remove("a").unwrap_err(),
            RuleError::NotFound("a".into())
        );
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn rules_parse_from_json_and_have_a_schema() {
        let json = serde_json::to_string(&rule("wind")).unwrap();
        assert_eq!(Rule::from_json(&json).unwrap(), rule("wind"));
        let e = Rule::from_json(&json.replace("\"hold_s\":300", "\"hold_s\":-3")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "rule `wind`: hold_s: -3 s must be 0 to 604800 seconds"
        );
        let e = Rule::from_json(&json.replace("\"message\"", "\"mesage\"")).unwrap_err();
        assert!(
            matches!(&e, RuleError::Malformed { rule, reason } if rule == "wind" && reason.contains("mesage")),
            "{e}"
        );
        assert!(matches!(
            Rule::from_json("{"),
            Err(RuleError::Malformed { .. })
        ));
        let schema = serde_json::to_string(&schemars::schema_for!(Rule)).unwrap();
        for word in [
            "condition",
            "rate_of_change",
            "composite",
            "department",
            "hold_s",
        ] {
            assert!(schema.contains(word), "{word}");
        }
    }

    #[test]
    fn kpi_sources_default_to_the_family_scope() {
        let s = RuleSource {
            kpi: Some(KpiFamily::Camera),
            field: Some("events.crowd_gathering".into()),
            ..RuleSource::default()
        };
        assert_eq!(
            s.resolve(),
            Some(SourceRef::Kpi {
                family: KpiFamily::Camera,
                scope: Scope::District,
                field: "events.crowd_gathering".into()
            })
        );
        s.validate("x").unwrap();
        let t = RuleSource {
            kpi: Some(KpiFamily::Traffic),
            field: Some("level".into()),
            scope: Some(Scope::District),
            ..RuleSource::default()
        };
        t.validate("x").unwrap();
    }
}
