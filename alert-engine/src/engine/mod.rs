//! The rule engine: turns observations of readings and KPIs into breaches and clears.
//!
//! Readings and KPI rows are first turned into observations (one number each: see
//! [`crate::observe`]); [`Engine::observe`] runs the rules that watch that number and returns
//! a [`Verdict`] when the state of a (rule, entity) pair changes, or when a breach repeats (so
//! the lifecycle can count it). Composite rules are re-evaluated whenever one of their inputs
//! moves.
//!
//! # Bounded state
//!
//! The engine keeps, per (rule, entity), a few numbers (and, for rate-of-change rules, the
//! samples of the last `over_s`, at most [`MAX_RATE_SAMPLES`]). An entity not observed for
//! [`Engine::forget_after_ms`] of event time (default 24 h) is forgotten; if its condition was
//! breached, a clear verdict is returned then (its alert resolves after its hold time). A rule
//! tracks at most [`MAX_ENTITIES_PER_RULE`] entities; observations of further entities are
//! ignored (and logged) until some are forgotten.

mod state;
mod verdict;

use std::collections::{HashMap, HashSet};

use ioc_schemas::{District, Kind, KpiFamily, Scope};

use self::state::{transition, Change, EntityState, Phase, RuleState};
use self::verdict::{clears_of, verdict_of};
pub use self::verdict::{format_value, render_message, Verdict, FALLBACK_DEPARTMENT};
use crate::observe::{Observation, Source, SILENT_FIELD};
use crate::rules::{
    CompositeOp, CompositeScope, Condition, Rule, RuleDepartment, RuleSet, SourceRef,
};

/// How long an entity may stay unobserved (event time) before the engine forgets it: 24 h.
pub const DEFAULT_FORGET_AFTER_MS: u64 = 24 * 3_600_000;
/// The most (rule, entity) states one rule keeps.
pub const MAX_ENTITIES_PER_RULE: usize = 200_000;
/// The most samples a rate-of-change state keeps; older ones are dropped first.
pub const MAX_RATE_SAMPLES: usize = 4096;
/// How often (event time) silence-based clears (`clear_after_s`) are checked.
const SWEEP_EVERY_MS: u64 = 5_000;
/// How often (event time) stale entities are looked for.
const FORGET_EVERY_MS: u64 = 60_000;

/// The lookup key of a source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SourceKey {
    Reading(String),
    Kpi(KpiFamily, Scope, String),
}

impl SourceKey {
    fn of(source: &Source) -> SourceKey {
        match source {
            Source::Reading { metric, .. } => SourceKey::Reading(metric.clone()),
            Source::Kpi {
                family,
                scope,
                field,
            } => SourceKey::Kpi(*family, *scope, field.clone()),
        }
    }

    /// The observations a rule watches: its source's, or the device health rows' silence
    /// for an absence rule; none for a composite rule.
    fn of_rule(rule: &Rule) -> Option<SourceKey> {
        match (
            &rule.condition,
            rule.source.as_ref().and_then(|s| s.resolve()),
        ) {
            (Condition::Absence { .. }, _) => Some(SourceKey::Kpi(
                KpiFamily::Health,
                Scope::Device,
                SILENT_FIELD.to_owned(),
            )),
            (_, Some(SourceRef::Reading { metric, .. })) => Some(SourceKey::Reading(metric)),
            (
                _,
                Some(SourceRef::Kpi {
                    family,
                    scope,
                    field,
                }),
            ) => Some(SourceKey::Kpi(family, scope, field)),
            (_, None) => None,
        }
    }
}

/// How a rule is evaluated.
#[derive(Debug, Clone)]
enum Eval {
    Above {
        level: f64,
        clear: f64,
    },
    Below {
        level: f64,
        clear: f64,
    },
    Rate {
        over_ms: u64,
        rise: Option<f64>,
        fall: Option<f64>,
    },
    Absence {
        intervals: f64,
    },
    Composite {
        op: CompositeOp,
        inputs: Vec<usize>,
        devices: Option<(Vec<String>, String)>,
    },
}

/// A rule ready to run.
#[derive(Debug, Clone)]
struct Compiled {
    eval: Eval,
    kind: Option<Kind>,
    for_ms: u64,
    clear_after_ms: Option<u64>,
    devices: HashSet<String>,
}

