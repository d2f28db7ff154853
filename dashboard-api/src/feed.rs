//! The live feed: window results, KPI rows and alert events broadcast to WebSocket
//! clients, the latest value of each key kept for the snapshots clients start from, and the
//! newest KPI rows kept for history without ClickHouse ([`RecentKpis`]).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ioc_schemas::{AlertEvent, DeadLetter, Department, EpochMs, Kpi, KpiFamily, WindowResult};
use prometheus::IntCounter;
use tokio::sync::broadcast;

use crate::dead_letters::{DeadLetterView, RecentDeadLetters};
use crate::devices::DeviceDirectory;
use crate::metrics::ApiMetrics;
use crate::protocol::{Filter, Snapshot};
use crate::source::KpiHistoryQuery;

/// Keys kept per feed when none is configured (`http.snapshot_max_keys`).
pub(crate) const DEFAULT_SNAPSHOT_MAX_KEYS: usize = 100_000;

/// A KPI row's key: family, entity id, sub-key (a camera row's event type, else empty),
/// window size (which also tells an AQI's period).
type KpiKey = (&'static str, String, String, u64);

/// The newest value of each key of one feed, at most `max_keys` keys.
#[derive(Debug)]
struct Latest<K, V> {
    map: Mutex<BTreeMap<K, Arc<V>>>,
}

impl<K: Ord, V> Latest<K, V> {
    fn new() -> Self {
        Latest {
            map: Mutex::new(BTreeMap::new()),
        }
    }

    /// The map; a panic elsewhere while it was held cannot leave it half-updated.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<K, Arc<V>>> {
        lock(&self.map)
    }

    /// The values passing `keep`, in key order.
    fn matching(&self, keep: impl Fn(&V) -> bool) -> Vec<Arc<V>> {
        self.lock().values().filter(|v| keep(v)).cloned().collect()
    }
}

/// The newest window result of each device, metric and window size. Every window of every
/// series publishes here, mostly to a key already held, so a result is found by the strings it
/// carries, hashed, without building a key or comparing down a tree.
#[derive(Debug, Default)]
struct LatestWindows {
    /// Device, then metric, then one result per window size.
    devices: HashMap<String, HashMap<String, Vec<Arc<WindowResult>>, FastHash>, FastHash>,
    keys: usize,
}

type FastHash = foldhash::fast::RandomState;

/// A mutex's value; a panic elsewhere while it was held cannot leave it half-updated.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LatestWindows {
    /// Keeps `result` unless the one held for its key is newer (a later window, or a later
    /// version of the same one); a new key is not kept once `max_keys` are, only counted.
    fn keep(&mut self, result: &Arc<WindowResult>, max_keys: usize, dropped: &IntCounter) {
        let held = self
            .devices
            .get_mut(result.device_id.as_str())
            .and_then(|metrics| metrics.get_mut(result.metric.as_str()))
            .and_then(|sizes| {
                sizes
                    .iter_mut()
                    .find(|r| r.window_size_ms == result.window_size_ms)
            });
        if let Some(held) = held {
            if (held.window_start_ms, held.version) <= (result.window_start_ms, result.version) {
                *held = Arc::clone(result);
            }
            return;
        }
        if self.keys >= max_keys {
            dropped.inc();
            return;
        }
        self.keys += 1;
        self.devices
            .entry(result.device_id.clone())
            .or_default()
            .entry(result.metric.clone())
            .or_default()
            .push(Arc::clone(result));
    }

    /// The results passing `keep`, in key order (device, metric, window size).
    fn matching(&self, keep: impl Fn(&WindowResult) -> bool) -> Vec<Arc<WindowResult>> {
        let mut out: Vec<Arc<WindowResult>> = self
            .devices
            .values()
            .flat_map(|metrics| metrics.values().flatten())
            .filter(|r| keep(r))
            .cloned()
            .collect();
        out.sort_unstable_by(|a, b| {
            (&a.device_id, &a.metric, a.window_size_ms).cmp(&(
                &b.device_id,
                &b.metric,
                b.window_size_ms,
            ))
        });
        out
    }
}

