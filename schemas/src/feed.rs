//! Where ingest's records go: one bounded queue per dataflow worker of this process, each
//! record put straight into the queue of the worker that feeds its source. A record moves
//! once, from the task that decoded it to its worker, with no thread in between to spread a
//! shared queue (that thread took a sixth of a worker's time; BENCHMARKS.md, "Records straight
//! to their worker").
//!
//! - A Kafka partition's readings, dead letters and marks go to the worker that owns the
//!   partition: partition `p` belongs to the cluster's worker `p mod peers` (the static
//!   assignment of a cluster), else to this process's worker `p mod workers`.
//! - The MQTT connection is one source, whose watermark is the newest reading it delivered:
//!   its records go to the first local worker.
//! - Marks of a source every worker shares (the Kafka group before its first assignment)
//!   go to every worker.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::{Ingested, KafkaSource, Transport};

/// The shape of the cluster, as seen from one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    /// How many processes run the dataflow.
    pub processes: usize,
    /// This process's id.
    pub process: usize,
    /// Workers per process.
    pub workers: usize,
}

impl Topology {
    /// One process with `workers` workers.
    pub fn single(workers: usize) -> Topology {
        Topology {
            processes: 1,
            process: 0,
            workers,
        }
    }

    /// Workers in the whole cluster.
    pub fn peers(&self) -> usize {
        self.processes * self.workers
    }

    /// Whether this process's workers read Kafka partition `partition` under the cluster's
    /// static assignment.
    pub fn owns_partition(&self, partition: i32) -> bool {
        (partition.unsigned_abs() as usize % self.peers()) / self.workers == self.process
    }

    /// The local worker that feeds `record` into the dataflow; `None` for every worker.
    pub fn feeder_of(&self, record: &Ingested) -> Option<usize> {
        let by_partition = |source: &str| {
            KafkaSource::parse(source).map(|k| (k.partition as usize % self.peers()) % self.workers)
        };
        match record {
            Ingested::Reading(r, _) | Ingested::Replayed(r) => Some(match r.transport {
                Transport::Kafka => by_partition(&r.source).unwrap_or(0),
                Transport::Mqtt => 0,
            }),
            Ingested::DeadLetter(d, _) => Some(match d.transport {
                Transport::Kafka => by_partition(&d.source).unwrap_or(0),
                Transport::Mqtt => 0,
            }),
            Ingested::Source(mark) => by_partition(&mark.source),
        }
    }
}

/// The dataflow has stopped taking records (the worker's queue is closed); the record is
/// dropped. Permanent: the dataflow has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the dataflow's input is closed")]
pub struct FeedClosed;