/// A (rule, entity) pair that moved, for composite propagation.
#[derive(Debug, Clone)]
struct Moved {
    rule: usize,
    district: Option<District>,
    device: Option<String>,
    event_ms: u64,
}

/// The rule engine. See the module docs.
#[derive(Debug)]
pub struct Engine {
    rules: RuleSet,
    compiled: Vec<Option<Compiled>>,
    by_id: HashMap<String, usize>,
    by_source: HashMap<SourceKey, Vec<usize>>,
    dependents: Vec<Vec<usize>>,
    sweeping: Vec<usize>,
    states: Vec<RuleState>,
    clock_ms: u64,
    next_sweep_ms: u64,
    next_forget_ms: u64,
    forget_after_ms: u64,
}

/// Seconds (a rule's field) as milliseconds; negative ones as 0.
fn ms(seconds: i64) -> u64 {
    u64::try_from(seconds).unwrap_or(0).saturating_mul(1000)
}

/// Whether two versions of a rule evaluate the same way (so its state can be kept).
fn same_evaluation(a: &Rule, b: &Rule) -> bool {
    a.enabled == b.enabled
        && a.source == b.source
        && a.condition == b.condition
        && a.for_s == b.for_s
        && a.clear_after_s == b.clear_after_s
        && a.districts == b.districts
        && a.devices == b.devices
}

impl Engine {
    /// An engine running these rules.
    pub fn new(rules: RuleSet) -> Engine {
        let mut engine = Engine {
            rules: RuleSet::empty(),
            compiled: Vec::new(),
            by_id: HashMap::new(),
            by_source: HashMap::new(),
            dependents: Vec::new(),
            sweeping: Vec::new(),
            states: Vec::new(),
            clock_ms: 0,
            next_sweep_ms: 0,
            next_forget_ms: 0,
            forget_after_ms: DEFAULT_FORGET_AFTER_MS,
        };
        engine.install(rules, Vec::new());
        engine
    }

    /// Sets how long (event time, ms) an unobserved entity is kept; at least one minute.
    pub fn set_forget_after_ms(&mut self, forget_after_ms: u64) {
        self.forget_after_ms = forget_after_ms.max(FORGET_EVERY_MS);
    }

    /// How long (event time, ms) an unobserved entity is kept.
    pub fn forget_after_ms(&self) -> u64 {
        self.forget_after_ms
    }

    /// The rules running.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The newest event time seen, epoch ms.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// How many (rule, entity) states are kept.
    pub fn tracked(&self) -> usize {
        self.states.iter().map(|s| s.entities.len()).sum()
    }

    /// Swaps in a new rule set without a restart. Rules that evaluate as before (same source,
    /// condition, `for_s`, `clear_after_s` and filters; name, severity, message and the like
    /// may change) keep their state. Returns clear verdicts for the entities that were
    /// breached under a rule that was removed, disabled, changed or set not to raise alerts,
    /// so their alerts resolve (after the hold time); a changed rule starts afresh.
    pub fn set_rules(&mut self, rules: RuleSet) -> Vec<Verdict> {
        let old_rules = std::mem::take(&mut self.rules);
        let mut old_states: HashMap<String, RuleState> = old_rules
            .rules()
            .iter()
            .zip(std::mem::take(&mut self.states))
            .map(|(r, s)| (r.id.clone(), s))
            .collect();
        let mut kept: Vec<(usize, RuleState)> = Vec::new();
        let mut verdicts = Vec::new();
        for old in old_rules.rules() {
            let Some(state) = old_states.remove(&old.id) else {
                continue;
            };
            let new = rules
                .rules()
                .iter()
                .enumerate()
                .find(|(_, r)| r.id == old.id);
            if let Some((i, r)) = new {
                if same_evaluation(old, r) && old.enabled {
                    if old.raises_alerts && !r.raises_alerts {
                        verdicts.extend(clears_of(old, &state));
                    }
                    kept.push((i, state));
                    continue;
                }
            }
            if old.raises_alerts && old.enabled {
                verdicts.extend(clears_of(old, &state));
            }
        }
        self.install(rules, kept);
        verdicts
    }

