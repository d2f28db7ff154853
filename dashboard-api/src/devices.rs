//! The device registry as the API sees it: the directory of registered devices with their
//! live status, the requests that carry changes to the pipeline, and the tracker of
//! unregistered devices that send readings.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use ioc_schemas::{Device, DeviceChange, DeviceStatus, District, EpochMs, HealthKpi, Kind, Scope};
use prometheus::{IntCounter, IntGauge};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::ApiMetrics;

/// A registry change made through the API, handed to the pipeline.
///
/// The API sends it on the bounded channel given to
/// [`ApiState::set_registry_sender`](crate::ApiState::set_registry_sender) and waits for
/// the answer on `reply`. The receiver (the process running the pipeline) makes the change
/// durable and feeds it to the dataflow, then answers `Ok(())`; or answers `Err(reason)`
/// when it cannot, and the API reports the reason with a 503. Only after `Ok` does the API
/// update its own [`DeviceDirectory`].
#[derive(Debug)]
pub struct RegistryRequest {
    /// The change.
    pub change: DeviceChange,
    /// Where to answer. Dropping it unanswered counts as a failure.
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// A registered device with its live state, as listed at `/api/v1/devices`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct DeviceView {
    /// The registered description (its fields are inlined in the JSON).
    #[serde(flatten)]
    pub device: Device,
    /// `online` or `offline` as of the newest device-health KPI row seen for it;
    /// `never_seen` when that row says so or no row has been seen yet.
    pub status: DeviceStatus,
    /// Its newest event time the pipeline has seen, epoch ms; `null` when unknown.
    pub last_seen_ms: Option<EpochMs>,
    /// The end of the health window `status` comes from, epoch ms; `null` when no row has
    /// been seen.
    pub status_at_ms: Option<EpochMs>,
}

/// What the newest device-scope health row said about a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Observation {
    status: DeviceStatus,
    last_seen_ms: Option<EpochMs>,
    /// Window end of the row that set `status`.
    as_of_ms: EpochMs,
}

#[derive(Debug, Default)]
struct Directory {
    devices: BTreeMap<String, Device>,
    /// Only for registered ids, so it is bounded by the registry.
    seen: HashMap<String, Observation>,
}

impl Directory {
    fn view(&self, device: &Device) -> DeviceView {
        let seen = self.seen.get(&device.id);
        DeviceView {
            device: device.clone(),
            status: seen.map_or(DeviceStatus::NeverSeen, |s| s.status),
            last_seen_ms: seen.and_then(|s| s.last_seen_ms),
            status_at_ms: seen.map(|s| s.as_of_ms),
        }
    }
}

/// The registered devices the API lists, with the status the pipeline last reported for
/// each. Cheap to clone; every clone sees the same directory.
///
/// The caller fills it at start-up with the fleet the pipeline runs with
/// ([`ApiState::with_devices`](crate::ApiState::with_devices)); afterwards the API applies
/// the changes the pipeline confirmed, and the caller applies with [`DeviceDirectory::apply`]
/// any change it makes itself. Statuses come from device-scope
/// [`HealthKpi`] rows published through [`LiveFeed::publish_kpi`](crate::LiveFeed::publish_kpi).
#[derive(Debug, Clone, Default)]
pub struct DeviceDirectory {
    inner: Arc<RwLock<Directory>>,
}

impl DeviceDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        DeviceDirectory::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Directory> {
        // Every write leaves the maps consistent: a panic elsewhere does not spoil them.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Directory> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces every device with `devices` (the caller validated them, e.g. with
    /// [`ioc_schemas::parse_fleet`]). Statuses of ids that stay are kept.
    pub fn replace_all(&self, devices: impl IntoIterator<Item = Device>) {
        let devices: BTreeMap<String, Device> =
            devices.into_iter().map(|d| (d.id.clone(), d)).collect();
        let mut dir = self.write();
        dir.seen.retain(|id, _| devices.contains_key(id));
        dir.devices = devices;
    }

    /// Applies a change the pipeline has made.
    pub fn apply(&self, change: &DeviceChange) {
        let mut dir = self.write();
        match change {
            DeviceChange::Upsert(device) => {
                dir.devices.insert(device.id.clone(), device.clone());
            }
            DeviceChange::Remove { id } => {
                dir.devices.remove(id);
                dir.seen.remove(id);
            }
        }
    }

    /// The device registered as `id`, with its status.
    pub fn get(&self, id: &str) -> Option<DeviceView> {
        let dir = self.read();
        dir.devices.get(id).map(|d| dir.view(d))
    }

    /// Whether `id` is registered.
    pub fn contains(&self, id: &str) -> bool {
        self.read().devices.contains_key(id)
    }

    /// Registered devices.
    pub fn len(&self) -> usize {
        self.read().devices.len()
    }

