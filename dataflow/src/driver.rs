//! Runs the timely workers and feeds them from ingest.
//!
//! Every worker is a feeder of its own share of the sources (see [`Feed`]): it takes
//! records from its queue, drops repeats of a message id, sorts on-time readings from late
//! ones against its own watermark, hands the raw records to [`Outputs`] (where they are stored,
//! and their source acknowledged once durable), and sends on-time readings into the dataflow
//! at their event-time epoch. Its input capability follows its watermark, so the frontier is
//! the least watermark of the cluster, and windows close on it. The dataflow exchanges
//! readings by device, so every worker owns the registry entries, windows and per-device KPIs
//! of its devices; the registry's changes enter at the cluster's first worker. Window, KPI and
//! reading results go to the first process's workers for its sinks:
//!
//! ```text
//! readings ─> JoinRegistry ─> SplitReadings ─> EventTimeWindows ─> WindowSink
//! registry ─> RegistryByDevice ─┘   │    └──> DeviceKpis <─(finals)─┘
//!                                   │           ├─(rows, cameras)─> CityKpis ─> KpiSink
//!                                   │           └─(rows)─────────────────────────┘
//!                                   └─> ReadingSink (rules on readings, unknown devices)
//! ```

use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future as _;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use differential_dataflow::input::{Input, InputSession};
use ioc_schemas::{
    Ack, DeadLetter, DeviceChange, District, Ingested, IngestedReading, KafkaSource, Kind, Kpi,
    Transport, WindowResult,
};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::{Probe, UnorderedInput};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::{Broadcast, Input as _};
use timely::dataflow::operators::vec::{Filter, Map};
use timely::dataflow::operators::Exchange as _;
use timely::dataflow::operators::{ActivateCapability, Concat, Inspect};
use timely::dataflow::{ProbeHandle, Stream};
use tokio::sync::mpsc;
use tracing::field::Empty;

use crate::clock::Clock;
use crate::config::{ClusterConfig, DataflowConfig};
use crate::dedupe::RecentIds;
use crate::kpi::city::CityInput;
use crate::kpi::device::{is_base_final, Activity, KpiInput};
use crate::kpi::{city_kpis, device_kpis};
use crate::metrics::DataflowMetrics;
use crate::name::device_route;
use crate::registry::{
    join_registry, registry_changes, DeviceMeta, Enriched, Observation, RegistryFeed,
};
use crate::watermark::Watermarks;
use crate::window::{event_time_windows, Sample, SeriesKey};
use crate::wire::ExchangedKpi;
use crate::{DataflowError, FastMap, Feed, FeedQueues, Name};

/// Where the dataflow's results go. Called from worker threads (not async): implementations
/// may block, which is how a slow store pushes back on ingest.
pub trait Outputs: Clone + Send + Sync + 'static {
    /// A valid reading to store raw. `late_behind` is the watermark it missed, when it came
    /// later than the allowed lateness (it is then in no window and goes to the late ledger).
    fn raw_reading(&self, reading: IngestedReading, late_behind: Option<u64>, ack: Option<Ack>);
    /// A rejected input to keep.
    fn dead_letter(&self, letter: DeadLetter, ack: Option<Ack>);
    /// A repeat of a message already taken; nothing to store, the source may be acknowledged.
    fn duplicate(&self, reading: IngestedReading, ack: Option<Ack>);
    /// A window result: provisional, a correction, or final.
    fn window(&self, result: WindowResult);
    /// A KPI row, computed when its base window closed.
    fn kpi(&self, kpi: Kpi);
    /// A reading from a device the registry does not know (it is stored and windowed all the
    /// same, under its topic's district).
    fn unknown_device(&self, device_id: &str, kind: Kind, district: District, event_ms: u64);
    /// An on-time reading taken once (replays left out), for rules on single readings; only
    /// when [`RunOptions::reading_rules`] is on.
    fn reading(&self, observation: &Observation);
}

/// The running dataflow.
#[derive(Debug)]
pub struct DataflowHandle {
    thread: std::thread::JoinHandle<Result<(), DataflowError>>,
}

impl DataflowHandle {
    /// Waits until the workers have finished: after the input queue is closed and drained.
    pub fn join(self) -> Result<(), DataflowError> {
        self.thread
            .join()
            .map_err(|payload| DataflowError::panicked(payload.as_ref()))?
    }
}