    fn install(&mut self, rules: RuleSet, kept: Vec<(usize, RuleState)>) {
        let n = rules.len();
        self.by_id = rules
            .rules()
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        self.compiled = Vec::with_capacity(n);
        self.by_source = HashMap::new();
        self.dependents = vec![Vec::new(); n];
        self.sweeping = Vec::new();
        self.states = vec![RuleState::default(); n];
        for (i, state) in kept {
            if let Some(slot) = self.states.get_mut(i) {
                *slot = state;
            }
        }
        for (i, rule) in rules.rules().iter().enumerate() {
            let compiled = self.compile(rule);
            if let Some(c) = &compiled {
                if let Eval::Composite { inputs, .. } = &c.eval {
                    for j in inputs {
                        if let Some(d) = self.dependents.get_mut(*j) {
                            d.push(i);
                        }
                    }
                }
                if c.clear_after_ms.is_some() {
                    self.sweeping.push(i);
                }
                if let Some(key) = SourceKey::of_rule(rule) {
                    self.by_source.entry(key).or_default().push(i);
                }
            }
            self.compiled.push(compiled);
        }
        self.rules = rules;
    }

    fn compile(&self, rule: &Rule) -> Option<Compiled> {
        if !rule.enabled {
            return None;
        }
        let eval = match &rule.condition {
            Condition::Threshold {
                above: Some(level),
                clear,
                ..
            } => Eval::Above {
                level: *level,
                clear: clear.unwrap_or(*level),
            },
            Condition::Threshold {
                below: Some(level),
                clear,
                ..
            } => Eval::Below {
                level: *level,
                clear: clear.unwrap_or(*level),
            },
            Condition::Threshold { .. } => return None,
            Condition::RateOfChange {
                over_s,
                rise_above,
                fall_below,
            } => Eval::Rate {
                over_ms: ms(*over_s),
                rise: *rise_above,
                fall: *fall_below,
            },
            Condition::Absence { intervals } => Eval::Absence {
                intervals: *intervals,
            },
            Condition::Composite { op, of, scope } => Eval::Composite {
                op: *op,
                inputs: of
                    .iter()
                    .filter_map(|id| self.by_id.get(id).copied())
                    .collect(),
                devices: match scope {
                    CompositeScope::District => None,
                    CompositeScope::Devices(list) => Some((list.clone(), list.join("+"))),
                },
            },
        };
        let kind = match rule.source.as_ref().and_then(|s| s.resolve()) {
            Some(SourceRef::Reading { kind, .. }) => kind,
            _ => None,
        };
        Some(Compiled {
            eval,
            kind,
            for_ms: ms(rule.for_s),
            clear_after_ms: rule.clear_after_s.map(ms),
            devices: rule.devices.iter().cloned().collect(),
        })
    }

    /// Runs the rules watching this observation. Returns the verdicts of the (rule, entity)
    /// pairs whose state changed or whose breach repeats, those of composite rules that moved
    /// with them, and those of the periodic checks the observation's event time makes due
    /// (silence-based clears, forgotten entities). An observation older than the last one of
    /// the same (rule, entity) is ignored by that rule.
    pub fn observe(&mut self, obs: &Observation) -> Vec<Verdict> {
        let mut verdicts = Vec::new();
        let mut moved = Vec::new();
        let candidates = self
            .by_source
            .get(&SourceKey::of(&obs.source))
            .cloned()
            .unwrap_or_default();
        for i in candidates {
            if !self.accepts(i, obs) {
                continue;
            }
            if let Some(change) = self.step(i, obs) {
                self.report(i, &obs.entity_id, change, obs.event_ms, &mut verdicts);
                moved.push(Moved {
                    rule: i,
                    district: obs.district,
                    device: obs.device_id.clone(),
                    event_ms: obs.event_ms,
                });
            }
        }
        self.propagate(moved, &mut verdicts);
        verdicts.extend(self.advance(obs.event_ms));
        verdicts
    }

