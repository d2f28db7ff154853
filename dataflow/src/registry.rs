//! Readings joined with the device registry inside the dataflow.
//!
//! The registry is a differential collection of `(device id, DeviceMeta)`, arranged by device.
//! Changes enter at the time just past the newest event epoch seen, so they apply to the
//! readings that follow. Each reading is then half-joined with the arrangement as of its own
//! event time (the streaming side of a delta join: readings are not kept, only looked up), so
//! a registry change never rewrites what was already computed, and a reading that arrives late
//! within the lateness sees the registry of its own time.

use differential_dataflow::VecCollection;
use ioc_schemas::{Department, Device, District, Kind, Medium, WaterClass};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use crate::metrics::ByKind;
use crate::{FastMap, FastSet, Name, RecentIds};

/// What the dataflow needs of a registered device.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeviceMeta {
    /// The kind of readings it sends.
    pub kind: Kind,
    /// Its district.
    pub district: District,
    /// Its owner.
    pub department: Department,
    /// Its reporting interval, s.
    pub expected_interval_s: u32,
    /// A junction's free-flow speed in tenths of km/h (an integer, so entries are ordered).
    pub free_flow_dkmh: u32,
    /// A water station's class.
    pub water_class: Option<WaterClass>,
    /// A river gauge's flood alarm levels I, II and III in millimetres (integers, as above).
    pub flood_alarm_mm: Option<[i64; 3]>,
}

impl DeviceMeta {
    /// The dataflow's view of a registry entry.
    pub fn of(device: &Device) -> DeviceMeta {
        let free_flow = device
            .free_flow_kmh
            .unwrap_or(crate::kpi::traffic::DEFAULT_FREE_FLOW_KMH);
        DeviceMeta {
            kind: device.kind,
            district: device.district,
            department: device.department,
            expected_interval_s: device.expected_interval_s,
            free_flow_dkmh: (free_flow * 10.0).round() as u32,
            water_class: device.water_class,
            flood_alarm_mm: device
                .flood_alarm_m
                .map(|levels| levels.map(|m| (m * 1000.0).round() as i64)),
        }
    }

    /// A river gauge's flood alarm levels I, II and III, m.
    pub fn flood_alarm_m(&self) -> Option<[f64; 3]> {
        self.flood_alarm_mm
            .map(|levels| levels.map(|mm| mm as f64 / 1000.0))
    }

    /// The junction's free-flow speed, km/h.
    pub fn free_flow_kmh(&self) -> f64 {
        f64::from(self.free_flow_dkmh) / 10.0
    }
}

/// A reading's values by metric. One is kept inline, as most readings have one (a gauge's, a
/// camera event's count); a reading is then carried to its device's worker without an
/// allocation, which the other worker would have to free.
pub type Samples = smallvec::SmallVec<[(Name, f64); 1]>;

/// An on-time reading as the dataflow carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The device.
    pub device_id: Name,
    /// The reading kind.
    pub kind: Kind,
    /// The district its topic or header named.
    pub topic_district: District,
    /// For environment readings, what the station samples.
    pub medium: Option<Medium>,
    /// Event time, epoch ms.
    pub event_ms: u64,
    /// Its values by metric (see `Reading::samples`).
    pub samples: Samples,
    /// The fingerprint of `(device_id, message_id)` (see [`crate::RecentIds`]): a repeat fed
    /// by another worker is dropped where the device's readings meet.
    pub id: u128,
    /// Read back from storage at start-up (counted in windows; rules have seen it already).
    pub replayed: bool,
}

/// An observation with the registry entry of its device as of its event time; `None` for a
/// device the registry does not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enriched {
    /// The reading.
    pub observation: Observation,
    /// Its device, when registered.
    pub device: Option<DeviceMeta>,
}

impl Enriched {
    /// The district to count it in: the registry's, else the topic's.
    pub fn district(&self) -> District {
        self.device
            .as_ref()
            .map_or(self.observation.topic_district, |d| d.district)
    }
}

