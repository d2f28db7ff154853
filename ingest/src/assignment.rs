//! How the Kafka source gets its partitions: from the group, or assigned by itself (all of
//! them, or a cluster's share), including those of topics created and partitions added while
//! it runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::topic_partition_list::TopicPartitionList;

use crate::metrics::IngestMetrics;
use crate::partitions::Partitions;
use crate::{kafka_error, IngestError};

/// How partitions come to this consumer.
#[derive(Clone)]
pub enum KafkaAssignment {
    /// The group shares them out among its members, and again when one comes or goes.
    Group,
    /// Fixed: every partition the predicate accepts, of every topic (all of them, or a timely
    /// cluster's share by worker index), including those added later. Offsets are still
    /// committed in the group.
    Static(Owns),
}

impl std::fmt::Debug for KafkaAssignment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KafkaAssignment::Group => "Group",
            KafkaAssignment::Static(_) => "Static",
        })
    }
}

/// The partitions a static assignment may take: one predicate on the partition number,
/// applied to every topic.
pub type Owns = Arc<dyn Fn(i32) -> bool + Send + Sync>;

/// How many partitions each of `topics` has (0 for a topic that does not exist).
pub(crate) fn partition_counts<X: ConsumerContext>(
    consumer: &impl Consumer<X>,
    topics: &[String],
) -> Result<BTreeMap<String, usize>, IngestError> {
    let mut counts = BTreeMap::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .map_err(kafka_error(format!("cannot read metadata of {topic}")))?;
        let partitions = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len());
        counts.insert(topic.to_owned(), partitions);
    }
    Ok(counts)
}

/// A static assignment: the partitions of `topics` this instance owns, assigned as they
/// appear. The first look ([`PartitionWatch::start`]) waits for every topic to exist, since
/// event time waits for it; later looks ([`PartitionWatch::look`]) add partitions and topics
/// created since.
pub(crate) struct PartitionWatch {
    owns: Owns,
    topics: Vec<String>,
    /// The partitions assigned so far.
    assigned: std::collections::BTreeSet<(String, i32)>,
    interval: Duration,
    next: Instant,
}

impl PartitionWatch {
    /// A watch of `topics` that looks again every `interval`.
    pub(crate) fn new(owns: Owns, topics: Vec<String>, interval: Duration) -> PartitionWatch {
        PartitionWatch {
            owns,
            topics,
            assigned: Default::default(),
            interval,
            next: Instant::now() + interval,
        }
    }

    /// Assigns the partitions `owns` accepts, of every topic, once the topics exist or `wait`
    /// has passed. An empty share of existing partitions is an error, since this process
    /// would then hold event time for the whole cluster without reading anything.
    pub(crate) async fn start<C, X>(
        mut self,
        consumer: &Arc<C>,
        wait: Duration,
        partitions: &Partitions,
        metrics: &IngestMetrics,
    ) -> Result<PartitionWatch, IngestError>
    where
        C: Consumer<X> + Send + Sync + 'static,
        X: ConsumerContext + 'static,
    {
        let due = Instant::now() + wait;
        let counts = loop {
            let described = {
                let (consumer, topics) = (Arc::clone(consumer), self.topics.clone());
                tokio::task::spawn_blocking(move || partition_counts(consumer.as_ref(), &topics))
                    .await
                    .map_err(|source| IngestError::Task {
                        task: "kafka metadata",
                        source,
                    })?
            };
            match described {
                Ok(counts) if counts.values().all(|n| *n > 0) => break counts,
                Ok(counts) if Instant::now() >= due => break counts,
                Err(e) if Instant::now() >= due => return Err(e),
                _ => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        };
        let added = self.assign_new(consumer.as_ref(), &counts, partitions, metrics)?;
        if added == 0 && counts.values().any(|n| *n > 0) {
            return Err(IngestError::NoPartitions { counts });
        }
        if added == 0 {
            tracing::warn!(
                ?counts,
                "none of the kafka topics exists yet; their partitions are read once they do"
            );
        }
        partitions.joined();
        tracing::info!(partitions = added, "kafka partitions assigned");
        Ok(self)
    }

    /// Assigns the owned partitions of `counts` not assigned yet; returns how many.
    fn assign_new<X: ConsumerContext>(
        &mut self,
        consumer: &impl Consumer<X>,
        counts: &BTreeMap<String, usize>,
        partitions: &Partitions,
        metrics: &IngestMetrics,
    ) -> Result<usize, IngestError> {
        let mut list = TopicPartitionList::new();
        for (topic, count) in counts {
            for partition in (0..*count as i32).filter(|p| (self.owns)(*p)) {
                if !self.assigned.contains(&(topic.clone(), partition)) {
                    list.add_partition(topic, partition);
                }
            }
        }
        if list.count() == 0 {
            return Ok(0);
        }
        // Watermark sources before the first record can arrive, so none slips past them.
        for e in list.elements() {
            partitions.assigned(e.topic(), e.partition());
        }
        consumer
            .incremental_assign(&list)
            .map_err(kafka_error(format!("cannot assign {list:?}")))?;
        for e in list.elements() {
            self.assigned.insert((e.topic().to_owned(), e.partition()));
        }
        metrics.kafka_assigned.add(list.count() as i64);
        Ok(list.count())
    }

    /// When due, lists the topics' partitions again and assigns those added since (a
    /// blocking call: from the progress thread).
    pub(crate) fn look<X: ConsumerContext>(
        &mut self,
        consumer: &impl Consumer<X>,
        partitions: &Partitions,
        metrics: &IngestMetrics,
    ) -> Result<(), IngestError> {
        if Instant::now() < self.next {
            return Ok(());
        }
        self.next = Instant::now() + self.interval;
        let counts = partition_counts(consumer, &self.topics)?;
        let added = self.assign_new(consumer, &counts, partitions, metrics)?;
        if added > 0 {
            tracing::info!(partitions = added, "new kafka partitions assigned");
        }
        Ok(())
    }
}