/// Stores `value` under `key` in `map` unless the value there is strictly newer
/// (`kept_is_newer(old, new)`);
/// a new key is not stored once `map` holds `max_keys`, only counted in `dropped`.
fn keep_latest<K: Ord, V>(
    map: &mut BTreeMap<K, Arc<V>>,
    key: K,
    value: &Arc<V>,
    kept_is_newer: impl Fn(&V, &V) -> bool,
    max_keys: usize,
    dropped: &IntCounter,
) {
    let full = map.len() >= max_keys;
    match map.entry(key) {
        Entry::Occupied(mut old) => {
            if !kept_is_newer(old.get(), value) {
                old.insert(Arc::clone(value));
            }
        }
        Entry::Vacant(_) if full => dropped.inc(),
        Entry::Vacant(slot) => {
            slot.insert(Arc::clone(value));
        }
    }
}

fn kpi_key(kpi: &Kpi) -> KpiKey {
    (
        kpi.family().as_str(),
        kpi.entity_id().to_owned(),
        kpi.row_part().to_owned(),
        kpi.window_size_ms(),
    )
}

/// Dead letters a snapshot carries at most.
const SNAPSHOT_DEAD_LETTERS: usize = 50;

/// The sending side of the live feed. Cheap to clone.
///
/// Three broadcasts, for window results, KPI rows (every family) and alert events, each
/// keeping the newest `capacity` updates. Publishing never waits on a client: a client
/// further behind than that on a broadcast is told it lagged and gets a fresh snapshot (see
/// the protocol in the crate docs). The feed also keeps the newest value of each key
/// (bounded by `snapshot_max_keys` per feed) for those snapshots.
#[derive(Debug, Clone)]
pub struct LiveFeed {
    tx: broadcast::Sender<Arc<WindowResult>>,
    kpi_tx: broadcast::Sender<Arc<Kpi>>,
    alert_tx: broadcast::Sender<Arc<AlertEvent>>,
    dead_letter_tx: broadcast::Sender<Arc<DeadLetterView>>,
    windows: Arc<Mutex<LatestWindows>>,
    kpis: Arc<Latest<KpiKey, Kpi>>,
    alerts: Arc<Latest<String, AlertEvent>>,
    max_keys: usize,
    keys_dropped: IntCounter,
    updates: IntCounter,
    /// `ioc_api_ws_kpi_updates_total{family}`, in [`KpiFamily::ALL`] order.
    kpi_updates: Vec<IntCounter>,
    devices: DeviceDirectory,
    /// KPI history kept in memory while no ClickHouse serves it.
    recent: Arc<RecentKpis>,
    /// The newest dead letters, for the API without ClickHouse and for snapshots.
    recent_dead_letters: Arc<RecentDeadLetters>,
}

impl LiveFeed {
    /// A feed keeping the newest `capacity` results and the newest `capacity` KPI rows (at
    /// least 1) for slow clients; publishes are counted in `ioc_api_ws_updates_total` and
    /// `ioc_api_ws_kpi_updates_total`. Device-health rows update a directory of its own;
    /// [`ApiState`](crate::ApiState) makes a feed that updates the API's directory.
    pub fn new(capacity: usize, metrics: &ApiMetrics) -> Self {
        LiveFeed::with_snapshot_keys(capacity, DEFAULT_SNAPSHOT_MAX_KEYS, metrics)
    }

    /// Like [`LiveFeed::new`], keeping the latest value of at most `max_keys` keys per feed
    /// for snapshots (`http.snapshot_max_keys`).
    pub fn with_snapshot_keys(capacity: usize, max_keys: usize, metrics: &ApiMetrics) -> Self {
        let recent = Arc::new(RecentKpis::new(0, metrics.history_memory_evicted.clone()));
        LiveFeed::with_directory(capacity, max_keys, metrics, DeviceDirectory::new(), recent)
    }