/// What holds the sources back while what follows the dataflow cannot take more (the spool
/// is full), so a long ClickHouse outage pushes back on the brokers, never on the dataflow.
pub trait Admission: Send + Sync + std::fmt::Debug {
    /// Whether a record may go in now.
    fn has_room(&self) -> bool;
    /// Resolves once there is room.
    fn room(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The sending side: cheap to clone, one per producer. The queues close once every clone is
/// dropped.
#[derive(Debug, Clone)]
pub struct Feed {
    topology: Topology,
    queues: Arc<[mpsc::Sender<Ingested>]>,
    /// Holds [`reserve`](Feed::reserve), [`try_reserve`](Feed::try_reserve) and
    /// [`send`](Feed::send) while it has no room.
    gate: Option<Arc<dyn Admission>>,
}

/// The receiving side: one queue per local worker, in worker order.
#[derive(Debug)]
pub struct FeedQueues {
    /// The topology the records were routed by.
    pub topology: Topology,
    /// Each local worker's queue.
    pub queues: Vec<mpsc::Receiver<Ingested>>,
}

/// Room for one record in the queue (or, for a mark every worker takes, the queues) it goes
/// to; see [`Feed::reserve`].
#[derive(Debug)]
pub enum FeedPermit<'a> {
    /// The one queue the record goes to.
    One(mpsc::Permit<'a, Ingested>),
    /// Every queue: the record is a mark every worker takes.
    Every(Vec<mpsc::Permit<'a, Ingested>>),
}

impl FeedPermit<'_> {
    /// Sends the record the permit was reserved for.
    pub fn send(self, record: Ingested) {
        match self {
            FeedPermit::One(permit) => permit.send(record),
            FeedPermit::Every(permits) => {
                let mut permits = permits.into_iter();
                let first = permits.next();
                // Only a mark is for every worker (see `Topology::feeder_of`); anything else
                // goes to the first, and the other permits are given back unused.
                if let Ingested::Source(mark) = &record {
                    for permit in permits {
                        permit.send(Ingested::Source(mark.clone()));
                    }
                }
                if let Some(first) = first {
                    first.send(record);
                }
            }
        }
    }
}

/// Where a record goes.
#[derive(Debug, Clone, Copy)]
enum Route {
    One(usize),
    Every,
}

impl Feed {
    /// A feed of `capacity` records a local worker, routed by `topology`.
    pub fn new(topology: Topology, capacity: usize) -> (Feed, FeedQueues) {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..topology.workers.max(1))
            .map(|_| mpsc::channel(capacity.max(1)))
            .unzip();
        (
            Feed {
                topology,
                queues: senders.into(),
                gate: None,
            },
            FeedQueues {
                topology,
                queues: receivers,
            },
        )
    }

    /// The same queues, with records held while `gate` has no room.
    pub fn held_by(self, gate: Arc<dyn Admission>) -> Feed {
        Feed {
            gate: Some(gate),
            ..self
        }
    }

    fn route(&self, record: &Ingested) -> Route {
        match self.topology.feeder_of(record) {
            Some(worker) => Route::One(worker.min(self.queues.len() - 1)),
            None => Route::Every,
        }
    }

    /// Waits for room for `next` (a producer's next record, looked at only here) and returns
    /// the permit to send it with. `None` reserves room in the first worker's queue.
    pub fn reserve(
        &self,
        next: Option<&Ingested>,
    ) -> impl Future<Output = Result<FeedPermit<'_>, FeedClosed>> + '_ {
        let route = next.map_or(Route::One(0), |r| self.route(r));
        async move {
            if let Some(gate) = &self.gate {
                while !gate.has_room() {
                    gate.room().await;
                }
            }
            match route {
                Route::One(worker) => self.queues[worker]
                    .reserve()
                    .await
                    .map(FeedPermit::One)
                    .map_err(|_| FeedClosed),
                Route::Every => {
                    let mut permits = Vec::with_capacity(self.queues.len());
                    for queue in self.queues.iter() {
                        permits.push(queue.reserve().await.map_err(|_| FeedClosed)?);
                    }
                    Ok(FeedPermit::Every(permits))
                }
            }
        }
    }

    /// Room for `next` if there is some now.
    pub fn try_reserve(&self, next: &Ingested) -> Option<FeedPermit<'_>> {
        if self.gate.as_ref().is_some_and(|gate| !gate.has_room()) {
            return None;
        }
        match self.route(next) {
            Route::One(worker) => self.queues[worker].try_reserve().ok().map(FeedPermit::One),
            Route::Every => self
                .queues
                .iter()
                .map(|q| q.try_reserve().ok())
                .collect::<Option<Vec<_>>>()
                .map(FeedPermit::Every),
        }
    }

    /// Hands over records from the front of `pending` while their queues have room now, in
    /// order; returns how many.
    pub fn send_ready(&self, pending: &mut std::collections::VecDeque<Ingested>) -> usize {
        let mut sent = 0;
        while let Some(permit) = pending.front().and_then(|next| self.try_reserve(next)) {
            if let Some(record) = pending.pop_front() {
                permit.send(record);
                sent += 1;
            }
        }
        sent
    }

    /// Sends `record`, waiting while its queue is full.
    pub async fn send(&self, record: Ingested) -> Result<(), FeedClosed> {
        self.reserve(Some(&record)).await?.send(record);
        Ok(())
    }

    /// Sends `record` from a thread outside the async runtime, blocking while its queue is
    /// full (not held by the gate: for tests and benches).
    pub fn blocking_send(&self, record: Ingested) -> Result<(), FeedClosed> {
        match self.route(&record) {
            Route::One(worker) => self.queues[worker]
                .blocking_send(record)
                .map_err(|_| FeedClosed),
            Route::Every => {
                if let Ingested::Source(mark) = &record {
                    for queue in &self.queues[1..] {
                        queue
                            .blocking_send(Ingested::Source(mark.clone()))
                            .map_err(|_| FeedClosed)?;
                    }
                }
                self.queues[0].blocking_send(record).map_err(|_| FeedClosed)
            }
        }
    }

