//! Watermark alignment holds a Kafka partition back by not reading it: from the first time it
//! is held, the partition is read from a queue of its own (librdkafka's partition queue), which
//! is left unread while it is held.
//!
//! librdkafka then keeps what it prefetched for the partition and stops fetching it once
//! `kafka.queued_max_kbytes` wait in its queue. Pausing the partition instead would drop what
//! was prefetched and fetch it again on resume, from the offset after the last message taken,
//! which on tansu 0.6.0 may be inside a record batch: tansu then skips the rest of that batch.
//! Partitions never held stay on the consumer's main queue, whose prefetch limit is shared, so
//! a live stream or a storage outage holds no more than before.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::Poll;

use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;

use crate::partitions::{Partitions, Tp};

/// Messages taken from one queue in a row before the next queue's turn: few enough to keep
/// the partitions' event times close, enough not to look at every empty queue per message.
const BURST: usize = 64;

struct Queue<C: ConsumerContext + 'static> {
    tp: Tp,
    queue: StreamPartitionQueue<C>,
    /// Held back by alignment: not read.
    held: bool,
    /// The main queue may still hold messages of the partition fetched before this queue was
    /// split off, older than any in this queue: until the main queue has been seen empty
    /// since, this queue is read only while the main queue is empty.
    behind_main: AtomicBool,
}

/// The consumer's main queue, and the partition queues of the partitions alignment has held,
/// read in turns.
///
/// A partition's messages fetched before its queue was split off are in the main queue, so
/// its own queue waits until the main queue has been empty once: a partition's messages come
/// out in offset order. A split queue is kept for the consumer's life: librdkafka does not
/// forward it to the main queue again, even when the partition is revoked and assigned once
/// more.
pub(crate) struct PartitionQueues<C: ConsumerContext + 'static> {
    consumer: Arc<StreamConsumer<C>>,
    queues: Vec<Queue<C>>,
    /// The [`Partitions`] generation the holds follow.
    generation: u64,
    /// The queue whose turn it is (the partition queues by index, then the main queue), and
    /// how many messages it has given in this turn (atomics only so that a reader can be
    /// shared; one task reads).
    turn: (AtomicUsize, AtomicUsize),
}

impl<C: ConsumerContext + 'static> PartitionQueues<C> {
    pub(crate) fn new(consumer: Arc<StreamConsumer<C>>) -> Self {
        PartitionQueues {
            consumer,
            queues: Vec::new(),
            generation: 0,
            turn: (AtomicUsize::new(0), AtomicUsize::new(0)),
        }
    }

    /// Follows assignments and revocations since the last call: a partition assigned again
    /// starts unheld, as [`Partitions`] has it.
    pub(crate) fn follow(&mut self, partitions: &Partitions) {
        let Some((generation, assigned)) = partitions.assigned_since(self.generation) else {
            return;
        };
        self.generation = generation;
        for q in &mut self.queues {
            q.held = assigned.iter().any(|(tp, held)| *held && *tp == q.tp);
        }
    }

    /// Holds a partition back (`held`), or lets it be read again.
    pub(crate) fn hold(&mut self, tp: &Tp, held: bool) {
        if let Some(q) = self.queues.iter_mut().find(|q| &q.tp == tp) {
            q.held = held;
            return;
        }
        if !held {
            return;
        }
        match self.consumer.split_partition_queue(&tp.0, tp.1) {
            Some(queue) => self.queues.push(Queue {
                tp: tp.clone(),
                queue,
                held,
                behind_main: AtomicBool::new(true),
            }),
            // Not a partition librdkafka knows: its messages keep coming through the main queue.
            None => tracing::warn!(topic = tp.0, partition = tp.1, "cannot hold back partition"),
        }
    }

    fn set_turn(&self, queue: usize, taken: usize) {
        self.turn.0.store(queue, Relaxed);
        self.turn.1.store(taken, Relaxed);
    }

    /// The next message ready without waiting, from the queues not held, taking turns.
    pub(crate) fn ready(&self) -> Option<KafkaResult<BorrowedMessage<'_>>> {
        let main = self.queues.len();
        let slots = main + 1;
        let (first, taken) = (self.turn.0.load(Relaxed) % slots, self.turn.1.load(Relaxed));
        let mut main_empty = false;
        // The queue whose turn it is until its burst is over or it is empty; then the others;
        // then it again, if nothing else is ready.
        for step in 0..=slots {
            let burst_over = step == 0 && taken >= BURST;
            if burst_over || (step == slots && taken < BURST) {
                continue;
            }
            let i = (first + step) % slots;
            let message = if i == main {
                let message = ready_now(self.consumer.recv());
                if message.is_none() {
                    main_empty = true;
                    for q in &self.queues {
                        q.behind_main.store(false, Relaxed);
                    }
                }
                message
            } else {
                let q = &self.queues[i];
                if q.held || (q.behind_main.load(Relaxed) && !main_empty) {
                    continue;
                }
                ready_now(q.queue.recv())
            };
            if let Some(m) = message {
                self.set_turn(i, if step == 0 { taken + 1 } else { 1 });
                return Some(m);
            }
        }
        self.set_turn((first + 1) % slots, 0);
        None
    }

    /// The next message from the main queue or a partition queue not held, waiting for one.
    /// The main queue is polled first, so a queue still behind it is only read while it is
    /// empty.
    pub(crate) async fn next(&self) -> KafkaResult<BorrowedMessage<'_>> {
        if let Some(m) = self.ready() {
            return m;
        }
        type Recv<'a> = Pin<Box<dyn Future<Output = KafkaResult<BorrowedMessage<'a>>> + Send + 'a>>;
        let mut waiting: Vec<Recv<'_>> = vec![Box::pin(self.consumer.recv())];
        for q in self.queues.iter().filter(|q| !q.held) {
            waiting.push(Box::pin(q.queue.recv()));
        }
        std::future::poll_fn(|cx| {
            for recv in &mut waiting {
                if let Poll::Ready(m) = recv.as_mut().poll(cx) {
                    return Poll::Ready(m);
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// The output of `future` if it is ready at once; otherwise it is dropped.
fn ready_now<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}
