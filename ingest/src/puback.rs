//! PUBACKs in the order their PUBLISHes arrived, as MQTT 3.1.1 §4.6 requires of a client
//! ([MQTT-4.6.0-2]): only the contiguous prefix of arrived messages that are durable is
//! acknowledged, so a message stored early (a dead letter, say) waits for those before it.
//!
//! Brokers hold this rule to different degrees: rumqttd drops a connection on an ack out of
//! order, mosquitto tolerates it. Keeping it makes the client correct against both.
//!
//! The PUBACKs due wait here, in order, until the MQTT task takes them all at once
//! ([`PubackOrder::take`]) and writes them to the connection in one go.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use ioc_schemas::Ack;
use prometheus::{IntCounter, IntGauge};
use tokio::sync::Notify;

/// The acknowledgements of one MQTT connection, released in arrival order.
pub(crate) struct PubackOrder {
    queue: Mutex<Queue>,
    /// `ioc_ingest_mqtt_unacked_messages`: arrived and not yet acknowledged.
    held: IntGauge,
    /// Woken when PUBACKs are due, for [`PubackOrder::take`].
    due: Notify,
    /// `ioc_ingest_ack_failures_total{transport="mqtt"}`: PUBACKs never sent because their
    /// connection ended first (the broker redelivers those messages).
    lost: IntCounter,
}

impl std::fmt::Debug for PubackOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubackOrder")
            .field("held", &self.held.get())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Queue {
    /// Counts connections: acknowledgements from an earlier one are never sent on this one,
    /// because the broker redelivers those messages (and the pipeline knows them as repeats).
    connection: u64,
    /// The arrival number of `slots[0]`.
    first: u64,
    /// Every message of this connection not yet acknowledged, in arrival order.
    slots: VecDeque<Slot>,
    /// Packet ids due a PUBACK, in order, not yet taken to be written. At most one per packet
    /// id in flight on the connection (65,535).
    unsent: VecDeque<u16>,
}

#[derive(Debug)]
struct Slot {
    pkid: u16,
    durable: bool,
}

