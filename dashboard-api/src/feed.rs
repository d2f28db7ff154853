//! The live feed: window results broadcast to WebSocket clients.

use std::sync::Arc;

use ioc_schemas::WindowResult;
use prometheus::IntCounter;
use tokio::sync::broadcast;

use crate::ApiMetrics;

/// The sending side of the live feed. Cheap to clone.
///
/// Publishing never waits: the broadcast keeps the newest `capacity` results, and a client
/// further behind than that skips ahead and is told how many it missed (see the protocol in
/// the crate docs).
#[derive(Debug, Clone)]
pub struct LiveFeed {
    tx: broadcast::Sender<Arc<WindowResult>>,
    updates: IntCounter,
}

impl LiveFeed {
    /// A feed keeping the newest `capacity` results (at least 1) for slow clients; publishes
    /// are counted in `ioc_api_ws_updates_total`.
    pub fn new(capacity: usize, metrics: &ApiMetrics) -> Self {
        // tokio's broadcast panics on a zero capacity.
        let (tx, _) = broadcast::channel(capacity.max(1));
        LiveFeed {
            tx,
            updates: metrics.ws_updates.clone(),
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

    /// A receiver of every result published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WindowResult>> {
        self.tx.subscribe()
    }

    /// Connections currently subscribed.
    pub fn subscriber_count(&self) -> usize {
        self.tx.receiver_count()
    }
}