/// How one run of the dataflow treats the edges of its input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOptions {
    /// Windows starting before this are not emitted (their readings are only partly fed in):
    /// 0 for all; after a restart, where the replay begins.
    pub emit_windows_from_ms: u64,
    /// When the input ends, emit the windows still open as final instead of discarding them:
    /// for a backfill, whose input is complete; not for a process shutting down.
    pub finish_open_windows: bool,
    /// Final 5-minute windows from before `emit_windows_from_ms` (see
    /// [`crate::kpi::device::HISTORY_METRICS`]), oldest first: after a restart they restore
    /// the KPI state with long horizons — the NowCast's 12 hours, the 24-hour rain, the day's
    /// AQI — without emitting KPI rows for them again.
    pub kpi_history: Vec<WindowResult>,
    /// Put every on-time reading out through [`Outputs::reading`] (for rules on readings).
    pub reading_rules: bool,
    /// The processes running this dataflow together; one by default.
    pub cluster: ClusterConfig,
}

/// The feed into a dataflow of `config` in this process of `cluster`: ingest sends into the
/// [`Feed`], and [`spawn`] takes the queues.
pub fn feed(config: &DataflowConfig, cluster: &ClusterConfig) -> (Feed, FeedQueues) {
    Feed::new(cluster.topology(config.workers), config.input_capacity)
}

/// Starts the workers, each taking the records of its own queue in `input` (see [`feed`]).
/// They run until every [`Feed`] is dropped; then open windows are discarded (they are
/// incomplete) unless `options` says to finish them, and the workers stop.
/// Readings are joined with `registry`, which changes as its change channel says. In a cluster
/// (`options.cluster`), this returns once the workers run; they start when every process has
/// connected, and only the first process's registry and KPI history are used.
pub fn spawn<O: Outputs>(
    config: DataflowConfig,
    mut options: RunOptions,
    input: FeedQueues,
    registry: RegistryFeed,
    outputs: O,
    metrics: DataflowMetrics,
    clock: Arc<dyn Clock>,
) -> Result<DataflowHandle, DataflowError> {
    config.validate()?;
    options.cluster.validate()?;
    let topology = options.cluster.topology(config.workers);
    if input.topology != topology || input.queues.len() != config.workers {
        return Err(DataflowError::Config(format!(
            "the feed was made for {:?} with {} queues, the dataflow runs as {topology:?}",
            input.topology,
            input.queues.len()
        )));
    }
    let timely_config = timely_config(&config, &options);
    let queues: Arc<Mutex<Vec<Option<_>>>> =
        Arc::new(Mutex::new(input.queues.into_iter().map(Some).collect()));
    let history = std::mem::take(&mut options.kpi_history);
    let first = Arc::new(Mutex::new(Some((registry, history))));
    let shared = Arc::new(ProcessShared {
        discard_open: Arc::new(AtomicBool::new(false)),
        watermarks: (0..config.workers).map(|_| AtomicU64::new(0)).collect(),
        pending_sources: AtomicI64::new(0),
        drained: AtomicUsize::new(0),
        advanced: AtomicUsize::new(0),
        stopped: AtomicUsize::new(0),
    });
    let thread = std::thread::Builder::new()
        .name("ioc-dataflow".into())
        .spawn(move || {
            let guards = timely::execute(timely_config, move |worker| {
                let local = worker.index() % config.workers;
                let queue = queues.lock().ok().and_then(|mut q| q[local].take());
                // The registry and the KPI history enter once, at the cluster's first worker.
                let first = (worker.index() == 0)
                    .then(|| first.lock().ok().and_then(|mut slot| slot.take()))
                    .flatten();
                run_worker(
                    worker,
                    Environment {
                        config: &config,
                        options: options.clone(),
                        local,
                        queue,
                        first,
                        outputs: outputs.clone(),
                        metrics: metrics.clone(),
                        clock: Arc::clone(&clock),
                        shared: Arc::clone(&shared),
                    },
                )
            })
            .map_err(|reason| DataflowError::Start { reason })?;
            for result in guards.join() {
                // timely hands a worker's panic over as the `Debug` of its payload.
                result.map_err(|message| DataflowError::Panicked { message })??;
            }
            Ok(())
        })
        .map_err(|source| DataflowError::Thread {
            thread: "ioc-dataflow",
            source,
        })?;
    Ok(DataflowHandle { thread })
}