impl PubackOrder {
    pub(crate) fn new(held: IntGauge, lost: IntCounter) -> Arc<PubackOrder> {
        Arc::new(PubackOrder {
            queue: Mutex::new(Queue::default()),
            held,
            due: Notify::new(),
            lost,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue stays consistent whatever panicked while holding it.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection ended: what was pending belongs to it and is forgotten (the broker
    /// redelivers those messages). Forgotten at once, so that no PUBACK released before the next
    /// connection goes out on it: after a clean session its packet id may name another message.
    pub(crate) fn forget_connection(&self) {
        let mut q = self.lock();
        q.connection += 1;
        q.first += q.slots.len() as u64;
        q.slots.clear();
        self.lost.inc_by(q.unsent.len() as u64);
        q.unsent.clear();
        self.held.set(0);
    }

    /// Records a QoS 1 message with packet id `pkid`; its PUBACK is sent once the returned
    /// [`Ack`] is done and every message that arrived before it has been acknowledged.
    pub(crate) fn arrived(self: &Arc<Self>, pkid: u16) -> Ack {
        let (connection, number) = {
            let mut q = self.lock();
            q.slots.push_back(Slot {
                pkid,
                durable: false,
            });
            self.held.set((q.slots.len() + q.unsent.len()) as i64);
            (q.connection, q.first + q.slots.len() as u64 - 1)
        };
        let order = Arc::clone(self);
        Ack::new(move || order.durable(connection, number))
    }

    /// Marks a message durable and makes the PUBACKs of the prefix now complete due.
    fn durable(&self, connection: u64, number: u64) {
        let mut q = self.lock();
        if q.connection != connection || number < q.first {
            return;
        }
        let index = usize::try_from(number - q.first).unwrap_or(usize::MAX);
        if let Some(slot) = q.slots.get_mut(index) {
            slot.durable = true;
        }
        let was_due = q.unsent.len();
        while let Some(slot) = q.slots.pop_front() {
            if !slot.durable {
                q.slots.push_front(slot);
                break;
            }
            q.first += 1;
            q.unsent.push_back(slot.pkid);
        }
        if q.unsent.len() > was_due {
            self.due.notify_one();
        }
        self.held.set((q.slots.len() + q.unsent.len()) as i64);
    }

    /// Resolves once PUBACKs are due (at once if some became due since the last wait).
    pub(crate) async fn due(&self) {
        self.due.notified().await;
    }

    /// Appends the packet ids due a PUBACK to `out`, in order; they are the connection's to
    /// write now.
    pub(crate) fn take(&self, out: &mut Vec<u16>) {
        let mut q = self.lock();
        out.extend(q.unsent.drain(..));
        self.held.set(q.slots.len() as i64);
    }

    /// PUBACKs taken but not written, because their connection failed: the broker
    /// redelivers their messages.
    pub(crate) fn lost(&self, count: usize) {
        self.lost.inc_by(count as u64);
    }

    /// Messages arrived on this connection and not yet acknowledged.
    #[cfg(test)]
    fn held(&self) -> usize {
        let q = self.lock();
        q.slots.len() + q.unsent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> (Arc<PubackOrder>, IntCounter) {
        let lost = IntCounter::new("lost", "lost").unwrap();
        let order = PubackOrder::new(IntGauge::new("held", "held").unwrap(), lost.clone());
        (order, lost)
    }

    fn taken(order: &PubackOrder) -> Vec<u16> {
        let mut out = Vec::new();
        order.take(&mut out);
        out
    }

    #[test]
    fn acknowledgements_leave_in_arrival_order_whatever_order_they_are_stored_in() {
        let (order, _) = order();
        let mut acks: Vec<Option<Ack>> = (1..=5).map(|pkid| Some(order.arrived(pkid))).collect();
        // Stored as 3, 5, 1, 4, 2.
        for (i, expect) in [
            (2, vec![]),
            (4, vec![]),
            (0, vec![1]),
            (3, vec![]),
            (1, vec![2, 3, 4, 5]),
        ] {
            acks[i].take().unwrap().done();
            assert_eq!(taken(&order), expect, "after storing {}", i + 1);
        }
        assert_eq!(order.held(), 0);
    }

    #[test]
    fn a_lost_connection_forgets_its_acknowledgements() {
        let (order, _) = order();
        let old = order.arrived(7);
        order.forget_connection();
        let new = order.arrived(7);
        old.done();
        assert!(taken(&order).is_empty(), "the old ack is not sent");
        assert_eq!(order.held(), 1);
        new.done();
        assert_eq!(taken(&order), vec![7]);
    }

    #[test]
    fn packet_ids_may_repeat_once_acknowledged() {
        let (order, _) = order();
        let mut sent = Vec::new();
        for _ in 0..3 {
            let a = order.arrived(1);
            let b = order.arrived(2);
            b.done();
            a.done();
            order.take(&mut sent);
        }
        assert_eq!(sent, vec![1, 2, 1, 2, 1, 2]);
    }

    #[tokio::test]
    async fn pubacks_due_wake_the_writer_and_wait_for_it_in_order() {
        let (order, _) = order();
        let acks: Vec<Ack> = (1..=5).map(|pkid| order.arrived(pkid)).collect();
        for ack in acks {
            ack.done();
        }
        assert_eq!(order.held(), 5, "due, not yet taken");
        tokio::time::timeout(std::time::Duration::from_secs(1), order.due())
            .await
            .expect("woken");
        order.arrived(6).done();
        assert_eq!(
            taken(&order),
            vec![1, 2, 3, 4, 5, 6],
            "all at once, in order"
        );
        assert_eq!(order.held(), 0);
    }

    #[test]
    fn a_lost_connection_forgets_the_pubacks_due() {
        let (order, lost) = order();
        order.arrived(1).done();
        assert_eq!(order.held(), 1);
        order.forget_connection();
        assert_eq!(order.held(), 0);
        assert_eq!(lost.get(), 1, "counted: the broker redelivers it");
        assert!(taken(&order).is_empty());
    }
}
