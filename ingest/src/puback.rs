//! PUBACKs in the order their PUBLISHes arrived, as MQTT 3.1.1 §4.6 requires of a client
//! ([MQTT-4.6.0-2]): only the contiguous prefix of arrived messages that are durable is
//! acknowledged, so a message stored early (a dead letter, say) waits for those before it.
//!
//! Brokers hold this rule to different degrees: rumqttd drops a connection on an ack out of
//! order, mosquitto tolerates it. Keeping it makes the client correct against both.
//!
//! A PUBACK the client's request queue cannot take yet is kept, in order, and sent by
//! [`PubackOrder::flush`] once the event loop has made room: a lost PUBACK would hold the
//! broker's in-flight slot for that message until the next connection.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use ioc_schemas::Ack;
use prometheus::{IntCounter, IntGauge};
use tokio::sync::Notify;

/// Queues the acknowledgement of one packet id; `false` when the request queue is full.
pub(crate) type SendAck = Box<dyn Fn(u16) -> bool + Send + Sync>;

/// The acknowledgements of one MQTT connection, released in arrival order.
pub(crate) struct PubackOrder {
    queue: Mutex<Queue>,
    send: SendAck,
    /// `ioc_ingest_mqtt_unacked_messages`: arrived and not yet acknowledged.
    held: IntGauge,
    /// Woken when a PUBACK is kept back for [`PubackOrder::flush`].
    kept: Notify,
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
    /// Packet ids due a PUBACK that the request queue has not taken yet, in order; later ones
    /// wait behind them.
    unsent: VecDeque<u16>,
}

#[derive(Debug)]
struct Slot {
    pkid: u16,
    durable: bool,
}

impl PubackOrder {
    /// `send` queues one PUBACK; it is called with the queue locked, so calls come in order.
    pub(crate) fn new(send: SendAck, held: IntGauge, lost: IntCounter) -> Arc<PubackOrder> {
        Arc::new(PubackOrder {
            queue: Mutex::new(Queue::default()),
            send,
            held,
            kept: Notify::new(),
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
            q.unsent.push_back(slot.pkid);
        }
        if !self.send_unsent(&mut q) {
            self.kept.notify_one();
        }
        self.held.set((q.slots.len() + q.unsent.len()) as i64);
    }

    /// Sends the PUBACKs kept back, in order, as far as the request queue takes them. `true`:
    /// none is left.
    pub(crate) fn flush(&self) -> bool {
        let mut q = self.lock();
        let done = self.send_unsent(&mut q);
        self.held.set((q.slots.len() + q.unsent.len()) as i64);
        done
    }

    /// Resolves once a PUBACK has been kept back since the last [`PubackOrder::flush`].
    pub(crate) async fn kept_back(&self) {
        self.kept.notified().await;
    }

    fn send_unsent(&self, q: &mut Queue) -> bool {
        while let Some(&pkid) = q.unsent.front() {
            if !(self.send)(pkid) {
                return false;
            }
            q.unsent.pop_front();
        }
        true
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

    fn recording() -> (Arc<PubackOrder>, Arc<Mutex<Vec<u16>>>) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&sent);
        let order = PubackOrder::new(
            Box::new(move |pkid| {
                log.lock().unwrap().push(pkid);
                true
            }),
            IntGauge::new("held", "held").unwrap(),
            IntCounter::new("lost", "lost").unwrap(),
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
    fn a_lost_connection_forgets_its_acknowledgements() {
        let (order, sent) = recording();
        let old = order.arrived(7);
        order.forget_connection();
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

    #[tokio::test]
    async fn a_puback_the_full_queue_refuses_is_kept_and_sent_in_order_later() {
        let room = Arc::new(Mutex::new(2usize));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (r, log) = (Arc::clone(&room), Arc::clone(&sent));
        let order = PubackOrder::new(
            Box::new(move |pkid| {
                let mut room = r.lock().unwrap();
                if *room == 0 {
                    return false;
                }
                *room -= 1;
                log.lock().unwrap().push(pkid);
                true
            }),
            IntGauge::new("held", "held").unwrap(),
            IntCounter::new("lost", "lost").unwrap(),
        );
        let acks: Vec<Ack> = (1..=5).map(|pkid| order.arrived(pkid)).collect();
        for ack in acks {
            ack.done();
        }
        assert_eq!(*sent.lock().unwrap(), vec![1, 2]);
        assert_eq!(order.held(), 3, "3, 4 and 5 kept back, not lost");
        // The flusher is woken, and a later release waits behind what is kept.
        tokio::time::timeout(std::time::Duration::from_secs(1), order.kept_back())
            .await
            .expect("woken");
        order.arrived(6).done();
        assert_eq!(*sent.lock().unwrap(), vec![1, 2]);
        *room.lock().unwrap() = 3;
        assert!(!order.flush(), "room for 3 of 4");
        *room.lock().unwrap() = 10;
        assert!(order.flush());
        assert_eq!(*sent.lock().unwrap(), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(order.held(), 0);
    }

    #[test]
    fn a_lost_connection_forgets_the_pubacks_kept_back() {
        let lost = IntCounter::new("lost", "lost").unwrap();
        let order = PubackOrder::new(
            Box::new(|_| false),
            IntGauge::new("held", "held").unwrap(),
            lost.clone(),
        );
        order.arrived(1).done();
        assert_eq!(order.held(), 1);
        order.forget_connection();
        assert_eq!(order.held(), 0);
        assert_eq!(lost.get(), 1, "counted: the broker redelivers it");
        assert!(order.flush());
    }
}