/// One process of `config.workers` threads, or this process of the cluster.
fn timely_config(config: &DataflowConfig, options: &RunOptions) -> timely::Config {
    let communication = if options.cluster.is_cluster() {
        timely::CommunicationConfig::Cluster {
            threads: config.workers,
            process: options.cluster.process,
            addresses: options.cluster.addresses.clone(),
            report: false,
            zerocopy: false,
        }
    } else {
        timely::CommunicationConfig::Process(config.workers)
    };
    timely::Config {
        communication,
        worker: timely::WorkerConfig::default(),
    }
}

/// What the workers of one process share.
#[derive(Debug)]
struct ProcessShared {
    /// Set at shutdown: whether the windows still open are discarded or finished.
    discard_open: Arc<AtomicBool>,
    /// Each local worker's watermark: a worker without sources takes the highest; the gauge
    /// shows the lowest.
    watermarks: Vec<AtomicU64>,
    /// The sources holding time until they deliver, summed over the local workers.
    pending_sources: AtomicI64,
    /// Local workers whose input has ended (the three steps of a stop, in order).
    drained: AtomicUsize,
    /// ... and whose watermark has moved for the last time.
    advanced: AtomicUsize,
    /// ... and whose closed windows are out.
    stopped: AtomicUsize,
}

impl ProcessShared {
    /// Counts this worker in `step` and works the dataflow, calling `each`, until every local
    /// worker has come to it.
    fn wait_for_all(
        &self,
        step: &AtomicUsize,
        worker: &mut timely::worker::Worker,
        mut each: impl FnMut(),
    ) {
        step.fetch_add(1, Ordering::SeqCst);
        while step.load(Ordering::SeqCst) < self.watermarks.len() {
            each();
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
    }
}

/// One worker's environment, passed once.
struct Environment<'c, O> {
    config: &'c DataflowConfig,
    options: RunOptions,
    /// This worker's index among its process's workers.
    local: usize,
    /// Its share of the sources' records.
    queue: Option<mpsc::Receiver<Ingested>>,
    /// The registry and the KPI history, at the cluster's first worker.
    first: Option<(RegistryFeed, Vec<WindowResult>)>,
    outputs: O,
    metrics: DataflowMetrics,
    clock: Arc<dyn Clock>,
    shared: Arc<ProcessShared>,
}

/// What every worker of the cluster agrees on before the dataflow starts.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Agreement {
    /// The message-id fingerprint seeds (the first worker's).
    seeds: (u64, u64),
    /// Windows starting before this are not emitted (the latest any process asks).
    emit_windows_from_ms: u64,
}

/// Exchanges every worker's proposal and returns the agreed one.
fn agree(worker: &mut timely::worker::Worker, mine: Agreement) -> Agreement {
    let proposals = Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = Rc::clone(&proposals);
    let index = worker.index();
    let (mut input, probe) = worker.dataflow::<u64, _, _>(move |scope| {
        let (input, stream) = scope.new_input();
        let probe = stream
            .broadcast()
            .inspect(move |p: &(usize, Agreement)| seen.borrow_mut().push(*p))
            .probe()
            .0;
        (input, probe)
    });
    input.send((index, mine));
    input.close();
    while !probe.done() {
        worker.step();
    }
    let proposals = proposals.borrow();
    Agreement {
        seeds: proposals
            .iter()
            .find(|(i, _)| *i == 0)
            .map_or(mine.seeds, |(_, p)| p.seeds),
        emit_windows_from_ms: proposals
            .iter()
            .map(|(_, p)| p.emit_windows_from_ms)
            .max()
            .unwrap_or(mine.emit_windows_from_ms),
    }
}

/// Routes a result of a device (by its [`device_route`]) to the first process's worker that
/// windows the device when it is local (in one process: the worker it is on).
fn to_first_process(route: u64, workers: usize) -> u64 {
    route % workers as u64
}