    /// Moves the engine's event-time clock to `event_ms` (if later) and runs the checks that
    /// are due: silence-based clears of rules with `clear_after_s`, and forgetting entities
    /// not observed for [`Engine::forget_after_ms`]. `observe` calls it; call it too on
    /// watermarks or heartbeats so quiet sources still clear.
    pub fn advance(&mut self, event_ms: u64) -> Vec<Verdict> {
        self.clock_ms = self.clock_ms.max(event_ms);
        let mut verdicts = Vec::new();
        if self.clock_ms >= self.next_sweep_ms {
            self.next_sweep_ms = self.clock_ms.saturating_add(SWEEP_EVERY_MS);
            self.sweep(&mut verdicts);
        }
        if self.clock_ms >= self.next_forget_ms {
            self.next_forget_ms = self.clock_ms.saturating_add(FORGET_EVERY_MS);
            self.forget(&mut verdicts);
        }
        verdicts
    }

    fn accepts(&self, i: usize, obs: &Observation) -> bool {
        let (Some(Some(c)), Some(rule)) = (self.compiled.get(i), self.rules.rules().get(i)) else {
            return false;
        };
        if let (Some(kind), Source::Reading { kind: k, .. }) = (c.kind, &obs.source) {
            if kind != *k {
                return false;
            }
        }
        if !rule.districts.is_empty() && !obs.district.is_some_and(|d| rule.districts.contains(&d))
        {
            return false;
        }
        if !c.devices.is_empty() {
            let device = obs.device_id.as_deref().unwrap_or(&obs.entity_id);
            if !c.devices.contains(device) {
                return false;
            }
        }
        true
    }

    /// Evaluates a source rule on an observation and moves its state.
    fn step(&mut self, i: usize, obs: &Observation) -> Option<Change> {
        let c = self.compiled.get(i)?.as_ref()?;
        let eval = c.eval.clone();
        let for_ms = c.for_ms;
        if !self.admit(i, obs) {
            return None;
        }
        let state = self.states.get_mut(i)?;
        let st = state.entities.get_mut(&obs.entity_id)?;
        if !st.note(obs) {
            return None;
        }
        let (breached, value) = evaluate(&eval, st, obs)?;
        st.value = value;
        if breached {
            st.last_breach_ms = obs.event_ms;
        }
        let change = transition(st, breached, obs.event_ms, obs.window_ms, for_ms);
        match change {
            Some(Change::Opened) => state.count(&obs.entity_id, true),
            Some(Change::Cleared) => state.count(&obs.entity_id, false),
            _ => {}
        }
        change
    }

    /// Whether rule `i` tracks the observation's entity: it does already, or it has room for
    /// one more ([`MAX_ENTITIES_PER_RULE`]; said once in the log when it has not).
    fn admit(&mut self, i: usize, obs: &Observation) -> bool {
        let Some(state) = self.states.get_mut(i) else {
            return false;
        };
        if state.entities.contains_key(&obs.entity_id) {
            return true;
        }
        if state.entities.len() >= MAX_ENTITIES_PER_RULE {
            if !state.warned_full {
                state.warned_full = true;
                let rule = self.rules.rules().get(i).map_or("", |r| r.id.as_str());
                tracing::warn!(
                    rule,
                    limit = MAX_ENTITIES_PER_RULE,
                    "alert rule tracks too many entities; new ones are ignored until some are forgotten"
                );
            }
            return false;
        }
        state.entities.insert(
            obs.entity_id.clone(),
            EntityState::new(obs.event_ms.saturating_sub(obs.window_ms)),
        );
        true
    }

    /// Re-evaluates the composite rules that depend on what moved, transitively.
    fn propagate(&mut self, mut moved: Vec<Moved>, verdicts: &mut Vec<Verdict>) {
        // Composite rules form a DAG (validated), so this ends.
        while let Some(m) = moved.pop() {
            let dependents = self.dependents.get(m.rule).cloned().unwrap_or_default();
            for c in dependents {
                let Some(Some(Compiled {
                    eval: Eval::Composite { devices, .. },
                    ..
                })) = self.compiled.get(c)
                else {
                    continue;
                };
                let key = match devices {
                    None => match m.district {
                        Some(d) => d.slug().to_owned(),
                        None => continue,
                    },
                    Some((list, entity)) => {
                        if !m.device.as_ref().is_some_and(|d| list.contains(d)) {
                            continue;
                        }
                        entity.clone()
                    }
                };
                if let Some(rule) = self.rules.rules().get(c) {
                    if !rule.districts.is_empty()
                        && !m.district.is_some_and(|d| rule.districts.contains(&d))
                    {
                        continue;
                    }
                }
                if let Some(change) = self.step_composite(c, &key, m.district, m.event_ms) {
                    self.report(c, &key, change, m.event_ms, verdicts);
                    let district = self
                        .states
                        .get(c)
                        .and_then(|s| s.entities.get(&key))
                        .and_then(|s| s.district);
                    moved.push(Moved {
                        rule: c,
                        district,
                        device: None,
                        event_ms: m.event_ms,
                    });
                }
            }
        }
    }