/// The registry the dataflow starts with, and where later changes come from.
#[derive(Debug)]
pub struct RegistryFeed {
    /// The devices registered at the start.
    pub devices: Vec<Device>,
    /// Changes made while running (the API's); none for a fixed registry.
    pub changes: Option<tokio::sync::mpsc::Receiver<ioc_schemas::DeviceChange>>,
}

impl RegistryFeed {
    /// A registry that does not change while running.
    pub fn fixed(devices: Vec<Device>) -> RegistryFeed {
        RegistryFeed {
            devices,
            changes: None,
        }
    }

    /// A registry changed at run time through `changes`.
    pub fn live(
        devices: Vec<Device>,
        changes: tokio::sync::mpsc::Receiver<ioc_schemas::DeviceChange>,
    ) -> RegistryFeed {
        RegistryFeed {
            devices,
            changes: Some(changes),
        }
    }
}

/// A device's registry history on one worker: its entry as of the compaction frontier, and
/// changes after it.
#[derive(Debug, Default)]
pub(crate) struct History {
    base: Vec<(DeviceMeta, isize)>,
    pub(crate) pending: Vec<(u64, DeviceMeta, isize)>,
}

impl History {
    /// The entry as of `time`: the value whose updates up to `time` sum to a positive count.
    pub(crate) fn as_of(&self, time: u64) -> Option<DeviceMeta> {
        if self.pending.is_empty() {
            return self
                .base
                .iter()
                .find(|(_, n)| *n > 0)
                .map(|(m, _)| m.clone());
        }
        let mut counts: Vec<(&DeviceMeta, isize)> =
            self.base.iter().map(|(m, n)| (m, *n)).collect();
        for (t, meta, diff) in &self.pending {
            if *t <= time {
                match counts.iter_mut().find(|(m, _)| *m == meta) {
                    Some((_, n)) => *n += diff,
                    None => counts.push((meta, *diff)),
                }
            }
        }
        counts
            .into_iter()
            .find(|(_, n)| *n > 0)
            .map(|(m, _)| m.clone())
    }

    /// Folds the changes at or before `frontier` into the base.
    pub(crate) fn compact(&mut self, frontier: u64) {
        if self.pending.iter().all(|(t, _, _)| *t > frontier) {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        for (t, meta, diff) in pending {
            if t > frontier {
                self.pending.push((t, meta, diff));
                continue;
            }
            match self.base.iter_mut().find(|(m, _)| *m == meta) {
                Some((_, n)) => *n += diff,
                None => self.base.push((meta, diff)),
            }
        }
        self.base.retain(|(_, n)| *n != 0);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.base.is_empty() && self.pending.is_empty()
    }
}

/// The registry's consolidated changes `((device, entry), time, ±1)`, each on the worker that
/// owns the device.
pub type RegistryChanges<'scope> = Stream<'scope, u64, Vec<((String, DeviceMeta), u64, isize)>>;

/// Arranges the registry by device (`RegistryByDevice`) and returns its consolidated changes.
pub fn registry_changes<'scope>(
    registry: VecCollection<'scope, u64, (String, DeviceMeta), isize>,
) -> RegistryChanges<'scope> {
    registry
        .arrange_by_key_named("RegistryByDevice")
        .as_vecs::<String, DeviceMeta>()
        .inner
}