/// A sink on the first process: hands every record of `stream` to `each` and adds itself to
/// `probe`.
fn sink<'scope, D: timely::ExchangeData>(
    stream: Stream<'scope, u64, Vec<D>>,
    name: &str,
    probe: &ProbeHandle<u64>,
    mut each: impl FnMut(D) + 'static,
) {
    stream
        .unary::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(
            Pipeline,
            name,
            move |_cap, _info| {
                move |input, _output| {
                    input.for_each_stamp(|_cap, batches| {
                        for batch in batches {
                            for record in batch.drain(..) {
                                each(record);
                            }
                        }
                    });
                }
            },
        )
        .probe_with(probe);
}

/// Splits joined readings, each taken once (the stream is not copied): their samples go to
/// the windows, their activity to the KPIs (every reading counts for health), and, for the
/// first process's reading sink, readings of unknown devices and, when `reading_rules` is on,
/// every reading not replayed.
#[allow(clippy::type_complexity)] // the three outputs
fn split_readings(
    enriched: Stream<'_, u64, Vec<Enriched>>,
    reading_rules: bool,
) -> (
    Stream<'_, u64, Vec<Sample>>,
    Stream<'_, u64, Vec<KpiInput>>,
    Stream<'_, u64, Vec<Enriched>>,
) {
    let mut builder = OperatorBuilder::new("SplitReadings".to_owned(), enriched.scope());
    let mut input = builder.new_input(enriched, Pipeline);
    let (mut samples_out, samples) = builder.new_output::<Vec<Sample>>();
    let (mut activity_out, activity) = builder.new_output::<Vec<KpiInput>>();
    let (mut readings_out, readings) = builder.new_output::<Vec<Enriched>>();
    builder.build(move |_capabilities| {
        move |_frontiers| {
            let mut samples_out = samples_out.activate();
            let mut activity_out = activity_out.activate();
            let mut readings_out = readings_out.activate();
            input.for_each_stamp(|cap, batches| {
                let (mut samples, mut activity, mut readings) =
                    (Vec::new(), Vec::new(), Vec::new());
                for batch in batches {
                    for e in batch.drain(..) {
                        let district = e.district();
                        let registered = e.device.is_some();
                        if !registered || (reading_rules && !e.observation.replayed) {
                            readings.push(Enriched {
                                observation: e.observation.clone(),
                                device: e.device.clone(),
                            });
                        }
                        let o = e.observation;
                        for (metric, value) in o.samples {
                            samples.push(Sample {
                                series: SeriesKey {
                                    kind: o.kind,
                                    district,
                                    device_id: o.device_id,
                                    metric,
                                },
                                event_ms: o.event_ms,
                                value,
                            });
                        }
                        activity.push(KpiInput::Activity(Activity {
                            device_id: o.device_id,
                            medium: o.medium,
                            event_ms: o.event_ms,
                            registered,
                        }));
                    }
                }
                if !samples.is_empty() {
                    samples_out.give(&cap, &mut samples);
                }
                if !activity.is_empty() {
                    activity_out.give(&cap, &mut activity);
                }
                if !readings.is_empty() {
                    readings_out.give(&cap, &mut readings);
                }
            });
        }
    });
    (samples, activity, readings)
}

