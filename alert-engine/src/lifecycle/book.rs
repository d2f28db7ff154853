//! The alert book: every alert in memory, one open per (rule, entity), and the transitions
//! verdicts, the clock and operators make (see the module docs of [`crate::lifecycle`]).

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::config::{AlertFilter, LifecycleConfig};
use super::error::{valid_actor, LifecycleError, MAX_COMMENT_BYTES};
use super::storm::{fold_into, scopes_of, summary_alert, Storm, StormScope, Summary};
use crate::engine::Verdict;
use crate::model::{Alert, AlertEvent, AlertState, Comment, Transition};
use crate::rules::RuleSet;

/// The actor of events the lifecycle makes by itself.
pub const SYSTEM_ACTOR: &str = "system";
/// Who resolved an alert whose condition cleared.
pub const AUTO_RESOLVER: &str = "auto";

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

/// The sequence number of an alert's next event id: grows with every event.
fn sequence(a: &Alert) -> u64 {
    u64::from(a.breaches)
        + u64::from(a.escalations)
        + a.comments.len() as u64
        + u64::from(a.acknowledged.is_some())
        + u64::from(a.resolved.is_some())
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
        self.storm.roll(now_ms, self.config.storm_window_s);
    }

    /// A new alert's id, `<rule id>:<entity id>:<opened ms>`, and its opening time: now, or
    /// the first millisecond after it that no alert of the book has in its id.
    fn free_id(&self, rule_id: &str, entity_id: &str, now_ms: u64) -> (String, u64) {
        let mut opened_ms = now_ms;
        let mut id = format!("{rule_id}:{entity_id}:{opened_ms}");
        while self.entries.contains_key(&id) {
            opened_ms += 1;
            id = format!("{rule_id}:{entity_id}:{opened_ms}");
        }
        (id, opened_ms)
    }

    /// Opens the alert of a breach with no open alert: notified, or suppressed and folded into
    /// a storm summary when it exceeds a storm cap.
    fn open_new(&mut self, v: Verdict, now_ms: u64, events: &mut Vec<AlertEvent>) {
        self.roll_storm(now_ms);
        let (id, opened_ms) = self.free_id(&v.rule_id, &v.entity_id, now_ms);
        let exceeded = self.storm.exceeded(&v, &self.config);
        let suppressed = !exceeded.is_empty();
        if !suppressed {
            self.storm.count(&v);
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
        let existing = scopes_of(v)
            .iter()
            .find_map(|s| self.open.get(&(s.rule_id(), s.value())).cloned());
        match existing {
            Some(id) => self.fold_into_open(&id, v, now_ms, events),
            None => {
                if let Some(scope) = exceeded.into_iter().next() {
                    self.open_summary(scope, v, now_ms, events);
                }
            }
        }
    }

    /// Folds a suppressed alert into the open summary `id`; its growth is notified at most
    /// every `summary_update_every_s`.
    fn fold_into_open(&mut self, id: &str, v: &Verdict, now_ms: u64, events: &mut Vec<AlertEvent>) {
        let every_ms = self.config.summary_update_every_s.saturating_mul(1000);
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        let Some(summary) = entry.summary.as_mut() else {
            return;
        };
        fold_into(&mut entry.alert, summary, v.severity, now_ms);
        entry.unsent = true;
        if now_ms >= summary.last_notified_ms.saturating_add(every_ms) {
            self.emit_summary_update(id, now_ms, events);
        }
    }

    /// Opens (and notifies) the summary of `scope`, holding the suppressed alert of `v`.
    fn open_summary(
        &mut self,
        scope: StormScope,
        v: &Verdict,
        now_ms: u64,
        events: &mut Vec<AlertEvent>,
    ) {
        let (rule_id, entity_id) = (scope.rule_id(), scope.value());
        let (id, opened_ms) = self.free_id(&rule_id, &entity_id, now_ms);
        let alert = summary_alert(&scope, v, id.clone(), opened_ms, now_ms);
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
