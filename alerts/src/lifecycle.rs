//! The alert lifecycle: one open alert per (rule, entity), hold time, escalation, storm control.
//!
//! [`AlertBook::apply`] turns the engine's [`Verdict`]s into alerts and [`AlertEvent`]s:
//!
//! - **One open alert per (rule, entity).** A breach with no open alert opens one (`opened`);
//!   a repeat breach updates it (`updated`: the breach count, the value and the message),
//!   never a second one. Updates are coalesced: at most one `updated` event per alert every
//!   [`LifecycleConfig::update_event_every_s`]; the count keeps growing in between and the
//!   next event (or [`AlertBook::tick`]) carries it.
//! - **States** active → acknowledged → resolved ([`AlertBook::acknowledge`],
//!   [`AlertBook::resolve`]); comments at any time ([`AlertBook::comment`]).
//! - **Auto-resolve with a hold time.** When the condition clears, the alert resolves by
//!   itself (`resolved`, by `auto`) once the clear has lasted the rule's `hold_s` of event time,
//!   which also means it stayed open at least that long. A breach in between cancels the
//!   clear and keeps the same alert, so a flapping value gives one alert, not dozens. Event
//!   time is the newest verdict's event time (or [`AlertBook::advance_event_time`]); when
//!   verdicts stop coming, the hold also runs out on the wall clock ([`AlertBook::tick`]).
//! - **Escalation.** An alert still `active` (not acknowledged) `escalate_after_s` after it
//!   opened is raised one severity step and notified again (`escalated`); again after each
//!   further period, at most [`LifecycleConfig::max_escalations`] times. Driven by `tick`
//!   (wall time).
//! - **Storm control.** Within a storm window, at most `max_per_rule`, `max_per_department`
//!   and `max_per_district` new alerts are notified. A new alert beyond a cap is kept and
//!   listed but marked `suppressed` (one `suppressed` event, not notified; its later
//!   transitions are not notified either, and it does not escalate) and folded into a storm
//!   summary: an alert of category `storm`, rule `storm:<scope>:<value>` (`storm:rule:<rule
//!   id>`, `storm:department:<slug>` or `storm:district:<slug>`), entity `<value>`. The
//!   summary of the first cap exceeded is opened and notified once; later suppressed alerts of
//!   any of its scopes are folded into the open summary (its `breaches` counts the alerts
//!   folded), and its update is notified at most every
//!   [`LifecycleConfig::summary_update_every_s`]. It resolves by itself once nothing was
//!   folded into it for [`LifecycleConfig::summary_hold_s`].
//! - **Events.** Every transition is an [`AlertEvent`] whose id is `<alert id>:<n>`, where `n`
//!   is computed from the alert (breaches + escalations + comments + acknowledged + resolved):
//!   it grows with every event, so ids are unique and stay so after a restart, provided the
//!   alert of every event is persisted.
//! - **Restart.** [`AlertBook::from_alerts`] rebuilds the book from the persisted alerts: a
//!   breach after the restart updates the still-open alert, acknowledgements are kept. The
//!   engine restarts with unknown states and sends a clear verdict on the first clear
//!   observation, so an alert whose condition cleared while the process was down resolves
//!   (after its hold). Call [`AlertBook::set_rule_timings`] so escalation resumes before the
//!   next verdict.
//! - **Bounded memory.** Resolved alerts stay listed for [`LifecycleConfig::keep_resolved_s`]
//!   and at most [`LifecycleConfig::max_resolved`] of them (oldest dropped first); they remain
//!   in ClickHouse. Open alerts are bounded by the rules' entities.

use std::collections::{BTreeSet, HashMap, VecDeque};

use ioc_schemas::{Department, District};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::Verdict;
use crate::model::{Alert, AlertEvent, AlertState, Category, Comment, Severity, Transition};
use crate::rules::RuleSet;

/// The actor of events the lifecycle makes by itself.
pub const SYSTEM_ACTOR: &str = "system";
/// Who resolved an alert whose condition cleared.
pub const AUTO_RESOLVER: &str = "auto";
/// The rule id prefix of storm summaries.
pub const STORM_PREFIX: &str = "storm:";
/// The longest comment, in bytes.
pub const MAX_COMMENT_BYTES: usize = 4000;
/// The longest actor name, in bytes.
pub const MAX_ACTOR_BYTES: usize = 128;

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

/// Why an operator's action was refused. Permanent: repeating it fails the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    /// No alert has this id (or it was resolved long ago and dropped from memory).
    #[error("no alert `{0}`")]
    NotFound(String),
    /// The alert is resolved: it cannot be acknowledged or resolved again.
    #[error("alert `{0}` is already resolved")]
    AlreadyResolved(String),
    /// The alert is already acknowledged.
    #[error("alert `{0}` is already acknowledged")]
    AlreadyAcknowledged(String),
    /// The actor's name is blank or too long.
    #[error("invalid actor: must be 1 to {MAX_ACTOR_BYTES} bytes and not blank")]
    InvalidActor,
    /// The comment is blank or too long.
    #[error("invalid comment: must be 1 to {MAX_COMMENT_BYTES} bytes and not blank")]
    InvalidComment,
}

impl LifecycleError {
    /// Whether retrying may succeed: never.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// What a storm summary covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum StormScope {
    Rule(String),
    Department(Department),
    District(District),
}

impl StormScope {
    fn kind(&self) -> &'static str {
        match self {
            StormScope::Rule(_) => "rule",
            StormScope::Department(_) => "department",
            StormScope::District(_) => "district",
        }
    }

    fn value(&self) -> String {
        match self {
            StormScope::Rule(r) => r.clone(),
            StormScope::Department(d) => d.slug().to_owned(),
            StormScope::District(d) => d.slug().to_owned(),
        }
    }

    fn rule_id(&self) -> String {
        format!("{STORM_PREFIX}{}:{}", self.kind(), self.value())
    }

    fn parse(rule_id: &str) -> Option<StormScope> {
        let rest = rule_id.strip_prefix(STORM_PREFIX)?;
        let (kind, value) = rest.split_once(':')?;
        match kind {
            "rule" => Some(StormScope::Rule(value.to_owned())),
            "department" => Department::from_slug(value).map(StormScope::Department),
            "district" => District::from_slug(value).map(StormScope::District),
            _ => None,
        }
    }

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
struct Summary {
    scope: StormScope,
    last_fold_ms: u64,
    last_notified_ms: u64,
}