fn run_worker<O: Outputs>(
    worker: &mut timely::worker::Worker,
    env: Environment<'_, O>,
) -> Result<(), DataflowError> {
    let Environment {
        config,
        options,
        local,
        queue,
        first,
        outputs,
        metrics,
        clock,
        shared,
    } = env;
    let random = foldhash::quality::RandomState::default();
    let agreed = agree(
        worker,
        Agreement {
            seeds: (
                std::hash::BuildHasher::hash_one(&random, 1u8),
                std::hash::BuildHasher::hash_one(&random, 2u8),
            ),
            emit_windows_from_ms: options.emit_windows_from_ms,
        },
    );
    let windows = config.effective_windows();
    let lateness_ms = config.allowed_lateness_ms;
    let workers = config.workers;
    let emit_from = agreed.emit_windows_from_ms;
    let cluster_newest = Rc::new(Cell::new(0u64));
    let newest_seen = Rc::clone(&cluster_newest);
    let window_clock = Arc::clone(&clock);
    let window_discard = Arc::clone(&shared);
    let (window_outputs, window_metrics, sink_clock) =
        (outputs.clone(), metrics.clone(), Arc::clone(&clock));
    let (kpi_outputs, kpi_metrics) = (outputs.clone(), metrics.clone());
    let (reading_outputs, reading_metrics) = (outputs.clone(), metrics.clone());
    let repeats = metrics.resolved.duplicates.clone();
    let reading_rules = options.reading_rules;
    let (inputs, mut registry_input, (mut history_input, history_cap), probe) = worker
        .dataflow::<u64, _, _>(move |scope| {
            let (input, observations) = scope.new_unordered_input();
            // Each feeder's newest epoch, for the first worker to keep the registry's time
            // just past the newest reading anywhere.
            let (newest_input, newest) = scope
                .new_unordered_input::<timely::container::CapacityContainerBuilder<Vec<u64>>>();
            newest
                .exchange(|_| 0)
                .inspect(move |epoch| newest_seen.set(newest_seen.get().max(*epoch)));
            let (history_input, history) = scope.new_unordered_input();
            let (registry_input, registry) = scope.new_collection();
            let changes = registry_changes(registry);
            let enriched = join_registry(observations, changes.clone(), repeats);
            let (samples, activity, readings) = split_readings(enriched, reading_rules);
            let results = event_time_windows(
                samples,
                windows,
                lateness_ms,
                emit_from,
                Arc::clone(&window_discard.discard_open),
                window_clock,
            );
            let probe = ProbeHandle::new();
            sink(
                results.clone().exchange(move |w: &WindowResult| {
                    to_first_process(device_route(&w.device_id), workers)
                }),
                "WindowSink",
                &probe,
                move |result| {
                    window_metrics.observe_window(&result, sink_clock.now_ms());
                    window_outputs.window(result);
                },
            );
            sink(
                readings.exchange(move |e: &Enriched| {
                    to_first_process(e.observation.device_id.route(), workers)
                }),
                "ReadingSink",
                &probe,
                move |e| {
                    let o = &e.observation;
                    if e.device.is_none() {
                        reading_metrics
                            .resolved
                            .unknown_device_readings
                            .get(o.kind)
                            .inc();
                        reading_outputs.unknown_device(
                            o.device_id.as_str(),
                            o.kind,
                            o.topic_district,
                            o.event_ms,
                        );
                    }
                    if reading_rules && !o.replayed {
                        reading_outputs.reading(o);
                    }
                },
            );
            let device_inputs = activity
                .concat(results.filter(is_base_final).map(KpiInput::Window))
                .concat(changes.map(|((device, meta), time, diff)| {
                    KpiInput::Registry(device, meta, time, diff)
                }))
                .concat(history.exchange(|i: &KpiInput| match i {
                    KpiInput::Window(w) => device_route(&w.device_id),
                    _ => 0,
                }));
            let per_device = device_kpis(device_inputs, emit_from);
            sink(
                city_kpis(per_device.clone())
                    .concat(per_device.flat_map(CityInput::into_kpi))
                    .map(ExchangedKpi)
                    .exchange(|_: &ExchangedKpi| 0),
                "KpiSink",
                &probe,
                move |ExchangedKpi(kpi)| {
                    kpi_metrics.resolved.kpis(kpi.family()).inc();
                    kpi_outputs.kpi(kpi);
                },
            );
            ((input, newest_input), registry_input, history_input, probe)
        });
    let ((mut handle, cap), (newest_handle, newest_cap)) = inputs;

    // The registry and the KPI history enter at the first worker; the others close theirs.
    let registry = match first {
        Some((registry, history)) => {
            let mut current = FastMap::default();
            for device in &registry.devices {
                let meta = DeviceMeta::of(device);
                registry_input.insert((device.id.clone(), meta.clone()));
                current.insert(device.id.clone(), meta);
            }
            registry_input.flush();
            // The KPI history goes in first, at each window's end, and its input closes.
            for window in history {
                let end = window.window_start_ms + window.window_size_ms;
                history_input
                    .activate()
                    .session(&history_cap.delayed(&end))
                    .give(KpiInput::Window(window));
            }
            Some(RegistryState {
                input: registry_input,
                changes: registry.changes,
                current,
                cluster_newest,
            })
        }
        None => {
            registry_input.close();
            None
        }
    };
    drop(history_cap);

    let mut feeder = Feeder {
        config,
        local,
        cap: Some(cap),
        newest: Some((newest_handle, newest_cap)),
        newest_epoch: 0,
        watermarks: Watermarks::new(config.allowed_lateness_ms, config.idle_timeout_ms),
        recent: RecentIds::with_seeds(agreed.seeds.0, agreed.seeds.1),
        by_epoch: BTreeMap::new(),
        registry,
        pending_reported: 0,
        shared: Arc::clone(&shared),
        outputs,
        metrics,
        clock,
        now_ms: 0,
    };
    let mut queue = queue;
    let index = worker.index();
    let mut taken = Vec::with_capacity(config.input_batch);
    // Polled without waiting: nothing wakes a timely worker when ingest sends, so an idle
    // worker parks briefly and looks again.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    while let Some(rx) = queue.as_mut() {
        // One step: a batch from the queue fed in, then the dataflow worked.
        let step = tracing::debug_span!("dataflow_step", worker = index, records = Empty);
        let _in_step = step.enter();
        // A batch at once: the channel's permits go back in one step, not per record.
        let ready = std::pin::pin!(rx.recv_many(&mut taken, config.input_batch)).poll(&mut cx);
        if let std::task::Poll::Ready(0) = ready {
            queue = None;
        }
        let count = taken.len();
        if count > 0 {
            feeder.now_ms = feeder.clock.now_ms();
            for record in taken.drain(..) {
                feeder.take(record);
            }
        }
        feeder.apply_registry_changes();
        feeder.flush(&mut handle);
        feeder.advance();
        step.record("records", count);
        // Park briefly when idle (ingest has no way to unpark a timely worker): 1 ms, as long
        // as a record may wait before it is taken.
        let park = if count == 0 {
            Some(Duration::from_millis(1))
        } else {
            Some(Duration::ZERO)
        };
        worker.step_or_park(park);
    }
    // Every local worker's input has ended; those following the others follow them once more
    // (their last reading may have moved time).
    shared.wait_for_all(&shared.drained, worker, || feeder.advance());
    feeder.advance();
    shared.wait_for_all(&shared.advanced, worker, || {});
    // Emit every window the final watermark has closed before discarding the open ones, once
    // every local worker has: the first to close its input would otherwise move time on.
    let least = shared.watermarks.iter().map(|w| w.load(Ordering::Relaxed));
    let least = least.min().unwrap_or(0);
    let closed_until = least - least % config.epoch_ms;
    while probe.less_than(&closed_until) {
        worker.step_or_park(Some(Duration::from_millis(1)));
    }
    shared.wait_for_all(&shared.stopped, worker, || {});
    shared
        .discard_open
        .store(!options.finish_open_windows, Ordering::SeqCst);
    feeder.cap = None;
    feeder.newest = None;
    feeder.registry = None;
    drop(handle);
    while worker.step_or_park(None) {}
    Ok(())
}

