//! PUBACKs in the order their PUBLISHes arrived, as MQTT 3.1.1 §4.6 requires of a client
//! ([MQTT-4.6.0-2]): only the contiguous prefix of arrived messages that are durable is
//! acknowledged, so a message stored early (a dead letter, say) waits for those before it.
//!
//! Brokers hold this rule to different degrees: rumqttd drops a connection on an ack out of
//! order, mosquitto tolerates it. Keeping it makes the client correct against both.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use ioc_schemas::Ack;
use prometheus::IntGauge;

/// Queues the acknowledgement of one packet id.
pub(crate) type SendAck = Box<dyn Fn(u16) + Send + Sync>;

/// The acknowledgements of one MQTT connection, released in arrival order.
pub(crate) struct PubackOrder {
    queue: Mutex<Queue>,
    send: SendAck,
    /// `ioc_ingest_mqtt_unacked_messages`: arrived and not yet acknowledged.
    held: IntGauge,
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
}

#[derive(Debug)]
struct Slot {
    pkid: u16,
    durable: bool,
}

impl PubackOrder {
    /// `send` queues one PUBACK; it is called with the queue locked, so calls come in order.
    pub(crate) fn new(send: SendAck, held: IntGauge) -> Arc<PubackOrder> {
        Arc::new(PubackOrder {
            queue: Mutex::new(Queue::default()),
            send,
            held,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue stays consistent whatever panicked while holding it.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection: what was pending belongs to the old one and is forgotten.
    pub(crate) fn connected(&self) {
        let mut q = self.lock();
        q.connection += 1;
        q.first += q.slots.len() as u64;
        q.slots.clear();
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
            self.held.set(q.slots.len() as i64);
            (q.connection, q.first + q.slots.len() as u64 - 1)
        };
        let order = Arc::clone(self);
        Ack::new(move || order.durable(connection, number))
    }

    /// Marks a message durable and sends the PUBACKs of the prefix that is now complete.
    fn durable(&self, connection: u64, number: u64) {
        let mut q = self.lock();
        if q.connection != connection || number < q.first {
            return;
        }
        let index = usize::try_from(number - q.first).unwrap_or(usize::MAX);
        if let Some(slot) = q.slots.get_mut(index) {
            slot.durable = true;
        }
        while let Some(slot) = q.slots.pop_front() {
            if !slot.durable {
                q.slots.push_front(slot);
                break;
            }
            q.first += 1;
            (self.send)(slot.pkid);
        }
        self.held.set(q.slots.len() as i64);
    }

    /// Messages arrived on this connection and not yet acknowledged.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording() -> (Arc<PubackOrder>, Arc<Mutex<Vec<u16>>>) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&sent);
        let order = PubackOrder::new(
            Box::new(move |pkid| log.lock().unwrap().push(pkid)),
            IntGauge::new("held", "held").unwrap(),
        );
        (order, sent)
    }

    #[test]
    fn acknowledgements_leave_in_arrival_order_whatever_order_they_are_stored_in() {
        let (order, sent) = recording();
        let mut acks: Vec<Option<Ack>> = (1..=5).map(|pkid| Some(order.arrived(pkid))).collect();
        // Stored as 3, 5, 1, 4, 2.
        for (i, expect) in [
            (2, vec![]),
            (4, vec![]),
            (0, vec![1]),
            (3, vec![1]),
            (1, vec![1, 2, 3, 4, 5]),
        ] {
            acks[i].take().unwrap().done();
            assert_eq!(*sent.lock().unwrap(), expect, "after storing {}", i + 1);
        }
        assert_eq!(order.held(), 0);
    }

    #[test]
    fn a_new_connection_forgets_the_old_ones_acknowledgements() {
        let (order, sent) = recording();
        let old = order.arrived(7);
        order.connected();
        let new = order.arrived(7);
        old.done();
        assert!(sent.lock().unwrap().is_empty(), "the old ack is not sent");
        assert_eq!(order.held(), 1);
        new.done();
        assert_eq!(*sent.lock().unwrap(), vec![7]);
    }

    #[test]
    fn packet_ids_may_repeat_once_acknowledged() {
        let (order, sent) = recording();
        for round in 0..3u16 {
            let a = order.arrived(1);
            let b = order.arrived(2);
            b.done();
            a.done();
            assert_eq!(sent.lock().unwrap().len(), usize::from(round + 1) * 2);
        }
        assert_eq!(*sent.lock().unwrap(), vec![1, 2, 1, 2, 1, 2]);
    }
}