    pub(crate) fn with_directory(
        capacity: usize,
        max_keys: usize,
        metrics: &ApiMetrics,
        devices: DeviceDirectory,
        recent: Arc<RecentKpis>,
    ) -> Self {
        // tokio's broadcast panics on a zero capacity.
        let (tx, _) = broadcast::channel(capacity.max(1));
        let (kpi_tx, _) = broadcast::channel(capacity.max(1));
        let (alert_tx, _) = broadcast::channel(capacity.max(1));
        let (dead_letter_tx, _) = broadcast::channel(capacity.max(1));
        LiveFeed {
            tx,
            kpi_tx,
            alert_tx,
            dead_letter_tx,
            recent_dead_letters: Arc::default(),
            windows: Arc::default(),
            kpis: Arc::new(Latest::new()),
            alerts: Arc::new(Latest::new()),
            max_keys,
            keys_dropped: metrics.snapshot_keys_dropped.clone(),
            updates: metrics.ws_updates.clone(),
            kpi_updates: KpiFamily::ALL
                .iter()
                .map(|f| metrics.ws_kpi_updates.with_label_values(&[f.as_str()]))
                .collect(),
            devices,
            recent,
        }
    }

    /// Publishes a result to every subscribed client; returns how many connections are
    /// subscribed (0 is fine: nobody is watching). Never blocks.
    pub fn publish(&self, result: WindowResult) -> usize {
        self.publish_shared(Arc::new(result))
    }

    /// Like [`LiveFeed::publish`] for a result already shared.
    pub fn publish_shared(&self, result: Arc<WindowResult>) -> usize {
        self.updates.inc();
        // Kept before it is sent, and under the lock, so a client that subscribes and then
        // takes a snapshot misses nothing, and the kept value is the last one sent.
        let mut latest = lock(&self.windows);
        latest.keep(&result, self.max_keys, &self.keys_dropped);
        // An error only means there are no receivers right now.
        self.tx.send(result).unwrap_or(0)
    }

    /// The KPI rows kept for history without ClickHouse.
    pub(crate) fn recent(&self) -> &RecentKpis {
        &self.recent
    }

    /// Publishes a KPI row to every connection subscribed to KPIs (whatever their
    /// families: each connection filters); returns how many there are. Never blocks. A
    /// device-scope health row also updates the status `/api/v1/devices` shows.
    pub fn publish_kpi(&self, kpi: Kpi) -> usize {
        self.publish_kpi_shared(Arc::new(kpi))
    }

    /// Like [`LiveFeed::publish_kpi`] for a row already shared.
    pub fn publish_kpi_shared(&self, kpi: Arc<Kpi>) -> usize {
        if let Kpi::Health(health) = kpi.as_ref() {
            self.devices.observe(health);
        }
        let family = kpi.family();
        if let Some(counter) = KpiFamily::ALL
            .iter()
            .position(|f| *f == family)
            .and_then(|i| self.kpi_updates.get(i))
        {
            counter.inc();
        }
        self.recent.record(&kpi);
        let mut latest = self.kpis.lock();
        keep_latest(
            &mut latest,
            kpi_key(&kpi),
            &kpi,
            |old, new| old.window_start_ms() > new.window_start_ms(),
            self.max_keys,
            &self.keys_dropped,
        );
        self.kpi_tx.send(kpi).unwrap_or(0)
    }

