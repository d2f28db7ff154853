//! The live feed: window results, KPI rows and alert events broadcast to WebSocket
//! clients, the latest value of each key kept for the snapshots clients start from, and the
//! newest KPI rows kept for history without ClickHouse ([`RecentKpis`]).

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
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

/// A window result's key: device, metric, window size.
type WindowKey = (String, String, u64);
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
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The values passing `keep`, in key order.
    fn matching(&self, keep: impl Fn(&V) -> bool) -> Vec<Arc<V>> {
        self.lock().values().filter(|v| keep(v)).cloned().collect()
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
    windows: Arc<Latest<WindowKey, WindowResult>>,
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
            windows: Arc::new(Latest::new()),
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
        let key = (
            result.device_id.clone(),
            result.metric.clone(),
            result.window_size_ms,
        );
        // Kept before it is sent, and under the lock, so a client that subscribes and then
        // takes a snapshot misses nothing, and the kept value is the last one sent.
        let mut latest = self.windows.lock();
        keep_latest(
            &mut latest,
            key,
            &result,
            |old, new| (old.window_start_ms, old.version) > (new.window_start_ms, new.version),
            self.max_keys,
            &self.keys_dropped,
        );
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
                self.windows.matching(|r| filter.matches(r))
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
            self.windows.lock().len(),
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
        self.families.lock().unwrap_or_else(PoisonError::into_inner)
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