    /// Whether no device is registered.
    pub fn is_empty(&self) -> bool {
        self.read().devices.is_empty()
    }

    /// The registered devices that pass `keep`, by id, with their status.
    pub fn list(&self, mut keep: impl FnMut(&Device) -> bool) -> Vec<DeviceView> {
        let dir = self.read();
        dir.devices
            .values()
            .filter(|d| keep(d))
            .map(|d| dir.view(d))
            .collect()
    }

    /// Takes the status of a device-scope health row; other rows, and rows about ids not
    /// registered, are ignored. A row for an older window than the one already seen (a late
    /// update) only moves `last_seen_ms` forward.
    pub(crate) fn observe(&self, kpi: &HealthKpi) {
        if kpi.scope != Scope::Device {
            return;
        }
        let as_of_ms = kpi.window_start_ms.saturating_add(kpi.window_size_ms);
        let status = kpi.status.unwrap_or(if kpi.online > 0 {
            DeviceStatus::Online
        } else if kpi.last_seen_ms.is_some() {
            DeviceStatus::Offline
        } else {
            DeviceStatus::NeverSeen
        });
        let mut dir = self.write();
        if !dir.devices.contains_key(&kpi.entity_id) {
            return;
        }
        match dir.seen.get_mut(&kpi.entity_id) {
            Some(seen) => {
                seen.last_seen_ms = seen.last_seen_ms.max(kpi.last_seen_ms);
                if as_of_ms >= seen.as_of_ms {
                    seen.status = status;
                    seen.as_of_ms = as_of_ms;
                }
            }
            None => {
                dir.seen.insert(
                    kpi.entity_id.clone(),
                    Observation {
                        status,
                        last_seen_ms: kpi.last_seen_ms,
                        as_of_ms,
                    },
                );
            }
        }
    }
}

/// A device id that sent readings but is not registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UnknownDevice {
    /// The id the readings carry.
    pub id: String,
    /// The kind of its latest reading.
    pub kind: Kind,
    /// The district of its latest reading (from its topic or message header).
    pub district: District,
    /// Readings recorded.
    pub readings: u64,
    /// The smallest event time recorded, epoch ms.
    pub first_seen_ms: EpochMs,
    /// The largest event time recorded, epoch ms.
    pub last_seen_ms: EpochMs,
}

#[derive(Debug, Default)]
struct UnknownInner {
    by_id: HashMap<String, UnknownDevice>,
    dropped: u64,
}

/// Unregistered devices that send readings, listed at `GET /api/v1/devices/unknown`.
/// Cheap to clone; every clone sees the same list.
///
/// The pipeline stores and counts such readings; the process running it calls
/// [`UnknownDevices::record`] for each. The list is bounded: once `max` ids are tracked,
/// readings from further new ids are not tracked, only counted (`dropped`, and
/// `ioc_api_unknown_devices_dropped_total`); ids already tracked keep being updated. An id
/// leaves the list when the device is registered through the API (or
/// [`UnknownDevices::forget`]), which frees its place.
#[derive(Debug, Clone)]
pub struct UnknownDevices {
    inner: Arc<Mutex<UnknownInner>>,
    max: usize,
    tracked: IntGauge,
    dropped: IntCounter,
}