    fn step_composite(
        &mut self,
        c: usize,
        key: &str,
        district: Option<District>,
        event_ms: u64,
    ) -> Option<Change> {
        let compiled = self.compiled.get(c)?.as_ref()?;
        let for_ms = compiled.for_ms;
        let Eval::Composite {
            op,
            inputs,
            devices,
        } = &compiled.eval
        else {
            return None;
        };
        let input_breached = |j: &usize| -> bool {
            let Some(s) = self.states.get(*j) else {
                return false;
            };
            match devices {
                None => District::from_slug(key)
                    .is_some_and(|d| s.open_by_district.get(&d).is_some_and(|n| *n > 0)),
                Some((list, _)) => list
                    .iter()
                    .any(|dev| s.open_by_device.get(dev).is_some_and(|n| *n > 0)),
            }
        };
        let breached = match op {
            CompositeOp::All => inputs.iter().all(input_breached),
            CompositeOp::Any => inputs.iter().any(input_breached),
        };
        let department = match self.rules.rules().get(c).map(|r| r.department) {
            Some(RuleDepartment::Fixed(d)) => Some(d),
            _ => None,
        };
        let state = self.states.get_mut(c)?;
        let st = state
            .entities
            .entry(key.to_owned())
            .or_insert_with(|| EntityState::new(event_ms));
        // A late input is evaluated at the newest time seen.
        let at = event_ms.max(st.last_event_ms);
        st.last_event_ms = at;
        if district.is_some() {
            st.district = district;
        }
        st.department = department;
        st.value = None;
        if breached {
            st.last_breach_ms = at;
        }
        let change = transition(st, breached, at, 0, for_ms);
        match change {
            Some(Change::Opened) => state.count(key, true),
            Some(Change::Cleared) => state.count(key, false),
            _ => {}
        }
        change
    }

    /// Clears breaches whose source went silent for `clear_after_s`.
    fn sweep(&mut self, verdicts: &mut Vec<Verdict>) {
        let mut moved = Vec::new();
        let clock = self.clock_ms;
        for i in self.sweeping.clone() {
            let Some(Some(after)) = self
                .compiled
                .get(i)
                .map(|c| c.as_ref().and_then(|c| c.clear_after_ms))
            else {
                continue;
            };
            let due: Vec<(String, u64, bool)> = match self.states.get(i) {
                Some(state) => state
                    .entities
                    .iter()
                    .filter(|(_, s)| matches!(s.phase, Phase::Pending(_) | Phase::Open))
                    .filter(|(_, s)| s.last_breach_ms.saturating_add(after) <= clock)
                    .map(|(k, s)| {
                        (
                            k.clone(),
                            s.last_breach_ms.saturating_add(after),
                            s.phase == Phase::Open,
                        )
                    })
                    .collect(),
                None => continue,
            };
            for (entity, at, was_open) in due {
                let Some(state) = self.states.get_mut(i) else {
                    continue;
                };
                let Some(st) = state.entities.get_mut(&entity) else {
                    continue;
                };
                st.phase = Phase::Clear;
                let (district, device) = (st.district, st.device_id.clone());
                if was_open {
                    state.count(&entity, false);
                    self.report(i, &entity, Change::Cleared, at, verdicts);
                    moved.push(Moved {
                        rule: i,
                        district,
                        device,
                        event_ms: at,
                    });
                }
            }
        }
        self.propagate(moved, verdicts);
    }