    /// Whether every worker has stopped taking records.
    pub fn is_closed(&self) -> bool {
        self.queues.iter().all(mpsc::Sender::is_closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SourceMark, SourceState};

    fn mark(partition: i32) -> Ingested {
        Ingested::Source(SourceMark {
            source: KafkaSource::partition_name("t", partition),
            state: SourceState::Assigned,
        })
    }

    #[test]
    fn partitions_belong_to_one_worker_of_the_cluster() {
        let two = |process| Topology {
            processes: 2,
            process,
            workers: 1,
        };
        assert!(two(0).owns_partition(0) && two(0).owns_partition(2));
        assert!(two(1).owns_partition(1) && two(1).owns_partition(3));
        assert!(!two(1).owns_partition(2));
        let local = Topology {
            processes: 2,
            process: 1,
            workers: 2,
        };
        // Partition 6 is worker 6 mod 4 = 2 of the cluster: process 1's first worker.
        assert!(local.owns_partition(6));
        assert_eq!(local.feeder_of(&mark(6)), Some(0));
        assert_eq!(local.feeder_of(&mark(7)), Some(1));
        assert_eq!(
            local.feeder_of(&Ingested::Source(SourceMark::kafka_group(
                SourceState::Assigned
            ))),
            None,
            "the group's mark goes to every worker"
        );
    }

    #[test]
    fn records_go_to_their_workers_queue_and_group_marks_to_every_queue() {
        let (feed, mut queues) = Feed::new(Topology::single(2), 4);
        feed.blocking_send(mark(3)).expect("sent");
        feed.try_reserve(&mark(4)).expect("room").send(mark(4));
        feed.blocking_send(Ingested::Source(SourceMark::kafka_group(
            SourceState::Assigned,
        )))
        .expect("sent");
        let source = |r: Ingested| match r {
            Ingested::Source(m) => m.source,
            other => panic!("not a mark: {other:?}"),
        };
        let group = SourceMark::kafka_group(SourceState::Assigned).source;
        let first = &mut queues.queues[0];
        assert_eq!(source(first.try_recv().expect("one")), "t/4");
        assert_eq!(source(first.try_recv().expect("two")), group);
        let second = &mut queues.queues[1];
        assert_eq!(source(second.try_recv().expect("one")), "t/3");
        assert_eq!(source(second.try_recv().expect("two")), group);
        drop(feed);
        assert!(queues.queues[0].try_recv().is_err());
    }

    #[test]
    fn a_full_queue_holds_only_its_own_records() {
        let (feed, _queues) = Feed::new(Topology::single(2), 1);
        feed.blocking_send(mark(1)).expect("sent");
        assert!(
            feed.try_reserve(&mark(3)).is_none(),
            "worker 1's queue is full"
        );
        assert!(feed.try_reserve(&mark(2)).is_some(), "worker 0's is not");
        assert!(
            feed.try_reserve(&Ingested::Source(SourceMark::kafka_group(
                SourceState::Assigned
            )))
            .is_none(),
            "a mark for every worker waits for room in each"
        );
    }

    #[test]
    fn ready_records_go_in_order_up_to_the_first_without_room() {
        let (feed, mut queues) = Feed::new(Topology::single(2), 1);
        let mut pending: std::collections::VecDeque<_> = [mark(2), mark(4), mark(3)].into();
        assert_eq!(
            feed.send_ready(&mut pending),
            1,
            "worker 0's queue takes one"
        );
        assert_eq!(pending.len(), 2, "what did not fit stays, in order");
        assert!(
            matches!(queues.queues[0].try_recv(), Ok(Ingested::Source(m)) if m.source == "t/2")
        );
        // Worker 1's queue had room, but its record waited behind worker 0's.
        assert_eq!(feed.send_ready(&mut pending), 2);
        assert!(pending.is_empty());
        assert!(
            matches!(queues.queues[0].try_recv(), Ok(Ingested::Source(m)) if m.source == "t/4")
        );
    }

    #[derive(Debug)]
    struct Shut(tokio::sync::Notify, std::sync::atomic::AtomicBool);

    impl Admission for Shut {
        fn has_room(&self) -> bool {
            self.1.load(std::sync::atomic::Ordering::SeqCst)
        }
        fn room(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            Box::pin(self.0.notified())
        }
    }

    #[tokio::test]
    async fn a_gate_without_room_holds_records_until_it_opens() {
        let gate = Arc::new(Shut(tokio::sync::Notify::new(), false.into()));
        let (feed, mut queues) = Feed::new(Topology::single(1), 4);
        let feed = feed.held_by(Arc::clone(&gate) as Arc<dyn Admission>);
        assert!(feed.try_reserve(&mark(0)).is_none(), "held");
        let sent = tokio::spawn(async move { feed.send(mark(0)).await.is_ok() });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(queues.queues[0].try_recv().is_err(), "still held");
        gate.1.store(true, std::sync::atomic::Ordering::SeqCst);
        gate.0.notify_waiters();
        assert!(sent.await.expect("task"));
        assert!(queues.queues[0].recv().await.is_some());
    }

    #[test]
    fn sending_after_the_workers_stop_hands_the_record_back() {
        let (feed, queues) = Feed::new(Topology::single(1), 1);
        drop(queues);
        assert!(feed.is_closed());
        assert_eq!(feed.blocking_send(mark(0)), Err(FeedClosed));
    }
}