impl UnknownDevices {
    /// A list tracking at most `max` ids, reporting to `ioc_api_unknown_devices` and
    /// `ioc_api_unknown_devices_dropped_total`.
    pub fn new(max: usize, metrics: &ApiMetrics) -> Self {
        UnknownDevices {
            inner: Arc::default(),
            max,
            tracked: metrics.unknown_devices.clone(),
            dropped: metrics.unknown_devices_dropped.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, UnknownInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one reading of event time `event_ms` from the unregistered device `id`.
    /// Never blocks for long (a short lock); allocates only for a new id.
    pub fn record(&self, id: &str, kind: Kind, district: District, event_ms: EpochMs) {
        let mut inner = self.lock();
        if let Some(seen) = inner.by_id.get_mut(id) {
            seen.kind = kind;
            seen.district = district;
            seen.readings += 1;
            seen.first_seen_ms = seen.first_seen_ms.min(event_ms);
            seen.last_seen_ms = seen.last_seen_ms.max(event_ms);
            return;
        }
        if inner.by_id.len() >= self.max {
            inner.dropped += 1;
            self.dropped.inc();
            return;
        }
        inner.by_id.insert(
            id.to_owned(),
            UnknownDevice {
                id: id.to_owned(),
                kind,
                district,
                readings: 1,
                first_seen_ms: event_ms,
                last_seen_ms: event_ms,
            },
        );
        self.tracked.set(gauge_value(inner.by_id.len()));
    }

    /// Stops tracking `id` (it has been registered); returns what was tracked.
    pub fn forget(&self, id: &str) -> Option<UnknownDevice> {
        let mut inner = self.lock();
        let gone = inner.by_id.remove(id);
        self.tracked.set(gauge_value(inner.by_id.len()));
        gone
    }

    /// The tracked devices, by id.
    pub fn list(&self) -> Vec<UnknownDevice> {
        let mut devices: Vec<UnknownDevice> = self.lock().by_id.values().cloned().collect();
        devices.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        devices
    }

    /// The tracked device `id`.
    pub fn get(&self, id: &str) -> Option<UnknownDevice> {
        self.lock().by_id.get(id).cloned()
    }

    /// Ids tracked now.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether no id is tracked.
    pub fn is_empty(&self) -> bool {
        self.lock().by_id.is_empty()
    }

    /// Readings not tracked because the list was full, since start.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// The most ids tracked.
    pub fn max(&self) -> usize {
        self.max
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioc_schemas::Department;

    fn device(id: &str) -> Device {
        Device {
            id: id.into(),
            kind: Kind::Environment,
            name: "Trạm quan trắc".into(),
            district: District::SonTra,
            lat: 16.1,
            lon: 108.2,
            department: Department::Environment,
            expected_interval_s: 60,
            free_flow_kmh: None,
            water_class: None,
            flood_alarm_m: None,
        }
    }

    fn health(id: &str, start: EpochMs, status: DeviceStatus, last: Option<EpochMs>) -> HealthKpi {
        HealthKpi {
            scope: Scope::Device,
            entity_id: id.into(),
            district: Some(District::SonTra),
            department: Some(Department::Environment),
            window_start_ms: start,
            window_size_ms: 60_000,
            devices: 1,
            online: u32::from(status == DeviceStatus::Online),
            offline: u32::from(status != DeviceStatus::Online),
            readings: 1,
            expected: 1,
            completeness_pct: 100.0,
            last_seen_ms: last,
            status: Some(status),
        }
    }

    #[test]
    fn status_follows_the_newest_window_and_ignores_strangers() {
        let dir = DeviceDirectory::new();
        dir.replace_all([device("a"), device("b")]);
        assert_eq!(dir.get("a").unwrap().status, DeviceStatus::NeverSeen);
        dir.observe(&health("a", 120_000, DeviceStatus::Online, Some(150_000)));
        // A late update of an older window moves last_seen only.
        dir.observe(&health("a", 60_000, DeviceStatus::Offline, Some(170_000)));
        let a = dir.get("a").unwrap();
        assert_eq!(a.status, DeviceStatus::Online);
        assert_eq!(a.last_seen_ms, Some(170_000));
        assert_eq!(a.status_at_ms, Some(180_000));
        dir.observe(&health("zzz", 0, DeviceStatus::Online, Some(1)));
        assert!(dir.get("zzz").is_none());
        let mut district = health("son_tra", 0, DeviceStatus::Online, None);
        district.scope = Scope::District;
        dir.observe(&district);
        // Removing forgets the status; registering again starts from never_seen.
        dir.apply(&DeviceChange::Remove { id: "a".into() });
        assert!(!dir.contains("a"));
        dir.apply(&DeviceChange::Upsert(device("a")));
        assert_eq!(dir.get("a").unwrap().status, DeviceStatus::NeverSeen);
        assert_eq!(dir.list(|d| d.id == "b").len(), 1);
        let json = serde_json::to_value(dir.get("b").unwrap()).unwrap();
        assert_eq!(json["id"], "b");
        assert_eq!(json["status"], "never_seen");
        assert!(json["last_seen_ms"].is_null());
    }

    #[test]
    fn unknown_devices_are_bounded() {
        let metrics = ApiMetrics::new(&prometheus::Registry::new()).unwrap();
        let unknown = UnknownDevices::new(2, &metrics);
        unknown.record("x", Kind::Sensor, District::CamLe, 10);
        unknown.record("x", Kind::Sensor, District::CamLe, 5);
        unknown.record("y", Kind::Sensor, District::CamLe, 7);
        unknown.record("z", Kind::Sensor, District::CamLe, 7);
        unknown.record("z", Kind::Sensor, District::CamLe, 8);
        assert_eq!(unknown.len(), 2);
        assert_eq!(unknown.dropped(), 2);
        assert_eq!(metrics.unknown_devices_dropped.get(), 2);
        assert_eq!(metrics.unknown_devices.get(), 2);
        let x = unknown.get("x").unwrap();
        assert_eq!((x.readings, x.first_seen_ms, x.last_seen_ms), (2, 5, 10));
        assert!(unknown.forget("x").is_some());
        unknown.record("z", Kind::Sensor, District::CamLe, 9);
        let ids: Vec<String> = unknown.list().into_iter().map(|d| d.id).collect();
        assert_eq!(ids, ["y", "z"]);
    }
}
