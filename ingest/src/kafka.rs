//! The Kafka source: one topic per reading kind, keyed by device id. By default this instance
//! assigns itself the partitions (all of them, or in a cluster its workers' share) and commits
//! their offsets in the consumer group; with `assignment = "group"` the group shares them out.
//!
//! Offsets are stored for committing only once every message up to them is durably stored
//! ([`OffsetTracker`]); librdkafka commits the stored offsets in the background and once more
//! on shutdown. A crash therefore replays at most the messages after the last commit, which the
//! store writes idempotently and the dataflow counts once.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ioc_schemas::{Ack, Feed, Ingested, KafkaSource, Kind, Rejection, Transport, ValidationLimits};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};
use tracing::field::Empty;
use tracing::Instrument;

use crate::assignment::{partition_counts, KafkaAssignment, PartitionWatch};
use crate::decode::{decode_kafka, DecodeLimits, KafkaParts};
use crate::metrics::IngestMetrics;
use crate::offsets::OffsetTracker;
use crate::partitions::{Partitions, Tp};
use crate::queues::PartitionQueues;
use crate::record::{self, Arrival};
use crate::{kafka_error, now_ms, IngestError, DISTRICT_HEADER};

/// The topic of each reading kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaTopics {
    /// Topic of sensor readings.
    pub sensor: String,
    /// Topic of traffic-signal readings.
    pub traffic_signal: String,
    /// Topic of camera events.
    pub camera_event: String,
    /// Topic of environmental readings.
    pub environment: String,
}

impl Default for KafkaTopics {
    fn default() -> Self {
        KafkaTopics {
            sensor: "ioc.sensor".into(),
            traffic_signal: "ioc.traffic_signal".into(),
            camera_event: "ioc.camera_event".into(),
            environment: "ioc.environment".into(),
        }
    }
}

impl KafkaTopics {
    /// The topic of a kind.
    pub fn topic(&self, kind: Kind) -> &str {
        match kind {
            Kind::Sensor => &self.sensor,
            Kind::TrafficSignal => &self.traffic_signal,
            Kind::CameraEvent => &self.camera_event,
            Kind::Environment => &self.environment,
        }
    }

    /// The kind a topic carries.
    pub fn kind_of(&self, topic: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| self.topic(*k) == topic)
    }
}

/// How an instance gets its Kafka partitions (`kafka.assignment`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PartitionAssignment {
    /// This instance assigns itself its partitions; no group join, no rebalance.
    #[default]
    Static,
    /// The consumer group shares the partitions out among its members.
    Group,
}