/// An alert and what the lifecycle needs beside it.
#[derive(Debug, Clone)]
struct Entry {
    alert: Alert,
    hold_s: Option<u64>,
    escalate_after_s: Option<u64>,
    /// A pending clear: (event-time due, wall-time due).
    clear: Option<(u64, u64)>,
    /// Wall time of the last `updated` event.
    last_update_event_ms: u64,
    /// Changed since its last event.
    unsent: bool,
    summary: Option<Summary>,
}

impl Entry {
    fn new(alert: Alert) -> Entry {
        let summary = StormScope::parse(&alert.rule_id).map(|scope| Summary {
            scope,
            last_fold_ms: alert.updated_ms,
            last_notified_ms: alert.updated_ms,
        });
        Entry {
            last_update_event_ms: alert.updated_ms,
            alert,
            hold_s: None,
            escalate_after_s: None,
            clear: None,
            unsent: false,
            summary,
        }
    }
}

/// New alerts counted in the current storm window.
#[derive(Debug, Clone, Default)]
struct Storm {
    start_ms: u64,
    per_rule: HashMap<String, u32>,
    per_department: HashMap<Department, u32>,
    per_district: HashMap<District, u32>,
}

/// Every alert in memory and the lifecycle rules over them. See the module docs.
#[derive(Debug)]
pub struct AlertBook {
    config: LifecycleConfig,
    entries: HashMap<String, Entry>,
    open: HashMap<(String, String), String>,
    resolved: VecDeque<(u64, String)>,
    due_event: BTreeSet<(u64, String)>,
    due_wall: BTreeSet<(u64, String)>,
    event_clock_ms: u64,
    storm: Storm,
    timings: HashMap<String, (u64, Option<u64>)>,
}

/// The sequence number of an alert's next event id: grows with every event.
/// The event an alert's latest transition carried (its id, transition and time), for a
/// client that starts from the alerts open now, those restored from an earlier run included.
/// Never notified again.
pub fn latest_event(alert: &Alert) -> AlertEvent {
    let (transition, actor) = match (&alert.resolved, &alert.acknowledged) {
        (Some((by, _)), _) => (Transition::Resolved, by.clone()),
        (None, Some((by, _))) => (Transition::Acknowledged, by.clone()),
        (None, None) if alert.escalations > 0 => (Transition::Escalated, SYSTEM_ACTOR.to_owned()),
        (None, None) if alert.breaches > 1 => (Transition::Updated, SYSTEM_ACTOR.to_owned()),
        (None, None) if alert.suppressed => (Transition::Suppressed, SYSTEM_ACTOR.to_owned()),
        (None, None) => (Transition::Opened, SYSTEM_ACTOR.to_owned()),
    };
    AlertEvent {
        event_id: format!("{}:{}", alert.id, sequence(alert)),
        alert: alert.clone(),
        transition,
        at_ms: alert.updated_ms,
        actor,
        notify: false,
    }
}

fn sequence(a: &Alert) -> u64 {
    u64::from(a.breaches)
        + u64::from(a.escalations)
        + a.comments.len() as u64
        + u64::from(a.acknowledged.is_some())
        + u64::from(a.resolved.is_some())
}

fn valid_actor(actor: &str) -> Result<(), LifecycleError> {
    if actor.trim().is_empty() || actor.len() > MAX_ACTOR_BYTES {
        return Err(LifecycleError::InvalidActor);
    }
    Ok(())
}

impl AlertBook {
    /// An empty book.
    pub fn new(config: LifecycleConfig) -> AlertBook {
        AlertBook {
            config,
            entries: HashMap::new(),
            open: HashMap::new(),
            resolved: VecDeque::new(),
            due_event: BTreeSet::new(),
            due_wall: BTreeSet::new(),
            event_clock_ms: 0,
            storm: Storm::default(),
            timings: HashMap::new(),
        }
    }

    /// Rebuilds a book from persisted alerts (after a restart). Open alerts become the open
    /// alert of their (rule, entity) again, acknowledgements and comments are kept, storm
    /// summaries keep folding. If two open alerts share a (rule, entity), the newest is the one
    /// updated from now on (and a warning is logged).
    pub fn from_alerts(
        alerts: impl IntoIterator<Item = Alert>,
        config: LifecycleConfig,
    ) -> AlertBook {
        let mut book = AlertBook::new(config);
        let mut resolved = Vec::new();
        for alert in alerts {
            let id = alert.id.clone();
            if alert.state.is_open() {
                let key = (alert.rule_id.clone(), alert.entity_id.clone());
                let newer = match book
                    .open
                    .get(&key)
                    .and_then(|other| book.entries.get(other))
                {
                    Some(other) => {
                        tracing::warn!(
                            rule = %key.0,
                            entity = %key.1,
                            "two open alerts for one (rule, entity) in the persisted alerts"
                        );
                        (alert.opened_ms, &alert.id) > (other.alert.opened_ms, &other.alert.id)
                    }
                    None => true,
                };
                if newer {
                    book.open.insert(key, id.clone());
                }
            } else {
                let at = alert.resolved.as_ref().map_or(alert.updated_ms, |r| r.1);
                resolved.push((at, id.clone()));
            }
            book.entries.insert(id, Entry::new(alert));
        }
        resolved.sort();
        book.resolved = resolved.into();
        book
    }

    /// The settings.
    pub fn config(&self) -> &LifecycleConfig {
        &self.config
    }

    /// Changes the settings (caps take effect in the current window).
    pub fn set_config(&mut self, config: LifecycleConfig) {
        self.config = config;
    }