/// Joins each observation with its device's registry entry as of the observation's time.
///
/// The registry's consolidated changes (see [`registry_changes`]) feed a per-device history on
/// the worker that owns the device, and observations, exchanged to the same worker, wait only
/// until the registry's frontier has passed their time. A repeat of an id taken there (fed by
/// another worker: another process, or another transport) is dropped and counted in
/// `repeats`, labelled by kind.
pub fn join_registry<'scope>(
    observations: Stream<'scope, u64, Vec<Observation>>,
    changes: RegistryChanges<'scope>,
    repeats: ByKind,
) -> Stream<'scope, u64, Vec<Enriched>> {
    // With one worker, its feeder has dropped every repeat already.
    let one_feeder = observations.scope().peers() == 1;
    observations.binary_frontier(
        changes,
        Exchange::new(|o: &Observation| o.device_id.route()),
        Pipeline,
        "JoinRegistry",
        |_cap, _info| {
            let mut histories: FastMap<Name, History> = FastMap::default();
            // Devices with changes not yet folded in: only these need compacting.
            let mut changed: FastSet<Name> = FastSet::default();
            let mut waiting: Vec<(Capability<u64>, Vec<Observation>)> = Vec::new();
            // Ids taken here; every observation still to come has an event time at or after
            // the input frontier (feeders send on-time readings at their epoch).
            let mut taken = RecentIds::default();
            move |(observed, observed_frontier), (changes, changes_frontier), output| {
                changes.for_each_stamp(|_cap, batches| {
                    for batch in batches {
                        for ((device, meta), time, diff) in batch.drain(..) {
                            let device = Name::of(&device);
                            changed.insert(device);
                            histories
                                .entry(device)
                                .or_default()
                                .pending
                                .push((time, meta, diff));
                        }
                    }
                });
                observed.for_each_stamp(|cap, batches| {
                    let Some(cap) = cap.retain_least(0) else {
                        return; // sent under no capability: nothing to join at
                    };
                    for batch in batches {
                        batch.retain(|o| {
                            if one_feeder {
                                return true;
                            }
                            let first = taken.insert_fingerprint(o.id, o.event_ms);
                            if !first {
                                repeats.get(o.kind).inc();
                            }
                            first
                        });
                        waiting.push((cap.clone(), std::mem::take(batch)));
                    }
                });
                // Observations whose time the registry has passed can be joined now.
                let mut still_waiting = Vec::new();
                for (cap, batch) in waiting.drain(..) {
                    let time = *cap.time();
                    if changes_frontier.less_equal(&time) {
                        still_waiting.push((cap, batch));
                        continue;
                    }
                    let mut session = output.session(&cap);
                    for observation in batch {
                        let device = histories
                            .get(&observation.device_id)
                            .and_then(|h| h.as_of(time));
                        session.give(Enriched {
                            observation,
                            device,
                        });
                    }
                }
                waiting = still_waiting;
                // No observation earlier than this can still come: fold older changes.
                let frontier = observed_frontier
                    .frontier()
                    .iter()
                    .copied()
                    .chain(waiting.iter().map(|(cap, _)| *cap.time()))
                    .min();
                if let Some(frontier) = observed_frontier.frontier().iter().min() {
                    taken.forget_before(*frontier);
                }
                if let Some(frontier) = frontier {
                    changed.retain(|device| {
                        let Some(history) = histories.get_mut(device) else {
                            return false;
                        };
                        history.compact(frontier);
                        if history.is_empty() {
                            histories.remove(device);
                            return false;
                        }
                        !history.pending.is_empty()
                    });
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(district: District) -> DeviceMeta {
        DeviceMeta {
            kind: Kind::Sensor,
            district,
            department: Department::DisasterPrevention,
            expected_interval_s: 60,
            free_flow_dkmh: 500,
            water_class: None,
            flood_alarm_mm: None,
        }
    }

    #[test]
    fn history_answers_as_of_a_time_and_compacts() {
        let mut h = History::default();
        h.pending.push((0, meta(District::HaiChau), 1));
        h.pending.push((100, meta(District::HaiChau), -1));
        h.pending.push((100, meta(District::CamLe), 1));
        assert_eq!(h.as_of(50), Some(meta(District::HaiChau)));
        assert_eq!(h.as_of(100), Some(meta(District::CamLe)));
        h.compact(60);
        assert_eq!(h.base, vec![(meta(District::HaiChau), 1)]);
        assert_eq!(h.as_of(60), Some(meta(District::HaiChau)));
        assert_eq!(h.as_of(150), Some(meta(District::CamLe)));
        h.pending.push((200, meta(District::CamLe), -1));
        h.compact(300);
        assert!(h.is_empty(), "removed: {h:?}");
        assert_eq!(h.as_of(400), None);
    }
}