/// How to reach and read Kafka.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated (`host:port,...`); empty leaves Kafka off.
    pub brokers: String,
    /// Consumer group: the offsets are committed in it, and with `assignment = "group"` its
    /// members split the partitions between them.
    pub group_id: String,
    /// How this instance gets its partitions. `static`: every partition of the topics (in a
    /// cluster, its workers' share), assigned at once with no group join, and partitions or
    /// topics added later within `partition_watch_interval_ms`. `group`: the group shares them
    /// out among its members, and again when one comes or goes (not in a cluster).
    pub assignment: PartitionAssignment,
    /// With `assignment = "static"`, how often (ms) the topics' partitions are listed again,
    /// so that partitions and topics added since the start are read too.
    pub partition_watch_interval_ms: u64,
    /// Client id, as brokers log it.
    pub client_id: String,
    /// With `assignment = "group"`, static group membership (KIP-345): a stable id per
    /// instance lets a restarted instance take its partitions back at once instead of waiting
    /// for the group to notice it left. None: iocd derives one per instance, as for the MQTT
    /// client id.
    pub group_instance_id: Option<String>,
    /// The topic of each reading kind.
    pub topics: KafkaTopics,
    /// Where rejected messages are also produced (with `reject_code` and `reject_reason`
    /// headers), beside the dead-letters table; none by default.
    pub dead_letter_topic: Option<String>,
    /// Where a new group starts: `earliest` or `latest`.
    pub auto_offset_reset: String,
    /// How often (ms) stored offsets are committed.
    pub commit_interval_ms: u64,
    /// Group session timeout (ms), with `assignment = "group"`.
    pub session_timeout_ms: u64,
    /// Most data (KiB) librdkafka prefetches while the pipeline is behind: for the partitions
    /// read together, and besides that for each partition alignment has held back (which is
    /// read from a queue of its own from then on). With the bounded queue into the pipeline
    /// this bounds memory during a store outage.
    pub queued_max_kbytes: u64,
    /// How often (ms) consumer lag (end offset less committed offset) is measured, and
    /// librdkafka reports its statistics (the fetch requests sent).
    pub statistics_interval_ms: u64,
    /// Longest time (ms) the broker may hold a fetch waiting for data (librdkafka's
    /// `fetch.wait.max.ms`). Some brokers wait it out even when data is there, which then caps
    /// throughput; lower it for those.
    pub fetch_wait_max_ms: u64,
    /// Largest accepted payload in bytes; larger ones are dead-lettered.
    pub max_payload_bytes: usize,
    /// How far ahead of this machine's clock (ms) an event time may be.
    pub max_future_ms: u64,
    /// Watermark alignment: a partition whose newest event time runs more than this (ms)
    /// ahead of the slowest partition still behind its end is held back (left unread:
    /// librdkafka keeps what it prefetched for it and fetches no more) until that one is within
    /// half of it, so a backlog is read in about event-time order across partitions and
    /// topics, and the windows held open meanwhile stay few. 0 turns alignment off.
    pub alignment_max_drift_ms: u64,
    /// How often (ms) each partition's position is compared with its end, to tell when it
    /// has caught up, and alignment is decided.
    pub progress_interval_ms: u64,
    /// librdkafka's `max.poll.interval.ms`. iocd polls the consumer every quarter of it even
    /// while the pipeline is full, so a long storage outage does not cost a member of the group
    /// (`assignment = "group"`) its membership.
    pub max_poll_interval_ms: u64,
    /// How long (ms) event time waits at start-up for the first assignment (with `static`,
    /// for every topic to exist), so that MQTT cannot move it past the partitions' backlog
    /// before they are assigned. Past it, iocd logs a warning and the other sources move event
    /// time alone.
    pub assignment_wait_ms: u64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            group_id: "iocd".into(),
            assignment: PartitionAssignment::Static,
            partition_watch_interval_ms: 10_000,
            client_id: "iocd".into(),
            group_instance_id: None,
            topics: KafkaTopics::default(),
            dead_letter_topic: None,
            auto_offset_reset: "earliest".into(),
            commit_interval_ms: 1_000,
            session_timeout_ms: 10_000,
            queued_max_kbytes: 8_192,
            statistics_interval_ms: 5_000,
            fetch_wait_max_ms: 500,
            max_payload_bytes: 64 * 1024,
            max_future_ms: 5 * 60 * 1000,
            alignment_max_drift_ms: 60_000,
            progress_interval_ms: 200,
            max_poll_interval_ms: 300_000,
            assignment_wait_ms: 60_000,
        }
    }
}

impl KafkaConfig {
    /// Whether Kafka is configured.
    pub fn enabled(&self) -> bool {
        !self.brokers.trim().is_empty()
    }

    /// The topics of every kind.
    fn topic_names(&self) -> Vec<String> {
        Kind::ALL
            .iter()
            .map(|k| self.topics.topic(*k).to_owned())
            .collect()
    }

    /// The consumer's settings; `joins`: it joins the group (subscribes). Only a member that
    /// joins has a membership to keep: one that assigns itself commits as a simple consumer.
    fn consumer_config(&self, joins: bool) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group_id)
            .set("client.id", &self.client_id)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.commit.interval.ms",
                self.commit_interval_ms.to_string(),
            )
            .set("auto.offset.reset", &self.auto_offset_reset)
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set(
                "queued.max.messages.kbytes",
                self.queued_max_kbytes.to_string(),
            )
            .set(
                "statistics.interval.ms",
                self.statistics_interval_ms.to_string(),
            )
            .set("fetch.wait.max.ms", self.fetch_wait_max_ms.to_string())
            .set(
                "max.poll.interval.ms",
                self.max_poll_interval_ms.to_string(),
            )
            .set("enable.partition.eof", "false");
        if let (true, Some(id)) = (joins, &self.group_instance_id) {
            c.set("group.instance.id", id);
        }
        c
    }
}