/// The input source a reading's watermark is tracked under (its Kafka partition, or the MQTT
/// connection), and its Kafka offset.
fn source_of(reading: &IngestedReading) -> (&str, Option<i64>) {
    match reading.transport {
        Transport::Kafka => KafkaSource::parse(&reading.source)
            .map_or(("kafka", None), |k| (k.partition_name, k.offset)),
        Transport::Mqtt => ("mqtt", None),
    }
}

type InputHandle = timely::dataflow::operators::core::unordered_input::UnorderedHandle<
    u64,
    timely::container::CapacityContainerBuilder<Vec<Observation>>,
>;

type NewestHandle = timely::dataflow::operators::core::unordered_input::UnorderedHandle<
    u64,
    timely::container::CapacityContainerBuilder<Vec<u64>>,
>;

/// The first worker's side of the registry: the differential input, where changes come from,
/// the entries in force (to retract the old entry when one is replaced), and the newest epoch
/// any feeder has reported.
struct RegistryState {
    input: InputSession<u64, (String, DeviceMeta), isize>,
    changes: Option<mpsc::Receiver<DeviceChange>>,
    current: FastMap<String, DeviceMeta>,
    cluster_newest: Rc<Cell<u64>>,
}

/// A worker's input side: dedupe, lateness, watermark.
struct Feeder<'c, O: Outputs> {
    config: &'c DataflowConfig,
    /// This worker's index in its process.
    local: usize,
    cap: Option<ActivateCapability<u64>>,
    /// Where this feeder reports its newest epoch to the first worker, and the capability to.
    newest: Option<(NewestHandle, ActivateCapability<u64>)>,
    /// The newest epoch reported.
    newest_epoch: u64,
    watermarks: Watermarks,
    /// Ids of the readings seen (replayed ones too) until the watermark passes them by the
    /// allowed lateness. A replay does not move the watermark, so a redelivery after a restart
    /// is recognised however long after the restart the source gets to it.
    recent: RecentIds,
    /// On-time readings of this step, by epoch.
    by_epoch: BTreeMap<u64, Vec<Observation>>,
    /// At the cluster's first worker.
    registry: Option<RegistryState>,
    /// This worker's share of `ioc_dataflow_pending_sources`, as last added.
    pending_reported: i64,
    shared: Arc<ProcessShared>,
    outputs: O,
    metrics: DataflowMetrics,
    clock: Arc<dyn Clock>,
    /// The wall time the batch being taken arrived at, read once a batch.
    now_ms: u64,
}

