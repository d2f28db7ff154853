//! The sources' records wait while the spool is full, so a long ClickHouse outage pushes back
//! on the brokers, never on the dataflow.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;

use super::Spool;

impl Spool {
    /// Whether the spool holds less than `max_bytes`.
    fn has_room(&self) -> bool {
        self.inner.bytes.load(Ordering::Relaxed) < self.inner.max_bytes
    }

    /// Waits while the spool holds `max_bytes` or more.
    pub async fn wait_for_room(&self) {
        loop {
            let notified = self.inner.room.notified();
            if self.has_room() {
                return;
            }
            notified.await;
        }
    }
}

impl ioc_schemas::Admission for Spool {
    fn has_room(&self) -> bool {
        Spool::has_room(self)
    }

    fn room(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.wait_for_room())
    }
}