    /// Forgets entities not observed for `forget_after_ms`; an open one is cleared first.
    fn forget(&mut self, verdicts: &mut Vec<Verdict>) {
        let horizon = self.clock_ms.saturating_sub(self.forget_after_ms);
        if horizon == 0 {
            return;
        }
        let mut moved = Vec::new();
        for i in 0..self.states.len() {
            let stale: Vec<(String, bool)> = match self.states.get(i) {
                Some(s) => s
                    .entities
                    .iter()
                    .filter(|(_, st)| st.last_event_ms < horizon)
                    .map(|(k, st)| (k.clone(), st.phase == Phase::Open))
                    .collect(),
                None => continue,
            };
            for (entity, was_open) in stale {
                if was_open {
                    let clock = self.clock_ms;
                    if let Some(state) = self.states.get_mut(i) {
                        state.count(&entity, false);
                    }
                    self.report(i, &entity, Change::Cleared, clock, verdicts);
                    let (district, device) = self
                        .states
                        .get(i)
                        .and_then(|s| s.entities.get(&entity))
                        .map_or((None, None), |st| (st.district, st.device_id.clone()));
                    moved.push(Moved {
                        rule: i,
                        district,
                        device,
                        event_ms: clock,
                    });
                }
                if let Some(state) = self.states.get_mut(i) {
                    state.entities.remove(&entity);
                }
            }
        }
        self.propagate(moved, verdicts);
    }

    /// Turns a change into a verdict, if the rule raises alerts.
    fn report(
        &self,
        i: usize,
        entity: &str,
        change: Change,
        event_ms: u64,
        verdicts: &mut Vec<Verdict>,
    ) {
        let Some(rule) = self.rules.rules().get(i) else {
            return;
        };
        if !rule.raises_alerts {
            return;
        }
        let Some(st) = self.states.get(i).and_then(|s| s.entities.get(entity)) else {
            return;
        };
        verdicts.push(verdict_of(
            rule,
            entity,
            st,
            matches!(change, Change::Opened | Change::Repeat),
            event_ms,
        ));
    }
}

/// Whether a source rule's condition holds on an observation, and the value behind it (see
/// [`Verdict::value`]); `None` when the observation says nothing (not a number, a rate over
/// too short a span, an absence without the device's interval).
fn evaluate(eval: &Eval, st: &mut EntityState, obs: &Observation) -> Option<(bool, Option<f64>)> {
    let was_breached = matches!(st.phase, Phase::Pending(_) | Phase::Open);
    let v = obs.value;
    match *eval {
        Eval::Above { level, clear } => {
            if v.is_nan() {
                return None;
            }
            Some((if was_breached { v >= clear } else { v >= level }, Some(v)))
        }
        Eval::Below { level, clear } => {
            if v.is_nan() {
                return None;
            }
            Some((if was_breached { v <= clear } else { v <= level }, Some(v)))
        }
        Eval::Rate {
            over_ms,
            rise,
            fall,
        } => {
            let rate = rate_per_hour(st, obs, over_ms)?;
            let breached = match (rise, fall) {
                (Some(r), _) => rate >= r,
                (None, Some(f)) => rate <= f,
                (None, None) => false,
            };
            Some((breached, Some(rate)))
        }
        Eval::Absence { intervals } => {
            let interval = f64::from(obs.expected_interval_s?);
            let limit = intervals * interval;
            if v.is_finite() {
                Some((v >= limit, Some(v)))
            } else {
                let silent = obs.event_ms.saturating_sub(st.first_seen_ms) as f64 / 1000.0;
                Some((silent >= limit, None))
            }
        }
        Eval::Composite { .. } => None,
    }
}

/// Adds the observation to the entity's samples and returns the change per hour from the
/// sample nearest `over_ms` ago; `None` until the samples span half of `over_ms`.
fn rate_per_hour(st: &mut EntityState, obs: &Observation, over_ms: u64) -> Option<f64> {
    let v = obs.value;
    if !v.is_finite() {
        return None;
    }
    st.history.push_back((obs.event_ms, v));
    let cutoff = obs.event_ms.saturating_sub(over_ms);
    // Keep one sample at or before the cutoff as the anchor.
    while st.history.len() > 2 && st.history.get(1).is_some_and(|s| s.0 <= cutoff) {
        st.history.pop_front();
    }
    while st.history.len() > MAX_RATE_SAMPLES {
        st.history.pop_front();
    }
    let (t0, v0) = *st.history.front()?;
    let dt = obs.event_ms.saturating_sub(t0);
    if dt == 0 || dt.saturating_mul(2) < over_ms {
        return None;
    }
    Some((v - v0) * 3_600_000.0 / dt as f64)
}

#[cfg(test)]
mod tests;
