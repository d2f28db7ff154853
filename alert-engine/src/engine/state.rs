//! The state of each (rule, entity) pair the engine tracks, and how a fresh evaluation moves
//! it: clear, pending for `for_s`, open; with the open pairs counted per district and device
//! for the composite rules.

use std::collections::{HashMap, VecDeque};

use ioc_schemas::{Department, District};

use crate::observe::Observation;

/// Where a (rule, entity) pair stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Not evaluated yet (new, or after a restart).
    Unknown,
    /// Not breached.
    Clear,
    /// Breached since this event time, waiting for `for_s`.
    Pending(u64),
    /// Breached long enough: reported as breached.
    Open,
}

/// The state of one (rule, entity) pair.
#[derive(Debug, Clone)]
pub(super) struct EntityState {
    pub(super) phase: Phase,
    pub(super) last_event_ms: u64,
    pub(super) last_breach_ms: u64,
    pub(super) first_seen_ms: u64,
    pub(super) value: Option<f64>,
    pub(super) district: Option<District>,
    pub(super) device_id: Option<String>,
    pub(super) department: Option<Department>,
    /// Where it was counted while open: (district, device).
    counted: Option<(Option<District>, Option<String>)>,
    pub(super) history: VecDeque<(u64, f64)>,
}

impl EntityState {
    pub(super) fn new(first_seen_ms: u64) -> EntityState {
        EntityState {
            phase: Phase::Unknown,
            last_event_ms: 0,
            last_breach_ms: 0,
            first_seen_ms,
            value: None,
            district: None,
            device_id: None,
            department: None,
            counted: None,
            history: VecDeque::new(),
        }
    }

    /// Records what an observation says of its entity: its time, and its district, device
    /// and owner when it names them. False, recording nothing, for an observation older than
    /// the last one.
    pub(super) fn note(&mut self, obs: &Observation) -> bool {
        if obs.event_ms < self.last_event_ms {
            return false;
        }
        self.last_event_ms = obs.event_ms;
        if obs.district.is_some() {
            self.district = obs.district;
        }
        if obs.device_id.is_some() {
            self.device_id.clone_from(&obs.device_id);
        }
        if obs.department.is_some() {
            self.department = obs.department;
        }
        true
    }
}

/// The states of one rule, with the number of open states per district and per device (what
/// composite rules read).
#[derive(Debug, Clone, Default)]
pub(super) struct RuleState {
    pub(super) entities: HashMap<String, EntityState>,
    pub(super) open_by_district: HashMap<District, u32>,
    pub(super) open_by_device: HashMap<String, u32>,
    pub(super) warned_full: bool,
}

impl RuleState {
    pub(super) fn count(&mut self, entity: &str, open: bool) {
        let Some(st) = self.entities.get_mut(entity) else {
            return;
        };
        if open {
            if st.counted.is_some() {
                return;
            }
            let key = (st.district, st.device_id.clone());
            if let Some(d) = key.0 {
                *self.open_by_district.entry(d).or_insert(0) += 1;
            }
            if let Some(dev) = &key.1 {
                *self.open_by_device.entry(dev.clone()).or_insert(0) += 1;
            }
            st.counted = Some(key);
        } else if let Some((district, device)) = st.counted.take() {
            if let Some(d) = district {
                if let Some(n) = self.open_by_district.get_mut(&d) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.open_by_district.remove(&d);
                    }
                }
            }
            if let Some(dev) = device {
                if let Some(n) = self.open_by_device.get_mut(&dev) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.open_by_device.remove(&dev);
                    }
                }
            }
        }
    }
}

/// What one evaluation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    /// Breached long enough: newly open.
    Opened,
    /// Still breached.
    Repeat,
    /// Was open, now clear.
    Cleared,
    /// First evaluation, clear (lets the lifecycle resolve an alert left open by a restart).
    InitialClear,
}

/// Moves a state with a fresh evaluation.
pub(super) fn transition(
    st: &mut EntityState,
    breached: bool,
    event_ms: u64,
    window_ms: u64,
    for_ms: u64,
) -> Option<Change> {
    if breached {
        match st.phase {
            Phase::Open => Some(Change::Repeat),
            phase => {
                let since = match phase {
                    Phase::Pending(s) => s,
                    _ => event_ms.saturating_sub(window_ms),
                };
                if event_ms.saturating_sub(since) >= for_ms {
                    st.phase = Phase::Open;
                    Some(Change::Opened)
                } else {
                    st.phase = Phase::Pending(since);
                    None
                }
            }
        }
    } else {
        let before = st.phase;
        st.phase = Phase::Clear;
        match before {
            Phase::Open => Some(Change::Cleared),
            Phase::Unknown => Some(Change::InitialClear),
            Phase::Clear | Phase::Pending(_) => None,
        }
    }
}