/// An on-time reading as the dataflow carries it, its ids interned; `None` when one of them is
/// new and the name table is full.
fn observation_of(reading: &IngestedReading, id: u128, replayed: bool) -> Option<Observation> {
    let r = &reading.reading;
    let mut samples = crate::registry::Samples::new();
    let mut named = true;
    r.for_each_sample(|metric, value| match Name::admit(metric) {
        Some(metric) => samples.push((metric, value)),
        None => named = false,
    });
    Some(Observation {
        device_id: Name::admit(&r.device_id).filter(|_| named)?,
        kind: r.kind(),
        topic_district: reading.district,
        medium: match &r.body {
            ioc_schemas::Body::Environment(b) => Some(b.medium),
            _ => None,
        },
        event_ms: r.event_time.0,
        samples,
        id,
        replayed,
    })
}

impl<O: Outputs> Feeder<'_, O> {
    fn take(&mut self, record: Ingested) {
        let (reading, ack, replayed) = match record {
            Ingested::Reading(reading, ack) => (reading, ack, false),
            Ingested::Replayed(reading) => (reading, None, true),
            Ingested::DeadLetter(letter, ack) => {
                self.outputs.dead_letter(letter, ack);
                return;
            }
            Ingested::Source(mark) => {
                self.watermarks.mark(&mark, self.now_ms);
                if mark.state == ioc_schemas::SourceState::Revoked {
                    let _ = self
                        .metrics
                        .source_watermark_ms
                        .remove_label_values(&[&mark.source]);
                }
                return;
            }
        };
        let event_ms = reading.reading.event_time.0;
        let kind = reading.reading.kind();
        let id = self
            .recent
            .fingerprint(&reading.reading.device_id, &reading.reading.message_id);
        if !self.recent.insert_fingerprint(id, event_ms) {
            if !replayed {
                // A redelivery after a restart moves time as its first delivery did in the run
                // before, so the rest of its partition is judged as an unbroken run judges it.
                self.observe(&reading, event_ms);
                self.metrics.resolved.duplicates.get(kind).inc();
                self.outputs.duplicate(reading, ack);
            }
            return;
        }
        // Replays come in event-time order, so none is late; they are stored already.
        if !replayed && self.watermarks.is_late(event_ms) {
            self.metrics.resolved.late.get(kind).inc();
            self.outputs
                .raw_reading(reading, Some(self.watermarks.watermark()), ack);
            return;
        }
        // A replay does not move time: what the sources held back before the stop they hold
        // back again once they deliver, so a restart judges readings as an unbroken run would.
        if !replayed {
            self.observe(&reading, event_ms);
        }
        let Some(observation) = observation_of(&reading, id, replayed) else {
            // Its device or a metric is new and the name table is full (see `NAME_LIMIT`).
            self.metrics.resolved.unnamed_readings.get(kind).inc();
            if !replayed {
                self.outputs.raw_reading(reading, None, ack);
            }
            return;
        };
        let epoch = event_ms - event_ms % self.config.epoch_ms;
        self.by_epoch.entry(epoch).or_default().push(observation);
        if !replayed {
            self.outputs.raw_reading(reading, None, ack);
        }
    }

    fn observe(&mut self, reading: &IngestedReading, event_ms: u64) {
        let (source, offset) = source_of(reading);
        self.watermarks
            .observe(source, offset, event_ms, self.now_ms);
    }

    /// Applies the registry changes waiting: each takes effect for readings after the newest
    /// event epoch seen.
    fn apply_registry_changes(&mut self) {
        let Some(registry) = self.registry.as_mut() else {
            return;
        };
        let Some(changes) = registry.changes.as_mut() else {
            return;
        };
        loop {
            let change = match changes.try_recv() {
                Ok(change) => change,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    registry.changes = None;
                    break;
                }
            };
            let id = change.device_id().to_owned();
            if let Some(old) = registry.current.remove(&id) {
                registry.input.remove((id.clone(), old));
            }
            // The `op`: 0 `upsert`, 1 `remove`.
            let op = match change {
                DeviceChange::Upsert(device) => {
                    let meta = DeviceMeta::of(&device);
                    registry.input.insert((id.clone(), meta.clone()));
                    registry.current.insert(id, meta);
                    0
                }
                DeviceChange::Remove { .. } => 1,
            };
            self.metrics.resolved.registry_changes[op].inc();
        }
    }

    /// At the first worker, keeps the registry's time just past `epoch` and the newest epoch
    /// any feeder has reported, so readings up to them can be joined.
    fn registry_past(&mut self, epoch: u64) {
        let Some(registry) = self.registry.as_mut() else {
            return;
        };
        let next = epoch
            .max(registry.cluster_newest.get())
            .saturating_add(self.config.epoch_ms);
        if *registry.input.time() < next {
            registry.input.advance_to(next);
        }
        registry.input.flush();
    }

    /// Sends this step's readings at their epochs, and reports a newer epoch to the first
    /// worker.
    fn flush(&mut self, handle: &mut InputHandle) {
        let newest = self.by_epoch.keys().next_back().copied().unwrap_or(0);
        if newest > self.newest_epoch {
            self.newest_epoch = newest;
            if let Some((newest_handle, cap)) = self.newest.as_mut() {
                newest_handle.activate().session(&*cap).give(newest);
            }
        }
        self.registry_past(newest);
        let Some(cap) = self.cap.as_ref() else {
            return;
        };
        for (epoch, mut samples) in std::mem::take(&mut self.by_epoch) {
            // On-time readings are at or after the watermark, and the capability never passes it.
            let at = cap.delayed(&epoch.max(*cap.time()));
            handle.activate().session(&at).give_container(&mut samples);
        }
    }

    /// Moves the input frontier to the watermark's epoch.
    fn advance(&mut self) {
        let now = self.clock.now_ms();
        self.watermarks.tick(now);
        let locals = &self.shared.watermarks;
        if !self.watermarks.holds_time(now) {
            // Nothing here holds time back: follow this process's furthest worker.
            let furthest = locals.iter().map(|w| w.load(Ordering::Relaxed)).max();
            self.watermarks.follow(furthest.unwrap_or(0));
        }
        let watermark = self.watermarks.watermark();
        locals[self.local].store(watermark, Ordering::Relaxed);
        let least = locals.iter().map(|w| w.load(Ordering::Relaxed)).min();
        self.metrics
            .watermark_ms
            .set(least.unwrap_or(watermark) as i64);
        for (source, w) in self.watermarks.per_source() {
            if let Some(w) = w {
                self.metrics
                    .source_watermark_ms
                    .with_label_values(&[source])
                    .set(w as i64);
            }
        }
        let pending = self.watermarks.pending() as i64;
        let total = self
            .shared
            .pending_sources
            .fetch_add(pending - self.pending_reported, Ordering::Relaxed)
            + pending
            - self.pending_reported;
        self.pending_reported = pending;
        self.metrics.pending_sources.set(total);
        let epoch = watermark - watermark % self.config.epoch_ms;
        let caps = [self.cap.as_mut(), self.newest.as_mut().map(|(_, cap)| cap)];
        for cap in caps.into_iter().flatten() {
            if *cap.time() < epoch {
                cap.downgrade(&epoch);
            }
        }
        self.registry_past(epoch);
        // A repeat of an id older than this would be late anyway.
        self.recent
            .forget_before(watermark.saturating_sub(self.config.allowed_lateness_ms));
    }
}