    /// Tells the book each rule's hold and escalation delay, for alerts rebuilt after a restart
    /// (verdicts carry them otherwise). Call after [`AlertBook::from_alerts`] and after each
    /// rule change.
    pub fn set_rule_timings(&mut self, rules: &RuleSet) {
        self.timings = rules
            .rules()
            .iter()
            .map(|r| {
                let hold = u64::try_from(r.hold_s).unwrap_or(0);
                let escalate = r.escalate_after_s.and_then(|s| u64::try_from(s).ok());
                (r.id.clone(), (hold, escalate))
            })
            .collect();
    }

    /// The alert with this id, if in memory.
    pub fn get(&self, id: &str) -> Option<&Alert> {
        self.entries.get(id).map(|e| &e.alert)
    }

    /// The open alert of a (rule, entity), if any.
    pub fn open_alert(&self, rule_id: &str, entity_id: &str) -> Option<&Alert> {
        self.open
            .get(&(rule_id.to_owned(), entity_id.to_owned()))
            .and_then(|id| self.get(id))
    }

    /// The alerts matching a filter, newest (by opening time) first, at most `filter.limit`.
    pub fn list(&self, filter: &AlertFilter) -> Vec<Alert> {
        let mut found: Vec<&Alert> = self
            .entries
            .values()
            .map(|e| &e.alert)
            .filter(|a| filter.matches(a))
            .collect();
        found.sort_by(|a, b| b.opened_ms.cmp(&a.opened_ms).then_with(|| b.id.cmp(&a.id)));
        if let Some(limit) = filter.limit {
            found.truncate(limit);
        }
        found.into_iter().cloned().collect()
    }