    /// A receiver of every result published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WindowResult>> {
        self.tx.subscribe()
    }

    /// Publishes an alert event to every client on the `alerts` channel; returns how many
    /// connections listen. Never blocks.
    pub fn publish_alert(&self, event: AlertEvent) -> usize {
        let event = Arc::new(event);
        let mut latest = self.alerts.lock();
        if event.alert.state.is_open() {
            keep_latest(
                &mut latest,
                event.alert.id.clone(),
                &event,
                |old, new| old.at_ms > new.at_ms,
                self.max_keys,
                &self.keys_dropped,
            );
        } else {
            // A resolved alert leaves the snapshot.
            latest.remove(&event.alert.id);
        }
        self.alert_tx.send(event).unwrap_or(0)
    }

    /// Publishes a rejected message to every client on the `dead_letters` channel and keeps
    /// it among the newest for the API; returns how many connections listen. Never blocks.
    pub fn publish_dead_letter(&self, letter: &DeadLetter) -> usize {
        let view = Arc::new(DeadLetterView::from(letter));
        self.recent_dead_letters.record(&view);
        self.dead_letter_tx.send(view).unwrap_or(0)
    }

    /// The newest dead letters kept in memory.
    pub(crate) fn recent_dead_letters(&self) -> &RecentDeadLetters {
        &self.recent_dead_letters
    }

    /// A receiver of every dead letter published from now on.
    pub(crate) fn subscribe_dead_letters(&self) -> broadcast::Receiver<Arc<DeadLetterView>> {
        self.dead_letter_tx.subscribe()
    }

    /// The latest value of each key that `filter` lets through, for the channels it
    /// subscribes; with `confined`, alerts of that department only. Take it after
    /// subscribing the receivers, so nothing published in between is missed.
    pub(crate) fn snapshot(&self, filter: &Filter, confined: Option<Department>) -> Snapshot {
        Snapshot {
            windows: if filter.wants_windows() {
                lock(&self.windows).matching(|r| filter.matches(r))
            } else {
                Vec::new()
            },
            kpis: if filter.wants_kpis() {
                self.kpis.matching(|k| filter.matches_kpi(k))
            } else {
                Vec::new()
            },
            alerts: if filter.wants_alerts() {
                self.alerts.matching(|e| {
                    confined.is_none_or(|own| e.alert.department == own) && filter.matches_alert(e)
                })
            } else {
                Vec::new()
            },
            // Dead letters belong to no department: a confined client gets none.
            dead_letters: if filter.wants_dead_letters() && confined.is_none() {
                self.recent_dead_letters.newest(SNAPSHOT_DEAD_LETTERS)
            } else {
                Vec::new()
            },
        }
    }

    /// Keys whose latest value is kept now: window results, KPI rows, open alerts.
    pub fn snapshot_keys(&self) -> (usize, usize, usize) {
        (
            lock(&self.windows).keys,
            self.kpis.lock().len(),
            self.alerts.lock().len(),
        )
    }

    /// A receiver of every alert event published from now on.
    pub fn subscribe_alerts(&self) -> broadcast::Receiver<Arc<AlertEvent>> {
        self.alert_tx.subscribe()
    }

    /// A receiver of every KPI row published from now on.
    pub fn subscribe_kpis(&self) -> broadcast::Receiver<Arc<Kpi>> {
        self.kpi_tx.subscribe()
    }

    /// Connections currently subscribed to window results.
    pub fn subscriber_count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Connections currently subscribed to at least one KPI family.
    pub fn kpi_subscriber_count(&self) -> usize {
        self.kpi_tx.receiver_count()
    }
}

/// Where a row sits in the in-memory history: by window start first, as the answers are
/// ordered, then by what makes it one row (a camera's event type, a water parameter).
type RowKey = (EpochMs, String, u64, String);

fn row_key(kpi: &Kpi) -> RowKey {
    (
        kpi.window_start_ms(),
        kpi.entity_id().to_owned(),
        kpi.window_size_ms(),
        kpi.row_part().to_owned(),
    )
}

/// The newest KPI rows, per family, for history without ClickHouse. Bounded: a family over
/// `max_per_family` rows drops its oldest window's rows first, counted in
/// `ioc_api_history_memory_evicted_total`. A newer version of a row replaces the older.
#[derive(Debug)]
pub(crate) struct RecentKpis {
    max_per_family: AtomicUsize,
    families: Mutex<BTreeMap<KpiFamily, BTreeMap<RowKey, Arc<Kpi>>>>,
    evicted: IntCounter,
}

impl RecentKpis {
    /// Keeps at most `max_per_family` rows per family (0: none).
    pub(crate) fn new(max_per_family: usize, evicted: IntCounter) -> Self {
        RecentKpis {
            max_per_family: AtomicUsize::new(max_per_family),
            families: Mutex::default(),
            evicted,
        }
    }