/// Consumer callbacks: partition assignment and revocation, and librdkafka's statistics.
struct IngestContext {
    tracker: Arc<OffsetTracker>,
    partitions: Arc<Partitions>,
    assigned: prometheus::IntGauge,
    /// `ioc_ingest_kafka_fetch_requests_total`, and the librdkafka total it last reached.
    fetches: (prometheus::IntCounter, std::sync::atomic::AtomicU64),
}

impl ClientContext for IngestContext {
    /// Counts the fetch requests sent (librdkafka's total over the brokers), which is what a
    /// broker's work grows with; the rest of the statistics are left out, not logged.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let sent = fetch_requests_sent(&statistics);
        let (counter, last) = &self.fetches;
        let before = last.swap(sent, std::sync::atomic::Ordering::Relaxed);
        counter.inc_by(sent.saturating_sub(before));
    }
}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            for e in list.elements() {
                self.tracker.forget(e.topic(), e.partition());
                self.partitions.revoked(e.topic(), e.partition());
            }
            self.assigned.sub(list.count() as i64);
            tracing::info!(partitions = list.count(), "kafka partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                // Each is a watermark source from now on: it holds event time until it
                // delivers or is found caught up.
                for e in list.elements() {
                    self.partitions.assigned(e.topic(), e.partition());
                }
                self.partitions.joined();
                self.assigned.add(list.count() as i64);
                tracing::info!(partitions = list.count(), "kafka partitions assigned");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "kafka rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

type IngestConsumer = StreamConsumer<IngestContext>;

/// The fetch requests a client has sent, over all brokers, from its librdkafka statistics.
pub fn fetch_requests_sent(statistics: &rdkafka::Statistics) -> u64 {
    statistics
        .brokers
        .values()
        .filter_map(|b| b.req.get("Fetch"))
        .map(|n| u64::try_from(*n).unwrap_or(0))
        .sum()
}

/// Consumes the configured topics and forwards decoded records to `out` until `stop`
/// resolves; then waits for `drained` (the pipeline has stored what it took) and commits the
/// stored offsets before leaving the group. While `out` is full consumption waits.
pub async fn run_kafka(
    config: KafkaConfig,
    assignment: KafkaAssignment,
    out: Feed,
    metrics: IngestMetrics,
    stop: impl Future<Output = ()>,
    drained: impl Future<Output = ()>,
) -> Result<(), IngestError> {
    let tracker = Arc::new(OffsetTracker::default());
    let partitions = Arc::new(Partitions::default());
    let context = IngestContext {
        tracker: Arc::clone(&tracker),
        partitions: Arc::clone(&partitions),
        assigned: metrics.kafka_assigned.clone(),
        fetches: (metrics.kafka_fetches.clone(), Default::default()),
    };
    let consumer: Arc<IngestConsumer> = Arc::new(
        config
            .consumer_config(matches!(assignment, KafkaAssignment::Group))
            .create_with_context(context)
            .map_err(kafka_error("cannot create the consumer"))?,
    );
    let topics = config.topic_names();
    tokio::pin!(stop);
    let watch = match &assignment {
        KafkaAssignment::Group => {
            consumer
                .subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())
                .map_err(kafka_error(format!("cannot subscribe to {topics:?}")))?;
            None
        }
        KafkaAssignment::Static(owns) => {
            let interval = Duration::from_millis(config.partition_watch_interval_ms.max(100));
            let start = PartitionWatch::new(Arc::clone(owns), topics.clone(), interval).start(
                &consumer,
                Duration::from_millis(config.assignment_wait_ms),
                &partitions,
                &metrics,
            );
            tokio::select! {
                // Stopped while waiting for the topics: nothing was taken.
                () = &mut stop => return Ok(()),
                watch = start => Some(watch?),
            }
        }
    };
    let dead_letter_producer = match &config.dead_letter_topic {
        Some(_) => Some(
            ClientConfig::new()
                .set("bootstrap.servers", &config.brokers)
                .set("client.id", format!("{}-dead-letters", config.client_id))
                .create::<FutureProducer>()
                .map_err(kafka_error("cannot create the producer"))?,
        ),
        None => None,
    };
    let limits = ValidationLimits {
        max_future_ms: config.max_future_ms,
        ..ValidationLimits::default()
    };
    tracing::info!(brokers = %config.brokers, group = %config.group_id, ?topics, "kafka consumer started");
    metrics.kafka_connected.set(1);
    let assignment_due = Instant::now() + Duration::from_millis(config.assignment_wait_ms);

    let lag_task = spawn_lag_task(
        Arc::clone(&consumer),
        metrics.clone(),
        Duration::from_millis(config.statistics_interval_ms.max(100)),
    );
    let progress_interval = Duration::from_millis(config.progress_interval_ms.max(10));
    let progress = ProgressCheck::spawn(
        Arc::clone(&consumer),
        Arc::clone(&partitions),
        metrics.clone(),
        progress_interval,
        config.auto_offset_reset == "latest",
        watch,
    );
    let taking = Take {
        config: &config,
        limits: &limits,
        consumer: &consumer,
        tracker: &tracker,
        partitions: &partitions,
        metrics: &metrics,
        ack_failures: metrics.ack_failures.with_label_values(&["kafka"]),
        dead_letters: dead_letter_producer.as_ref(),
    };
    let alignment = Alignment {
        partitions: &partitions,
        metrics: &metrics,
    };
    let mut queues = PartitionQueues::new(Arc::clone(&consumer));
    // Records and marks taken but not yet handed to the pipeline, in order.
    let mut pending: VecDeque<Ingested> = VecDeque::new();
    let mut tick = tokio::time::interval(progress_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // While the pipeline is full nothing is fetched for it, but the consumer is still polled
    // this often, so the group never takes iocd for stuck (`max.poll.interval.ms`).
    let mut keepalive = tokio::time::interval(Duration::from_millis(
        config.max_poll_interval_ms.max(1_000) / 4,
    ));
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut backoff = Duration::from_millis(100);
    let reconnects = metrics.reconnects.with_label_values(&["kafka"]);
    loop {
        queues.follow(&partitions);
        let full = pending.len() >= PENDING_MAX;
        metrics.kafka_held.set(i64::from(full));
        tokio::select! {
            biased;
            () = &mut stop => break,
            // Before the records: while they flow without a pause, a branch after them would
            // never be polled, and marks (a partition caught up) and alignment would wait.
            _ = tick.tick() => {
                if !partitions.has_joined() && Instant::now() >= assignment_due {
                    tracing::warn!(
                        waited_ms = config.assignment_wait_ms,
                        "no kafka partitions assigned yet; event time moves on without them, \
                         so a backlog assigned later may be judged late"
                    );
                    partitions.joined();
                }
                pending.extend(partitions.drain_marks().into_iter().map(Ingested::Source));
                if config.alignment_max_drift_ms > 0 {
                    alignment.apply(config.alignment_max_drift_ms, &mut queues);
                }
            }
            permit = out.reserve(pending.front()), if !pending.is_empty() => {
                let Ok(permit) = permit else { break };
                if let Some(record) = pending.pop_front() {
                    permit.send(record);
                }
                // Then what fits without waiting, rather than a turn of this loop a record.
                out.send_ready(&mut pending);
            }
            message = queues.next(), if !full => {
                let message = match message {
                    Ok(m) => {
                        backoff = Duration::from_millis(100);
                        let span = tracing::debug_span!("kafka_poll_batch", messages = Empty);
                        poll_batch(m, &queues, &taking, &mut pending).instrument(span).await
                    }
                    Err(e) => Some(e),
                };
                match message {
                    None => {}
                    Some(e) => {
                        reconnects.inc();
                        tracing::warn!(error = %e, "kafka consumer error");
                        tokio::select! {
                            () = &mut stop => break,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            _ = keepalive.tick(), if full => {
                // One poll; a message it returns waits with the rest (one per tick at most).
                let polled = tokio::time::timeout(Duration::from_millis(1), consumer.recv());
                if let Ok(Ok(m)) = polled.await {
                    queue(&m, &taking, &mut pending).await;
                }
            }
        }
    }
    progress.stop();
    lag_task.abort();
    drop(queues);
    // Hand over what was taken, so its offsets can be committed once stored.
    for record in pending.drain(..) {
        if out.send(record).await.is_err() {
            break;
        }
    }
    drop(out);
    drained.await;
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit, or the group is gone: the next start resumes
        // from the last commit, and replays are stored once.
        tracing::debug!(error = %e, "final kafka commit");
    }
    match assignment {
        KafkaAssignment::Group => consumer.unsubscribe(),
        KafkaAssignment::Static(_) => {
            let _ = consumer.unassign();
        }
    }
    metrics.kafka_connected.set(0);
    Ok(())
}

/// Takes `first` and then every message the queues have ready without waiting, until
/// `pending` is full: one poll batch. Returns the error the consumer reported instead of a
/// message, if it did.
async fn poll_batch(
    first: BorrowedMessage<'_>,
    queues: &PartitionQueues<IngestContext>,
    taking: &Take<'_>,
    pending: &mut VecDeque<Ingested>,
) -> Option<KafkaError> {
    queue(&first, taking, pending).await;
    let mut messages = 1usize;
    let mut failed = None;
    while pending.len() < PENDING_MAX {
        match queues.ready() {
            Some(Ok(m)) => {
                queue(&m, taking, pending).await;
                messages += 1;
            }
            Some(Err(e)) => {
                failed = Some(e);
                break;
            }
            None => break,
        }
    }
    tracing::Span::current().record("messages", messages);
    failed
}

/// Takes a message into `pending`, after the marks of what happened before it: assignments
/// happen inside `recv`, so their marks go before any reading of the partition.
async fn queue(message: &BorrowedMessage<'_>, taking: &Take<'_>, pending: &mut VecDeque<Ingested>) {
    pending.extend(
        taking
            .partitions
            .drain_marks()
            .into_iter()
            .map(Ingested::Source),
    );
    pending.push_back(take(message, taking).await);
}

/// Records taken from Kafka that may wait for room in the pipeline before taking stops.
const PENDING_MAX: usize = 64;

/// Holding partitions back and letting them go for watermark alignment: a partition held is
/// not read from its queue (see [`PartitionQueues`]).
struct Alignment<'a> {
    partitions: &'a Partitions,
    metrics: &'a IngestMetrics,
}

impl Alignment<'_> {
    /// Decides and applies: holds partitions that ran ahead, lets go of those caught up with.
    fn apply(&self, max_drift_ms: u64, queues: &mut PartitionQueues<IngestContext>) {
        let decided = self.partitions.align(max_drift_ms, Instant::now());
        for tp in &decided.hold {
            let labels = [tp.0.as_str(), &tp.1.to_string()];
            self.metrics.kafka_paused.with_label_values(&labels).set(1);
            queues.hold(tp, true);
        }
        for (tp, seconds) in &decided.release {
            let labels = [tp.0.as_str(), &tp.1.to_string()];
            self.metrics.kafka_paused.with_label_values(&labels).set(0);
            self.metrics
                .kafka_paused_seconds
                .with_label_values(&labels)
                .inc_by(*seconds);
            queues.hold(tp, false);
        }
    }
}

/// A list of partitions, for the client's calls.
fn tp_list(tps: &[Tp]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for (topic, partition) in tps {
        list.add_partition(topic, *partition);
    }
    list
}

/// Compares each partition's position with its end on a thread of its own (the broker calls
/// block), so the partitions that have caught up stop holding event time back; with a static
/// assignment, also assigns the partitions added since the start.
struct ProgressCheck {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl ProgressCheck {
    fn spawn(
        consumer: Arc<IngestConsumer>,
        partitions: Arc<Partitions>,
        metrics: IngestMetrics,
        interval: Duration,
        from_latest: bool,
        mut watch: Option<PartitionWatch>,
    ) -> ProgressCheck {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let span = tracing::info_span!("kafka_progress_check");
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            while !stopped.load(Ordering::Relaxed) {
                if let Some(watch) = &mut watch {
                    if let Err(e) = watch.look(consumer.as_ref(), &partitions, &metrics) {
                        tracing::warn!(error = %e, "cannot look for new kafka partitions");
                    }
                }
                if let Err(e) = check_progress(&consumer, &partitions, &metrics, from_latest) {
                    tracing::debug!(error = %e, "cannot compare kafka positions with their ends");
                }
                std::thread::sleep(interval);
            }
        });
        ProgressCheck { stop }
    }

    fn stop(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn check_progress(
    consumer: &IngestConsumer,
    partitions: &Partitions,
    metrics: &IngestMetrics,
    from_latest: bool,
) -> Result<(), KafkaError> {
    let timeout = Duration::from_secs(2);
    let unknown = partitions.without_start();
    if !unknown.is_empty() {
        let committed = consumer.committed_offsets(tp_list(&unknown), timeout)?;
        for e in committed.elements() {
            let tp = (e.topic().to_owned(), e.partition());
            let start = match e.offset() {
                Offset::Offset(n) => n,
                // No commit yet: the log's start or end, as `auto.offset.reset` says.
                _ => {
                    let (low, high) = consumer.fetch_watermarks(&tp.0, tp.1, timeout)?;
                    if from_latest {
                        high
                    } else {
                        low
                    }
                }
            };
            partitions.set_start(&tp, start);
        }
    }
    for tp in partitions.behind() {
        let (_, high) = consumer.fetch_watermarks(&tp.0, tp.1, timeout)?;
        let caught_up = partitions.ends_at(&tp, high);
        metrics
            .kafka_caught_up
            .with_label_values(&[tp.0.as_str(), &tp.1.to_string()])
            .set(i64::from(caught_up));
    }
    Ok(())
}

/// What taking a message needs.
struct Take<'a> {
    config: &'a KafkaConfig,
    limits: &'a ValidationLimits,
    consumer: &'a Arc<IngestConsumer>,
    tracker: &'a Arc<OffsetTracker>,
    partitions: &'a Partitions,
    metrics: &'a IngestMetrics,
    /// `ioc_ingest_ack_failures_total{transport="kafka"}`, resolved once.
    ack_failures: prometheus::IntCounter,
    dead_letters: Option<&'a FutureProducer>,
}

/// Decodes a message into a record, forwarding a reject to the dead-letter topic if set.
async fn take(message: &BorrowedMessage<'_>, t: &Take<'_>) -> Ingested {
    let record = to_record(message, t);
    let event_ms = match &record {
        Ingested::Reading(r, _) => Some(r.reading.event_time.0),
        _ => None,
    };
    t.partitions.taken(
        message.topic(),
        message.partition(),
        message.offset(),
        event_ms,
    );
    if let (Some(producer), Ingested::DeadLetter(letter, _)) = (t.dead_letters, &record) {
        forward_dead_letter(producer, t.config, message, &letter.rejection).await;
    }
    record
}

/// Measures each assigned partition's lag — its end offset less the committed offset — every
/// `interval`, on its own thread: statistics callbacks only run while the consumer is polled,
/// and it is not polled while the pipeline is full, exactly when the lag matters.
fn spawn_lag_task(
    consumer: Arc<IngestConsumer>,
    metrics: IngestMetrics,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    let lag = async move {
        loop {
            tokio::time::sleep(interval).await;
            let consumer = Arc::clone(&consumer);
            let metrics = metrics.clone();
            let measured = tokio::task::spawn_blocking(move || {
                let committed = consumer.committed(Duration::from_secs(5))?;
                for e in committed.elements() {
                    let (_, high) = consumer.fetch_watermarks(
                        e.topic(),
                        e.partition(),
                        Duration::from_secs(5),
                    )?;
                    // No commit yet: the whole partition is behind.
                    let done = e.offset().to_raw().filter(|o| *o >= 0).unwrap_or(0);
                    metrics
                        .kafka_lag
                        .with_label_values(&[e.topic(), &e.partition().to_string()])
                        .set((high - done).max(0));
                }
                Ok::<(), KafkaError>(())
            })
            .await;
            if let Ok(Err(e)) = measured {
                tracing::debug!(error = %e, "cannot measure kafka lag");
            }
        }
    };
    tokio::spawn(lag.instrument(tracing::info_span!("kafka_lag")))
}

/// Produces a rejected message to the dead-letter topic, best effort (the table has it).
async fn forward_dead_letter(
    producer: &FutureProducer,
    config: &KafkaConfig,
    message: &BorrowedMessage<'_>,
    rejection: &Rejection,
) {
    let Some(topic) = config.dead_letter_topic.as_deref() else {
        return;
    };
    let headers = rdkafka::message::OwnedHeaders::new()
        .insert(rdkafka::message::Header {
            key: "reject_code",
            value: Some(rejection.code.as_str()),
        })
        .insert(rdkafka::message::Header {
            key: "reject_reason",
            value: Some(rejection.detail.as_str()),
        })
        .insert(rdkafka::message::Header {
            key: "source_topic",
            value: Some(message.topic()),
        });
    let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    if let Some(payload) = message.payload() {
        record = record.payload(payload);
    }
    if let Err((e, _)) = producer.send(record, Duration::from_secs(5)).await {
        tracing::warn!(error = %e, topic, "cannot produce to the dead-letter topic");
    }
}

fn header<'a>(message: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a [u8]> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
}

/// Decodes one message into a record whose acknowledgement marks its offset as stored.
fn to_record(message: &BorrowedMessage<'_>, t: &Take<'_>) -> Ingested {
    let (config, limits, metrics) = (t.config, t.limits, t.metrics);
    let (consumer, tracker) = (t.consumer, t.tracker);
    let received_at_ms = now_ms();
    let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
    tracker.taken(topic, partition, offset);
    let ack = {
        let (consumer, tracker) = (Arc::clone(consumer), Arc::clone(tracker));
        let topic = topic.to_owned();
        let failures = t.ack_failures.clone();
        Ack::new(move || {
            if let Some(upto) = tracker.stored(&topic, partition, offset) {
                if let Err(e) = consumer.store_offset(&topic, partition, upto) {
                    // The partition was revoked meanwhile: its new owner resumes from the last
                    // commit and the replay is stored once.
                    failures.inc();
                    tracing::debug!(error = %e, topic, partition, "cannot store kafka offset");
                }
            }
        })
    };
    let kind = config.topics.kind_of(topic);
    let payload = message.payload().unwrap_or_default();
    let parts = KafkaParts {
        topic,
        kind,
        key: message.key(),
        district_header: header(message, DISTRICT_HEADER),
        payload,
    };
    let limits = DecodeLimits {
        max_payload_bytes: config.max_payload_bytes,
        now_ms: received_at_ms,
        validation: *limits,
    };
    let decoded = decode_kafka(parts, &limits);
    let arrival = Arrival {
        transport: Transport::Kafka,
        source: KafkaSource::of_record(topic, partition, offset),
        payload,
        received_at_ms,
        kind,
    };
    record::to_record(arrival, decoded, Some(ack), metrics)
}

/// Per-topic partition counts, for operators checking a deployment (`iocd` logs them).
pub fn describe_topics(config: &KafkaConfig) -> Result<BTreeMap<String, usize>, IngestError> {
    let consumer: BaseConsumer = config
        .consumer_config(false)
        .create()
        .map_err(kafka_error("cannot create the consumer"))?;
    partition_counts(&consumer, &config.topic_names())
}

/// Whether a Kafka client error may pass: the broker or the network failed, or the group's
/// coordinator or a partition's leader is moving; not bad settings, unknown topics or a client
/// that cannot be created (those carry no error code, or a code of their own).
pub(crate) fn is_retryable_kafka(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    error.rdkafka_error_code().is_some_and(|code| {
        matches!(
            code,
            C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::OperationTimedOut
                | C::TimedOutQueue
                | C::QueueFull
                | C::Resolve
                | C::RequestTimedOut
                | C::NetworkException
                | C::BrokerNotAvailable
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::CoordinatorLoadInProgress
                | C::CoordinatorNotAvailable
                | C::NotCoordinator
                | C::NotEnoughReplicas
                | C::RebalanceInProgress
                | C::ThrottlingQuotaExceeded
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_and_network_failures_are_retryable_bad_settings_are_not() {
        assert!(is_retryable_kafka(&KafkaError::MetadataFetch(
            RDKafkaErrorCode::BrokerTransportFailure
        )));
        assert!(is_retryable_kafka(&KafkaError::MessageConsumption(
            RDKafkaErrorCode::AllBrokersDown
        )));
        assert!(!is_retryable_kafka(&KafkaError::MetadataFetch(
            RDKafkaErrorCode::TopicAuthorizationFailed
        )));
        assert!(!is_retryable_kafka(&KafkaError::ClientCreation(
            "bad bootstrap.servers".into()
        )));
        assert!(!is_retryable_kafka(&KafkaError::Subscription(
            "bad topic".into()
        )));
        let e = IngestError::Kafka {
            context: "cannot read metadata of ioc.sensor".into(),
            source: KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure),
        };
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "kafka: cannot read metadata of ioc.sensor");
        let cause = std::error::Error::source(&e).map(ToString::to_string);
        assert!(
            cause.is_some_and(|c| c.contains("Broker transport failure")),
            "{e:?}"
        );
    }
}