    /// Every alert in memory, in no order (for a snapshot).
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> + '_ {
        self.entries.values().map(|e| &e.alert)
    }

    /// How many alerts are in memory.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many alerts are open.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Applies the engine's verdicts in order; see [`AlertBook::apply`].
    pub fn apply_all(
        &mut self,
        verdicts: impl IntoIterator<Item = Verdict>,
        now_ms: u64,
    ) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        for v in verdicts {
            events.extend(self.apply(v, now_ms));
        }
        events
    }

    /// Applies one verdict at wall time `now_ms`: opens an alert (or suppresses it and folds it
    /// into a storm summary), updates the open one, or starts its hold before auto-resolving.
    /// Also resolves alerts whose hold ran out by the verdict's event time.
    pub fn apply(&mut self, verdict: Verdict, now_ms: u64) -> Vec<AlertEvent> {
        self.timings.insert(
            verdict.rule_id.clone(),
            (verdict.hold_s, verdict.escalate_after_s),
        );
        let mut events = self.advance_event_time(verdict.event_ms, now_ms);
        let key = (verdict.rule_id.clone(), verdict.entity_id.clone());
        let open_id = self.open.get(&key).cloned();
        match (open_id, verdict.breached) {
            (Some(id), true) => self.update(&id, verdict, now_ms, &mut events),
            (Some(id), false) => self.start_clear(&id, &verdict, now_ms, &mut events),
            (None, true) => self.open_new(verdict, now_ms, &mut events),
            (None, false) => {}
        }
        events
    }

    /// Moves the book's event-time clock to `event_ms` (if later) and resolves the alerts
    /// whose hold ran out (by event time, or by wall time `now_ms`).
    pub fn advance_event_time(&mut self, event_ms: u64, now_ms: u64) -> Vec<AlertEvent> {
        self.event_clock_ms = self.event_clock_ms.max(event_ms);
        let mut events = Vec::new();
        self.resolve_due(now_ms, &mut events);
        events
    }

    /// Runs what wall time drives: auto-resolving alerts whose hold ran out while no verdicts
    /// came, escalating unacknowledged alerts, notifying storm summaries' growth, resolving
    /// summaries of storms that are over, sending coalesced updates, rolling the storm window
    /// and dropping old resolved alerts. Call it every few seconds.
    pub fn tick(&mut self, now_ms: u64) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        self.resolve_due(now_ms, &mut events);
        self.roll_storm(now_ms);
        let open: Vec<String> = self.open.values().cloned().collect();
        let summary_hold_ms = self.config.summary_hold_s.saturating_mul(1000);
        let summary_every_ms = self.config.summary_update_every_s.saturating_mul(1000);
        let update_every_ms = self.config.update_event_every_s.saturating_mul(1000);
        for id in open {
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            if let Some(s) = &entry.summary {
                if now_ms >= s.last_fold_ms.saturating_add(summary_hold_ms) {
                    self.finish(&id, AUTO_RESOLVER, SYSTEM_ACTOR, now_ms, &mut events);
                } else if entry.unsent
                    && now_ms >= s.last_notified_ms.saturating_add(summary_every_ms)
                {
                    self.emit_summary_update(&id, now_ms, &mut events);
                }
                continue;
            }
            if self.escalation_due(entry, now_ms) {
                self.escalate(&id, now_ms, &mut events);
            } else if entry.unsent
                && now_ms >= entry.last_update_event_ms.saturating_add(update_every_ms)
            {
                self.emit(&id, Transition::Updated, SYSTEM_ACTOR, now_ms, &mut events);
                if let Some(e) = self.entries.get_mut(&id) {
                    e.last_update_event_ms = now_ms;
                }
            }
        }
        self.prune(now_ms);
        events
    }

    /// An operator takes an alert.
    pub fn acknowledge(
        &mut self,
        id: &str,
        actor: &str,
        now_ms: u64,
    ) -> Result<AlertEvent, LifecycleError> {
        valid_actor(actor)?;
        let entry = self
            .entries
            .get_mut(id)
            .ok_or_else(|| LifecycleError::NotFound(id.to_owned()))?;
        match entry.alert.state {
            AlertState::Resolved => return Err(LifecycleError::AlreadyResolved(id.to_owned())),
            AlertState::Acknowledged => {
                return Err(LifecycleError::AlreadyAcknowledged(id.to_owned()))
            }
            AlertState::Active => {}
        }
        entry.alert.state = AlertState::Acknowledged;
        entry.alert.acknowledged = Some((actor.to_owned(), now_ms));
        entry.alert.updated_ms = now_ms;
        let mut events = Vec::new();
        self.emit(id, Transition::Acknowledged, actor, now_ms, &mut events);
        events
            .pop()
            .ok_or_else(|| LifecycleError::NotFound(id.to_owned()))
    }

    /// An operator resolves an alert. If its condition still holds, the next breach opens a
    /// new alert.
    pub fn resolve(
        &mut self,
        id: &str,
        actor: &str,
        now_ms: u64,
    ) -> Result<AlertEvent, LifecycleError> {
        valid_actor(actor)?;
        let entry = self
            .entries
            .get(id)
            .ok_or_else(|| LifecycleError::NotFound(id.to_owned()))?;
        if entry.alert.state == AlertState::Resolved {
            return Err(LifecycleError::AlreadyResolved(id.to_owned()));
        }
        let mut events = Vec::new();
        self.finish(id, actor, actor, now_ms, &mut events);
        events
            .pop()
            .ok_or_else(|| LifecycleError::NotFound(id.to_owned()))
    }

    /// An operator comments on an alert (open or resolved).
    pub fn comment(
        &mut self,
        id: &str,
        actor: &str,
        text: &str,
        now_ms: u64,
    ) -> Result<AlertEvent, LifecycleError> {
        valid_actor(actor)?;
        if text.trim().is_empty() || text.len() > MAX_COMMENT_BYTES {
            return Err(LifecycleError::InvalidComment);
        }
        let entry = self
            .entries
            .get_mut(id)
            .ok_or_else(|| LifecycleError::NotFound(id.to_owned()))?;
        entry.alert.comments.push(Comment {
            author: actor.to_owned(),
            at_ms: now_ms,
            text: text.to_owned(),
        });
        entry.alert.updated_ms = now_ms;
        let mut events = Vec::new();
        self.emit(id, Transition::Commented, actor, now_ms, &mut events);
        events
            .pop()
            .ok_or_else(|| LifecycleError::NotFound(id.to_owned()))
    }

    // -----------------------------------------------------------------------------------

    fn emit(
        &mut self,
        id: &str,
        transition: Transition,
        actor: &str,
        now_ms: u64,
        events: &mut Vec<AlertEvent>,
    ) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        entry.unsent = false;
        let a = &entry.alert;
        let notify = match transition {
            Transition::Opened | Transition::Escalated | Transition::Resolved => !a.suppressed,
            Transition::Updated => entry.summary.is_some(),
            Transition::Acknowledged | Transition::Commented | Transition::Suppressed => false,
        };
        events.push(AlertEvent {
            event_id: format!("{}:{}", a.id, sequence(a)),
            alert: a.clone(),
            transition,
            at_ms: now_ms,
            actor: actor.to_owned(),
            notify,
        });
    }

    fn update(&mut self, id: &str, v: Verdict, now_ms: u64, events: &mut Vec<AlertEvent>) {
        let every_ms = self.config.update_event_every_s.saturating_mul(1000);
        self.cancel_clear(id);
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        entry.hold_s = Some(v.hold_s);
        entry.escalate_after_s = v.escalate_after_s;
        let a = &mut entry.alert;
        a.breaches = a.breaches.saturating_add(1);
        if v.value.is_some() {
            a.value = v.value;
        }
        a.message = v.message;
        a.severity = a.severity.max(v.severity);
        if v.district.is_some() {
            a.district = v.district;
        }
        a.updated_ms = now_ms;
        entry.unsent = true;
        if now_ms >= entry.last_update_event_ms.saturating_add(every_ms) {
            entry.last_update_event_ms = now_ms;
            self.emit(id, Transition::Updated, SYSTEM_ACTOR, now_ms, events);
        }
    }

    fn start_clear(&mut self, id: &str, v: &Verdict, now_ms: u64, events: &mut Vec<AlertEvent>) {
        let hold_ms = v.hold_s.saturating_mul(1000);
        if hold_ms == 0 {
            self.finish(id, AUTO_RESOLVER, SYSTEM_ACTOR, now_ms, events);
            return;
        }
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        entry.hold_s = Some(v.hold_s);
        if entry.clear.is_some() {
            return;
        }
        let due = (
            v.event_ms.saturating_add(hold_ms),
            now_ms.saturating_add(hold_ms),
        );
        entry.clear = Some(due);
        self.due_event.insert((due.0, id.to_owned()));
        self.due_wall.insert((due.1, id.to_owned()));
        // The hold may already have run out by event time (a late clear).
        self.resolve_due(now_ms, events);
    }

    fn cancel_clear(&mut self, id: &str) {
        if let Some(entry) = self.entries.get_mut(id) {
            if let Some((e, w)) = entry.clear.take() {
                self.due_event.remove(&(e, id.to_owned()));
                self.due_wall.remove(&(w, id.to_owned()));
            }
        }
    }

    fn resolve_due(&mut self, now_ms: u64, events: &mut Vec<AlertEvent>) {
        let mut due = Vec::new();
        while let Some(first) = self.due_event.first() {
            if first.0 > self.event_clock_ms {
                break;
            }
            if let Some((_, id)) = self.due_event.pop_first() {
                due.push(id);
            }
        }
        while let Some(first) = self.due_wall.first() {
            if first.0 > now_ms {
                break;
            }
            if let Some((_, id)) = self.due_wall.pop_first() {
                due.push(id);
            }
        }
        for id in due {
            let pending = self.entries.get(&id).is_some_and(|e| e.clear.is_some());
            if pending {
                self.finish(&id, AUTO_RESOLVER, SYSTEM_ACTOR, now_ms, events);
            }
        }
    }

    /// Resolves an open alert.
    fn finish(
        &mut self,
        id: &str,
        resolver: &str,
        actor: &str,
        now_ms: u64,
        events: &mut Vec<AlertEvent>,
    ) {
        self.cancel_clear(id);
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        if !entry.alert.state.is_open() {
            return;
        }
        let a = &mut entry.alert;
        a.state = AlertState::Resolved;
        a.resolved = Some((resolver.to_owned(), now_ms));
        a.updated_ms = now_ms;
        let key = (a.rule_id.clone(), a.entity_id.clone());
        if self.open.get(&key).is_some_and(|open| open == id) {
            self.open.remove(&key);
        }
        self.resolved.push_back((now_ms, id.to_owned()));
        self.emit(id, Transition::Resolved, actor, now_ms, events);
    }

    fn roll_storm(&mut self, now_ms: u64) {
        let window_ms = self.config.storm_window_s.saturating_mul(1000);
        if now_ms >= self.storm.start_ms.saturating_add(window_ms) || now_ms < self.storm.start_ms {
            self.storm = Storm {
                start_ms: now_ms,
                ..Storm::default()
            };
        }
    }

    fn open_new(&mut self, v: Verdict, now_ms: u64, events: &mut Vec<AlertEvent>) {
        self.roll_storm(now_ms);
        let mut opened_ms = now_ms;
        let mut id = format!("{}:{}:{opened_ms}", v.rule_id, v.entity_id);
        while self.entries.contains_key(&id) {
            opened_ms += 1;
            id = format!("{}:{}:{opened_ms}", v.rule_id, v.entity_id);
        }
        // Storm control: which caps would this alert exceed?
        let c = &self.config;
        let s = &self.storm;
        let mut exceeded = Vec::new();
        if s.per_rule.get(&v.rule_id).copied().unwrap_or(0) >= c.max_per_rule {
            exceeded.push(StormScope::Rule(v.rule_id.clone()));
        }
        if s.per_department.get(&v.department).copied().unwrap_or(0) >= c.max_per_department {
            exceeded.push(StormScope::Department(v.department));
        }
        if let Some(d) = v.district {
            if s.per_district.get(&d).copied().unwrap_or(0) >= c.max_per_district {
                exceeded.push(StormScope::District(d));
            }
        }
        let suppressed = !exceeded.is_empty();
        if !suppressed {
            *self.storm.per_rule.entry(v.rule_id.clone()).or_insert(0) += 1;
            *self.storm.per_department.entry(v.department).or_insert(0) += 1;
            if let Some(d) = v.district {
                *self.storm.per_district.entry(d).or_insert(0) += 1;
            }
        }
        let alert = Alert {
            id: id.clone(),
            rule_id: v.rule_id.clone(),
            entity_id: v.entity_id.clone(),
            district: v.district,
            department: v.department,
            category: v.category,
            severity: v.severity,
            state: AlertState::Active,
            message: v.message.clone(),
            value: v.value,
            opened_ms,
            breach_event_ms: v.event_ms,
            updated_ms: now_ms,
            breaches: 1,
            escalations: 0,
            acknowledged: None,
            resolved: None,
            comments: Vec::new(),
            suppressed,
        };
        let mut entry = Entry::new(alert);
        entry.hold_s = Some(v.hold_s);
        entry.escalate_after_s = v.escalate_after_s;
        entry.last_update_event_ms = now_ms;
        self.entries.insert(id.clone(), entry);
        self.open
            .insert((v.rule_id.clone(), v.entity_id.clone()), id.clone());
        let transition = if suppressed {
            Transition::Suppressed
        } else {
            Transition::Opened
        };
        self.emit(&id, transition, SYSTEM_ACTOR, now_ms, events);
        if suppressed {
            self.fold(&v, exceeded, now_ms, events);
        }
    }

    /// Folds a suppressed alert into the open summary of one of its scopes, or opens a
    /// summary for the first cap it exceeded.
    fn fold(
        &mut self,
        v: &Verdict,
        exceeded: Vec<StormScope>,
        now_ms: u64,
        events: &mut Vec<AlertEvent>,
    ) {
        let mut scopes = vec![
            StormScope::Rule(v.rule_id.clone()),
            StormScope::Department(v.department),
        ];
        if let Some(d) = v.district {
            scopes.push(StormScope::District(d));
        }
        let existing = scopes
            .iter()
            .find_map(|s| self.open.get(&(s.rule_id(), s.value())).cloned());
        if let Some(id) = existing {
            let every_ms = self.config.summary_update_every_s.saturating_mul(1000);
            let Some(entry) = self.entries.get_mut(&id) else {
                return;
            };
            let a = &mut entry.alert;
            a.breaches = a.breaches.saturating_add(1);
            a.severity = a.severity.max(v.severity);
            a.value = Some(f64::from(a.breaches));
            a.updated_ms = now_ms;
            let Some(summary) = entry.summary.as_mut() else {
                return;
            };
            a.message = summary_message(&summary.scope, a.breaches);
            summary.last_fold_ms = now_ms;
            entry.unsent = true;
            if now_ms >= summary.last_notified_ms.saturating_add(every_ms) {
                self.emit_summary_update(&id, now_ms, events);
            }
            return;
        }
        let Some(scope) = exceeded.into_iter().next() else {
            return;
        };
        let rule_id = scope.rule_id();
        let entity_id = scope.value();
        let mut opened_ms = now_ms;
        let mut id = format!("{rule_id}:{entity_id}:{opened_ms}");
        while self.entries.contains_key(&id) {
            opened_ms += 1;
            id = format!("{rule_id}:{entity_id}:{opened_ms}");
        }
        let district = match &scope {
            StormScope::District(d) => Some(*d),
            StormScope::Rule(_) | StormScope::Department(_) => None,
        };
        let department = match &scope {
            StormScope::Department(d) => *d,
            StormScope::Rule(_) | StormScope::District(_) => v.department,
        };
        let alert = Alert {
            id: id.clone(),
            rule_id: rule_id.clone(),
            entity_id: entity_id.clone(),
            district,
            department,
            category: Category::Storm,
            severity: v.severity,
            state: AlertState::Active,
            message: summary_message(&scope, 1),
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
        };
        let mut entry = Entry::new(alert);
        entry.summary = Some(Summary {
            scope,
            last_fold_ms: now_ms,
            last_notified_ms: now_ms,
        });
        self.entries.insert(id.clone(), entry);
        self.open.insert((rule_id, entity_id), id.clone());
        self.emit(&id, Transition::Opened, SYSTEM_ACTOR, now_ms, events);
    }

    fn emit_summary_update(&mut self, id: &str, now_ms: u64, events: &mut Vec<AlertEvent>) {
        if let Some(s) = self.entries.get_mut(id).and_then(|e| e.summary.as_mut()) {
            s.last_notified_ms = now_ms;
        }
        self.emit(id, Transition::Updated, SYSTEM_ACTOR, now_ms, events);
    }

    fn escalation_due(&self, entry: &Entry, now_ms: u64) -> bool {
        let a = &entry.alert;
        if a.state != AlertState::Active
            || a.suppressed
            || a.escalations >= self.config.max_escalations
        {
            return false;
        }
        let every_s = entry
            .escalate_after_s
            .or_else(|| self.timings.get(&a.rule_id).and_then(|t| t.1));
        let Some(every_s) = every_s.filter(|s| *s > 0) else {
            return false;
        };
        let due = a.opened_ms.saturating_add(
            every_s
                .saturating_mul(1000)
                .saturating_mul(u64::from(a.escalations) + 1),
        );
        now_ms >= due
    }

    fn escalate(&mut self, id: &str, now_ms: u64, events: &mut Vec<AlertEvent>) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        let a = &mut entry.alert;
        a.severity = a.severity.raised();
        a.escalations = a.escalations.saturating_add(1);
        a.updated_ms = now_ms;
        self.emit(id, Transition::Escalated, SYSTEM_ACTOR, now_ms, events);
    }

    /// Drops resolved alerts older than `keep_resolved_s`, and the oldest beyond
    /// `max_resolved`.
    fn prune(&mut self, now_ms: u64) {
        let keep_ms = self.config.keep_resolved_s.saturating_mul(1000);
        while let Some((at, id)) = self.resolved.front() {
            let too_many = self.resolved.len() > self.config.max_resolved;
            if !too_many && at.saturating_add(keep_ms) > now_ms {
                break;
            }
            let id = id.clone();
            self.resolved.pop_front();
            if self
                .entries
                .get(&id)
                .is_some_and(|e| e.alert.state == AlertState::Resolved)
            {
                self.entries.remove(&id);
            }
        }
    }
}

