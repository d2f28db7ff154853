//! The live feed: window results and KPI rows broadcast to WebSocket clients.

use std::sync::Arc;

use ioc_schemas::{AlertEvent, Kpi, KpiFamily, WindowResult};
use prometheus::IntCounter;
use tokio::sync::broadcast;

use crate::{ApiMetrics, DeviceDirectory};

/// The sending side of the live feed. Cheap to clone.
///
/// Two broadcasts, one for window results and one for KPI rows (every family), each keeping
/// the newest `capacity` updates. Publishing never waits: a client further behind than that
/// on a broadcast skips ahead and is told how many it missed (see the protocol in the crate
/// docs).
#[derive(Debug, Clone)]
pub struct LiveFeed {
    tx: broadcast::Sender<Arc<WindowResult>>,
    kpi_tx: broadcast::Sender<Arc<Kpi>>,
    alert_tx: broadcast::Sender<Arc<AlertEvent>>,
    updates: IntCounter,
    /// `ioc_api_ws_kpi_updates_total{family}`, in [`KpiFamily::ALL`] order.
    kpi_updates: Vec<IntCounter>,
    devices: DeviceDirectory,
}

impl LiveFeed {
    /// A feed keeping the newest `capacity` results and the newest `capacity` KPI rows (at
    /// least 1) for slow clients; publishes are counted in `ioc_api_ws_updates_total` and
    /// `ioc_api_ws_kpi_updates_total`. Device-health rows update a directory of its own;
    /// [`ApiState`](crate::ApiState) makes a feed that updates the API's directory.
    pub fn new(capacity: usize, metrics: &ApiMetrics) -> Self {
        LiveFeed::with_directory(capacity, metrics, DeviceDirectory::new())
    }

    pub(crate) fn with_directory(
        capacity: usize,
        metrics: &ApiMetrics,
        devices: DeviceDirectory,
    ) -> Self {
        // tokio's broadcast panics on a zero capacity.
        let (tx, _) = broadcast::channel(capacity.max(1));
        let (kpi_tx, _) = broadcast::channel(capacity.max(1));
        let (alert_tx, _) = broadcast::channel(capacity.max(1));
        LiveFeed {
            tx,
            kpi_tx,
            alert_tx,
            updates: metrics.ws_updates.clone(),
            kpi_updates: KpiFamily::ALL
                .iter()
                .map(|f| metrics.ws_kpi_updates.with_label_values(&[f.as_str()]))
                .collect(),
            devices,
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
        // An error only means there are no receivers right now.
        self.tx.send(result).unwrap_or(0)
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
        self.kpi_tx.send(kpi).unwrap_or(0)
    }

    /// A receiver of every result published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WindowResult>> {
        self.tx.subscribe()
    }

    /// Publishes an alert event to every client on the `alerts` channel; returns how many
    /// connections listen. Never blocks.
    pub fn publish_alert(&self, event: AlertEvent) -> usize {
        self.alert_tx.send(Arc::new(event)).unwrap_or(0)
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
