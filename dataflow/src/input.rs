//! Spreads the ingest queue over this process's workers, each the feeder of its own share of
//! the sources: it dedupes, judges lateness against its own watermark, and holds its input
//! capability there.
//!
//! - A Kafka partition's readings, dead letters and marks go to the worker that owns the
//!   partition: partition `p` belongs to the cluster's worker `p mod peers` (the static
//!   assignment of a cluster), else to this process's worker `p mod workers`.
//! - The MQTT connection is one source, whose watermark is the newest reading it delivered:
//!   its records go to the first local worker.
//! - Marks of a source every worker shares (the Kafka group before its first assignment)
//!   go to every worker.

use std::future::Future;

use ioc_schemas::{Ingested, KafkaSource, Transport};
use tokio::sync::mpsc;

use crate::DataflowError;

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
    /// This process's place in `cluster`, with `workers` workers a process.
    pub fn new(cluster: &crate::ClusterConfig, workers: usize) -> Topology {
        Topology {
            processes: cluster.processes(),
            process: cluster.process,
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
    pub(crate) fn feeder_of(&self, record: &Ingested) -> Option<usize> {
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

/// The local workers' threads, so the input thread can wake a worker parked on an empty
/// queue (a parked worker waits up to 5 ms, and while it does only a few batches fit in its
/// queue: MQTT, whose records trickle in as small batches, ran at half speed).
#[derive(Debug, Default)]
pub(crate) struct Feeders {
    threads: std::sync::Mutex<Vec<Option<std::thread::Thread>>>,
}

impl Feeders {
    /// Records the calling thread as local worker `local`.
    pub(crate) fn register(&self, local: usize) {
        if let Ok(mut threads) = self.threads.lock() {
            if threads.len() <= local {
                threads.resize(local + 1, None);
            }
            threads[local] = Some(std::thread::current());
        }
    }

    fn wake(&self, local: usize) {
        if let Some(Some(thread)) = self.threads.lock().ok().and_then(|t| t.get(local).cloned()) {
            thread.unpark();
        }
    }
}

/// Starts the thread that spreads `input` over one queue per local worker, in batches of up
/// to `batch` records; `capacity` records may wait in each queue. The thread ends when
/// `input` closes (then the queues close) or a worker has gone. Each worker registers its
/// thread in `feeders` to be woken when its queue gets a batch.
pub(crate) fn spread(
    topology: Topology,
    mut input: mpsc::Receiver<Ingested>,
    batch: usize,
    capacity: usize,
    feeders: std::sync::Arc<Feeders>,
) -> Result<Vec<mpsc::Receiver<Vec<Ingested>>>, DataflowError> {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..topology.workers)
        .map(|_| mpsc::channel::<Vec<Ingested>>((capacity / batch).max(2)))
        .unzip();
    std::thread::Builder::new()
        .name("ioc-dataflow-input".into())
        .spawn(move || {
            let mut batches: Vec<Vec<Ingested>> =
                (0..topology.workers).map(|_| Vec::new()).collect();
            let mut closed = false;
            let mut taken = Vec::with_capacity(batch);
            // Polled without waiting, as the workers poll their queues (see below); a noop
            // waker, since this thread sleeps rather than being woken.
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            while !closed {
                // A batch at once: the channel's permits go back in one step, not per record.
                let ready = std::pin::pin!(input.recv_many(&mut taken, batch)).poll(&mut cx);
                if let std::task::Poll::Ready(0) = ready {
                    closed = true;
                }
                let idle = taken.is_empty();
                for record in taken.drain(..) {
                    match (topology.feeder_of(&record), &record) {
                        (Some(worker), _) => batches[worker].push(record),
                        (None, Ingested::Source(mark)) => {
                            for b in &mut batches {
                                b.push(Ingested::Source(mark.clone()));
                            }
                        }
                        (None, _) => {}
                    }
                }
                for (local, (queue, b)) in senders.iter().zip(&mut batches).enumerate() {
                    if b.is_empty() {
                        continue;
                    }
                    // The next batch is likely as large: one allocation, not a doubling series
                    // of copies of 232-byte records.
                    let next = Vec::with_capacity(b.len());
                    if queue.blocking_send(std::mem::replace(b, next)).is_err() {
                        return;
                    }
                    feeders.wake(local);
                }
                if idle && !closed {
                    // Polled, as the workers poll their queues: waking this thread for each
                    // record that trickles in cost more (MQTT at 40 k/s ran at half speed).
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        })
        .map_err(|source| DataflowError::Thread {
            thread: "ioc-dataflow-input",
            source,
        })?;
    Ok(receivers)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let record = |p| {
            let source = KafkaSource::partition_name("t", p);
            local.feeder_of(&Ingested::Source(ioc_schemas::SourceMark {
                source,
                state: ioc_schemas::SourceState::Assigned,
            }))
        };
        assert_eq!(record(6), Some(0));
        assert_eq!(record(7), Some(1));
        assert_eq!(
            local.feeder_of(&Ingested::Source(ioc_schemas::SourceMark::kafka_group(
                ioc_schemas::SourceState::Assigned
            ))),
            None,
            "the group's mark goes to every worker"
        );
    }
}