    pub(crate) fn max_per_family(&self) -> usize {
        self.max_per_family.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<KpiFamily, BTreeMap<RowKey, Arc<Kpi>>>> {
        // Every change leaves the maps consistent: a panic elsewhere does not spoil them.
        lock(&self.families)
    }

    pub(crate) fn record(&self, kpi: &Arc<Kpi>) {
        let max = self.max_per_family();
        if max == 0 {
            return;
        }
        let mut families = self.lock();
        let rows = families.entry(kpi.family()).or_default();
        rows.insert(row_key(kpi), Arc::clone(kpi));
        while rows.len() > max {
            rows.pop_first();
            self.evicted.inc();
        }
    }

    /// The rows matching `query`, as
    /// [`HistorySource::kpi_history`](crate::HistorySource::kpi_history) answers them.
    pub(crate) fn query(&self, query: &KpiHistoryQuery) -> Vec<Kpi> {
        let families = self.lock();
        let Some(rows) = families.get(&query.family) else {
            return Vec::new();
        };
        let from = (query.from_ms, String::new(), 0, String::new());
        rows.range(from..)
            .map(|(_, kpi)| kpi)
            .take_while(|kpi| kpi.window_start_ms() < query.to_ms)
            .filter(|kpi| {
                query.entity.as_deref().is_none_or(|e| kpi.entity_id() == e)
                    && query.district.is_none_or(|d| kpi.district() == Some(d))
                    && query.scope.is_none_or(|s| kpi.scope() == Some(s))
                    && query
                        .window_size_ms
                        .is_none_or(|size| kpi.window_size_ms() == size)
            })
            .take(query.limit as usize)
            .map(|kpi| Kpi::clone(kpi))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioc_schemas::{District, Kind};

    fn result(
        device: &str,
        metric: &str,
        size: u64,
        start: u64,
        version: u32,
    ) -> Arc<WindowResult> {
        Arc::new(WindowResult {
            kind: Kind::Sensor,
            district: District::HaiChau,
            device_id: device.to_owned(),
            metric: metric.to_owned(),
            window_start_ms: start,
            window_size_ms: size,
            count: 1,
            sum: 1.0,
            min: 1.0,
            max: 1.0,
            mean: 1.0,
            emitted_at_ms: 0,
            version,
            is_final: false,
        })
    }

    fn kept(latest: &LatestWindows) -> Vec<(String, String, u64, u64, u32)> {
        latest
            .matching(|_| true)
            .iter()
            .map(|r| {
                let (device, metric) = (r.device_id.clone(), r.metric.clone());
                (
                    device,
                    metric,
                    r.window_size_ms,
                    r.window_start_ms,
                    r.version,
                )
            })
            .collect()
    }

    #[test]
    fn the_newest_window_result_of_each_key_is_kept_in_key_order() {
        let dropped = IntCounter::new("dropped", "dropped").unwrap();
        let mut latest = LatestWindows::default();
        for r in [
            result("b", "pm25", 60_000, 0, 2),
            result("a", "pm25", 300_000, 0, 2),
            result("a", "pm25", 60_000, 60_000, 2),
            // An older window, and an older version of the kept one: both ignored.
            result("a", "pm25", 60_000, 0, 9),
            result("a", "pm25", 60_000, 60_000, 1),
            // A correction of the kept window replaces it.
            result("b", "pm25", 60_000, 0, 3),
            result("a", "no2", 60_000, 0, 2),
        ] {
            latest.keep(&r, 4, &dropped);
        }
        assert_eq!(
            kept(&latest),
            [
                ("a".into(), "no2".into(), 60_000, 0, 2),
                ("a".into(), "pm25".into(), 60_000, 60_000, 2),
                ("a".into(), "pm25".into(), 300_000, 0, 2),
                ("b".into(), "pm25".into(), 60_000, 0, 3),
            ]
        );
        assert_eq!(dropped.get(), 0);
        // Full: a new key is counted, not kept; a held key still updates.
        latest.keep(&result("c", "pm25", 60_000, 0, 2), 4, &dropped);
        latest.keep(&result("b", "pm25", 60_000, 60_000, 2), 4, &dropped);
        assert_eq!(dropped.get(), 1);
        assert_eq!(latest.keys, 4);
        assert_eq!(
            kept(&latest)[3],
            ("b".into(), "pm25".into(), 60_000, 60_000, 2)
        );
    }
}