fn summary_message(scope: &StormScope, folded: u32) -> String {
    format!(
        "Bão cảnh báo: {folded} cảnh báo {} vượt ngưỡng thông báo, gộp vào bản tóm tắt này",
        scope.describe()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_795_827_600_000;
    const S: u64 = 1000;
    const MIN: u64 = 60 * S;

    fn verdict(entity: &str, breached: bool, event_ms: u64) -> Verdict {
        Verdict {
            rule_id: "wind".into(),
            entity_id: entity.into(),
            district: Some(District::SonTra),
            department: Department::Construction,
            severity: Severity::Warning,
            category: Category::Structure,
            breached,
            value: Some(if breached { 30.0 } else { 10.0 }),
            event_ms,
            message: format!("gió tại {entity}"),
            hold_s: 300,
            escalate_after_s: Some(600),
        }
    }

    fn transitions(events: &[AlertEvent]) -> Vec<(Transition, bool)> {
        events.iter().map(|e| (e.transition, e.notify)).collect()
    }

    #[test]
    fn open_update_not_duplicate_then_auto_resolve_after_hold() {
        let mut book = AlertBook::new(LifecycleConfig::default());
        let ev = book.apply(verdict("b-1", true, T0), T0);
        assert_eq!(transitions(&ev), vec![(Transition::Opened, true)]);
        let id = ev[0].alert.id.clone();
        assert_eq!(id, format!("wind:b-1:{T0}"));
        assert_eq!(ev[0].event_id, format!("{id}:1"));
        assert_eq!(ev[0].actor, "system");
        // A repeat breach within a minute is counted, without an event.
        assert!(book.apply(verdict("b-1", true, T0 + S), T0 + S).is_empty());
        // A repeat breach a minute later is an update event, not a new alert.
        let ev = book.apply(verdict("b-1", true, T0 + 61 * S), T0 + 61 * S);
        assert_eq!(transitions(&ev), vec![(Transition::Updated, false)]);
        assert_eq!(ev[0].alert.id, id);
        assert_eq!(ev[0].alert.breaches, 3);
        assert_eq!(ev[0].event_id, format!("{id}:3"));
        assert_eq!(book.list(&AlertFilter::default()).len(), 1);
        // Clear: held for 300 s of event time before resolving.
        assert!(book
            .apply(verdict("b-1", false, T0 + 2 * MIN), T0 + 2 * MIN)
            .is_empty());
        assert!(book.tick(T0 + 6 * MIN).is_empty());
        let ev = book.tick(T0 + 7 * MIN);
        assert_eq!(transitions(&ev), vec![(Transition::Resolved, true)]);
        let a = &ev[0].alert;
        assert_eq!(a.state, AlertState::Resolved);
        assert_eq!(a.resolved, Some(("auto".to_owned(), T0 + 7 * MIN)));
        assert!(book.open_alert("wind", "b-1").is_none());
        // A new breach opens a new alert.
        let ev = book.apply(verdict("b-1", true, T0 + 8 * MIN), T0 + 8 * MIN);
        assert_eq!(transitions(&ev), vec![(Transition::Opened, true)]);
        assert_ne!(ev[0].alert.id, id);
    }

    #[test]
    fn a_breach_during_the_hold_keeps_the_alert() {
        let mut book = AlertBook::new(LifecycleConfig::default());
        book.apply(verdict("b-1", true, T0), T0);
        book.apply(verdict("b-1", false, T0 + 10 * S), T0 + 10 * S);
        book.apply(verdict("b-1", true, T0 + 20 * S), T0 + 20 * S);
        assert!(book
            .tick(T0 + 10 * MIN)
            .iter()
            .all(|e| e.transition != Transition::Resolved));
        assert_eq!(book.list(&AlertFilter::default()).len(), 1);
        // Event time from other verdicts also runs the hold out.
        book.apply(verdict("b-1", false, T0 + 11 * MIN), T0 + 11 * MIN);
        let ev = book.apply(verdict("b-2", false, T0 + 16 * MIN), T0 + 11 * MIN + S);
        assert_eq!(transitions(&ev), vec![(Transition::Resolved, true)]);
    }

    #[test]
    fn acknowledge_resolve_comment_and_errors() {
        let mut book = AlertBook::new(LifecycleConfig::default());
        let id = book.apply(verdict("b-1", true, T0), T0)[0].alert.id.clone();
        let e = book.acknowledge(&id, "op.lan", T0 + S).unwrap();
        assert_eq!(
            (e.transition, e.notify, e.actor.as_str()),
            (Transition::Acknowledged, false, "op.lan")
        );
        assert_eq!(e.alert.state, AlertState::Acknowledged);
        assert_eq!(e.alert.acknowledged, Some(("op.lan".to_owned(), T0 + S)));
        assert_eq!(
            book.acknowledge(&id, "op.lan", T0 + S).unwrap_err(),
            LifecycleError::AlreadyAcknowledged(id.clone())
        );
        let e = book
            .comment(&id, "op.lan", "Đã cử đội kiểm tra", T0 + 2 * S)
            .unwrap();
        assert_eq!((e.transition, e.notify), (Transition::Commented, false));
        assert_eq!(e.alert.comments.len(), 1);
        assert_eq!(
            book.comment(&id, "op.lan", "  ", T0).unwrap_err(),
            LifecycleError::InvalidComment
        );
        assert_eq!(
            book.comment(&id, "", "x", T0).unwrap_err(),
            LifecycleError::InvalidActor
        );
        // An acknowledged alert still updates on repeat breaches.
        let ev = book.apply(verdict("b-1", true, T0 + 2 * MIN), T0 + 2 * MIN);
        assert_eq!(ev[0].alert.state, AlertState::Acknowledged);
        let e = book.resolve(&id, "op.lan", T0 + 3 * MIN).unwrap();
        assert_eq!((e.transition, e.notify), (Transition::Resolved, true));
        assert_eq!(e.alert.resolved, Some(("op.lan".to_owned(), T0 + 3 * MIN)));
        assert_eq!(
            book.resolve(&id, "op.lan", T0).unwrap_err(),
            LifecycleError::AlreadyResolved(id.clone())
        );
        assert_eq!(
            book.acknowledge(&id, "op.lan", T0).unwrap_err(),
            LifecycleError::AlreadyResolved(id.clone())
        );
        assert_eq!(
            book.acknowledge("nope", "op.lan", T0).unwrap_err(),
            LifecycleError::NotFound("nope".into())
        );
        // Comments on a resolved alert are kept.
        book.comment(&id, "op.lan", "Nguyên nhân: gió giật", T0 + 4 * MIN)
            .unwrap();
        // Event ids never repeat.
        let a = book.get(&id).unwrap();
        assert_eq!(a.comments.len(), 2);
        assert!(e.alert.id == id);
    }

    #[test]
    fn event_ids_are_unique_and_increasing() {
        let mut book = AlertBook::new(LifecycleConfig::default());
        let mut ids = Vec::new();
        let ev = book.apply(verdict("b-1", true, T0), T0);
        let id = ev[0].alert.id.clone();
        ids.extend(ev.into_iter().map(|e| e.event_id));
        for i in 1..200u64 {
            ids.extend(
                book.apply(verdict("b-1", true, T0 + i * 7 * S), T0 + i * 7 * S)
                    .into_iter()
                    .map(|e| e.event_id),
            );
            if i % 50 == 0 {
                ids.push(
                    book.comment(&id, "op", "x", T0 + i * 7 * S)
                        .unwrap()
                        .event_id,
                );
            }
            ids.extend(book.tick(T0 + i * 7 * S).into_iter().map(|e| e.event_id));
        }
        ids.push(book.acknowledge(&id, "op", T0 + 2000 * S).unwrap().event_id);
        ids.extend(book.tick(T0 + 3000 * S).into_iter().map(|e| e.event_id));
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
        let seqs: Vec<u64> = ids
            .iter()
            .map(|i| i.rsplit(':').next().unwrap().parse().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    }

    #[test]
    fn escalation_raises_severity_and_notifies_until_acknowledged() {
        let mut book = AlertBook::new(LifecycleConfig::default());
        let id = book.apply(verdict("b-1", true, T0), T0)[0].alert.id.clone();
        assert!(book.tick(T0 + 9 * MIN).is_empty());
        let ev = book.tick(T0 + 10 * MIN);
        assert_eq!(transitions(&ev), vec![(Transition::Escalated, true)]);
        assert_eq!(ev[0].alert.severity, Severity::Major);
        assert_eq!(ev[0].alert.escalations, 1);
        assert!(book.tick(T0 + 15 * MIN).is_empty());
        let ev = book.tick(T0 + 20 * MIN);
        assert_eq!(ev[0].alert.severity, Severity::Critical);
        book.acknowledge(&id, "op", T0 + 21 * MIN).unwrap();
        assert!(book.tick(T0 + 60 * MIN).is_empty());
        assert_eq!(book.get(&id).unwrap().escalations, 2);
    }

    #[test]
    fn escalation_stops_at_the_limit() {
        let config = LifecycleConfig {
            max_escalations: 1,
            ..LifecycleConfig::default()
        };
        let mut book = AlertBook::new(config);
        book.apply(verdict("b-1", true, T0), T0);
        assert_eq!(book.tick(T0 + 10 * MIN).len(), 1);
        assert!(book.tick(T0 + 100 * MIN).is_empty());
    }

    #[test]
    fn rebuild_from_alerts_keeps_the_open_alert_and_its_acknowledgement() {
        let mut book = AlertBook::new(LifecycleConfig::default());
        let id = book.apply(verdict("b-1", true, T0), T0)[0].alert.id.clone();
        let ack = book.acknowledge(&id, "op", T0 + S).unwrap();
        let other = book.apply(verdict("b-2", true, T0), T0)[0].alert.id.clone();
        book.resolve(&other, "op", T0 + 2 * S).unwrap();
        let persisted: Vec<Alert> = book.alerts().cloned().collect();

        let mut book = AlertBook::from_alerts(persisted, LifecycleConfig::default());
        assert_eq!(book.len(), 2);
        assert_eq!(book.open_count(), 1);
        let ev = book.apply(verdict("b-1", true, T0 + 5 * MIN), T0 + 5 * MIN);
        assert_eq!(transitions(&ev), vec![(Transition::Updated, false)]);
        assert_eq!(ev[0].alert.id, id);
        assert_eq!(ev[0].alert.state, AlertState::Acknowledged);
        assert_ne!(ev[0].event_id, ack.event_id);
        assert_eq!(
            book.list(&AlertFilter {
                rule_id: Some("wind".into()),
                entity_id: Some("b-1".into()),
                ..AlertFilter::default()
            })
            .len(),
            1
        );
        // A clear after the restart resolves it after the hold.
        book.apply(verdict("b-1", false, T0 + 6 * MIN), T0 + 6 * MIN);
        let ev = book.tick(T0 + 12 * MIN);
        assert_eq!(transitions(&ev), vec![(Transition::Resolved, true)]);
    }

    #[test]
    fn rebuilt_alerts_escalate_with_rule_timings() {
        let mut book = AlertBook::new(LifecycleConfig::default());
        book.apply(verdict("b-1", true, T0), T0);
        let persisted: Vec<Alert> = book.alerts().cloned().collect();
        let mut book = AlertBook::from_alerts(persisted, LifecycleConfig::default());
        assert!(book.tick(T0 + 11 * MIN).is_empty(), "no timing known yet");
        let rules = RuleSet::from_toml(
            r#"[[rule]]
            id = "wind"
            name = "wind"
            severity = "warning"
            category = "structure"
            department = "construction"
            source = { reading = "wind_speed_ms" }
            condition = { type = "threshold", above = 25 }
            escalate_after_s = 600
            message = "x"
            "#,
        )
        .unwrap();
        book.set_rule_timings(&rules);
        let ev = book.tick(T0 + 11 * MIN);
        assert_eq!(transitions(&ev), vec![(Transition::Escalated, true)]);
    }

    #[test]
    fn the_latest_event_of_an_alert_is_the_one_it_last_sent() {
        let mut book = AlertBook::new(LifecycleConfig::default());
        let opened = book.apply(verdict("a", true, T0), T0);
        let alert = &book.list(&AlertFilter::default())[0];
        assert_eq!(latest_event(alert).event_id, opened[0].event_id);
        assert_eq!(latest_event(alert).transition, Transition::Opened);
        let id = alert.id.clone();
        let acked = book.acknowledge(&id, "op", T0 + S).unwrap();
        let alert = &book.list(&AlertFilter::default())[0];
        let latest = latest_event(alert);
        assert_eq!(
            (&latest.event_id, latest.transition, latest.actor.as_str()),
            (&acked.event_id, Transition::Acknowledged, "op")
        );
        assert!(!latest.notify, "a snapshot never notifies again");
    }

    #[test]
    fn list_filters_and_orders_newest_first() {
        let mut book = AlertBook::new(LifecycleConfig::default());
        for (i, e) in ["a", "b", "c"].iter().enumerate() {
            book.apply(verdict(e, true, T0), T0 + i as u64 * S);
        }
        let all = book.list(&AlertFilter::default());
        assert_eq!(
            all.iter().map(|a| a.entity_id.as_str()).collect::<Vec<_>>(),
            ["c", "b", "a"]
        );
        let f = AlertFilter {
            limit: Some(2),
            min_severity: Some(Severity::Warning),
            department: Some(Department::Construction),
            district: Some(District::SonTra),
            category: Some(Category::Structure),
            state: Some(AlertState::Active),
            ..AlertFilter::default()
        };
        assert_eq!(book.list(&f).len(), 2);
        let f = AlertFilter {
            min_severity: Some(Severity::Major),
            ..AlertFilter::default()
        };
        assert!(book.list(&f).is_empty());
        let f: AlertFilter = serde_json::from_str(r#"{"open": true, "rule_id": "wind"}"#).unwrap();
        assert_eq!(book.list(&f).len(), 3);
    }

    #[test]
    fn resolved_alerts_are_bounded() {
        let config = LifecycleConfig {
            max_resolved: 5,
            keep_resolved_s: 3600,
            ..LifecycleConfig::default()
        };
        let mut book = AlertBook::new(config);
        for i in 0..10u64 {
            let id = book.apply(verdict(&format!("d{i}"), true, T0), T0)[0]
                .alert
                .id
                .clone();
            book.resolve(&id, "op", T0 + i).unwrap();
        }
        book.tick(T0 + S);
        assert_eq!(book.len(), 5);
        book.tick(T0 + 2 * 3600 * S);
        assert_eq!(book.len(), 0);
    }

    #[test]
    fn storm_control_caps_and_summarises() {
        let config = LifecycleConfig {
            max_per_rule: 3,
            ..LifecycleConfig::default()
        };
        let mut book = AlertBook::new(config);
        let mut events = Vec::new();
        for i in 0..10 {
            events.extend(book.apply(verdict(&format!("d{i}"), true, T0), T0));
        }
        let notified: Vec<_> = events.iter().filter(|e| e.notify).collect();
        assert_eq!(notified.len(), 4, "3 alerts and the summary");
        let summary = book.open_alert("storm:rule:wind", "wind").unwrap();
        assert_eq!(summary.category, Category::Storm);
        assert_eq!(summary.breaches, 7);
        assert_eq!(
            book.list(&AlertFilter {
                suppressed: Some(true),
                ..AlertFilter::default()
            })
            .len(),
            7
        );
        // The summary's growth is notified once a minute later.
        let ev = book.tick(T0 + MIN);
        assert_eq!(transitions(&ev), vec![(Transition::Updated, true)]);
        // Suppressed alerts do not escalate; the summary resolves when the storm is over.
        let ev = book.tick(T0 + 15 * MIN);
        assert!(
            ev.iter().all(|e| !e.alert.suppressed),
            "{:?}",
            transitions(&ev)
        );
        let resolved: Vec<_> = ev
            .iter()
            .filter(|e| e.transition == Transition::Resolved)
            .collect();
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].alert.category, Category::Storm);
        // A new window: notified again.
        let ev = book.apply(verdict("d99", true, T0 + 16 * MIN), T0 + 16 * MIN);
        assert_eq!(transitions(&ev), vec![(Transition::Opened, true)]);
    }
}
