//! Runs the timely workers and feeds them from ingest.
//!
//! Worker 0 is the single input: it takes records from the bounded ingest queue, drops repeats
//! of a message id, sorts on-time readings from late ones against the watermark, hands the raw
//! records to [`Outputs`] (where they are stored, and their source acknowledged once durable),
//! and sends on-time readings into the dataflow at their event-time epoch, with registry
//! changes beside them. The dataflow exchanges readings by device, so every worker owns the
//! registry entries, windows and per-device KPIs of its devices:
//!
//! ```text
//! readings ─> JoinRegistry ─> EventTimeWindows ─> WindowSink
//! registry ─> RegistryByDevice ─┘      │    └──────────┐
//!                      └──> DeviceKpis <─ (activity) ──┴─> CityKpis ─> KpiSink
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use differential_dataflow::input::{Input, InputSession};
use ioc_schemas::{
    Ack, DeadLetter, DeviceChange, District, Ingested, IngestedReading, Kind, Kpi, Transport,
    WindowResult,
};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::{Probe, UnorderedInput};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::{Filter, Map};
use timely::dataflow::operators::Exchange as _;
use timely::dataflow::operators::{ActivateCapability, Concat};
use timely::dataflow::Stream;
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::config::DataflowConfig;
use crate::dedupe::RecentIds;
use crate::kpi::city::CityInput;
use crate::kpi::device::{is_base_final, Activity, KpiInput};
use crate::kpi::{city_kpis, device_kpis};
use crate::metrics::DataflowMetrics;
use crate::registry::{
    device_route, join_registry, registry_changes, DeviceMeta, Enriched, Observation, RegistryFeed,
};
use crate::watermark::Watermarks;
use crate::window::{event_time_windows, Sample, SeriesKey};
use crate::{DataflowError, FastMap};

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
            .map_err(|_| DataflowError::Worker("a dataflow worker panicked".into()))?
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
}

/// Starts the workers. They run until every sender of `input` is dropped; then open windows are
/// discarded (they are incomplete) unless `options` says to finish them, and the workers stop.
/// Readings are joined with `registry`, which changes as its change channel says.
pub fn spawn<O: Outputs>(
    config: DataflowConfig,
    options: RunOptions,
    input: mpsc::Receiver<Ingested>,
    registry: RegistryFeed,
    outputs: O,
    metrics: DataflowMetrics,
    clock: Arc<dyn Clock>,
) -> Result<DataflowHandle, DataflowError> {
    config.validate()?;
    let mut options = options;
    let history = std::mem::take(&mut options.kpi_history);
    let input = Arc::new(Mutex::new(Some((input, registry, history))));
    let discard_open = Arc::new(AtomicBool::new(false));
    let thread = std::thread::Builder::new()
        .name("ioc-dataflow".into())
        .spawn(move || {
            let guards = timely::execute(timely::Config::process(config.workers), move |worker| {
                let taken = input.lock().ok().and_then(|mut slot| slot.take());
                run_worker(
                    worker,
                    &config,
                    options.clone(),
                    taken,
                    outputs.clone(),
                    metrics.clone(),
                    Arc::clone(&clock),
                    Arc::clone(&discard_open),
                )
            })
            .map_err(DataflowError::Worker)?;
            for result in guards.join() {
                result.map_err(DataflowError::Worker)??;
            }
            Ok(())
        })
        .map_err(|e| DataflowError::Worker(format!("cannot start the dataflow thread: {e}")))?;
    Ok(DataflowHandle { thread })
}

/// Splits joined readings, each taken once (the stream is not copied): their samples go to
/// the windows, and their activity to the KPIs (every reading counts for health), after a
/// reading of an unknown device is reported.
fn split_readings<'scope, O: Outputs>(
    enriched: Stream<'scope, u64, Vec<Enriched>>,
    outputs: O,
    metrics: DataflowMetrics,
) -> (
    Stream<'scope, u64, Vec<Sample>>,
    Stream<'scope, u64, Vec<KpiInput>>,
) {
    let mut builder = OperatorBuilder::new("SplitReadings".to_owned(), enriched.scope());
    let mut input = builder.new_input(enriched, Pipeline);
    let (mut samples_out, samples) = builder.new_output::<Vec<Sample>>();
    let (mut activity_out, activity) = builder.new_output::<Vec<KpiInput>>();
    builder.build(move |_capabilities| {
        move |_frontiers| {
            let mut samples_out = samples_out.activate();
            let mut activity_out = activity_out.activate();
            input.for_each_stamp(|cap, batches| {
                let (mut samples, mut activity) = (Vec::new(), Vec::new());
                for batch in batches {
                    for e in batch.drain(..) {
                        let district = e.district();
                        let registered = e.device.is_some();
                        let o = e.observation;
                        if !registered {
                            metrics
                                .unknown_device_readings
                                .with_label_values(&[o.kind.as_str()])
                                .inc();
                            outputs.unknown_device(
                                &o.device_id,
                                o.kind,
                                o.topic_district,
                                o.event_ms,
                            );
                        }
                        for (metric, value) in o.samples {
                            samples.push(Sample {
                                series: SeriesKey {
                                    kind: o.kind,
                                    district,
                                    device_id: o.device_id.clone(),
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
            });
        }
    });
    (samples, activity)
}

#[allow(clippy::too_many_arguments)] // the worker's whole environment, passed once
fn run_worker<O: Outputs>(
    worker: &mut timely::worker::Worker,
    config: &DataflowConfig,
    options: RunOptions,
    input: Option<(mpsc::Receiver<Ingested>, RegistryFeed, Vec<WindowResult>)>,
    outputs: O,
    metrics: DataflowMetrics,
    clock: Arc<dyn Clock>,
    discard_open: Arc<AtomicBool>,
) -> Result<(), DataflowError> {
    let windows = config.effective_windows();
    let lateness_ms = config.allowed_lateness_ms;
    let sink_outputs = outputs.clone();
    let sink_metrics = metrics.clone();
    let sink_clock = Arc::clone(&clock);
    let window_clock = Arc::clone(&clock);
    let window_discard = Arc::clone(&discard_open);
    let miss_outputs = outputs.clone();
    let miss_metrics = metrics.clone();
    let kpi_outputs = outputs.clone();
    let kpi_metrics = metrics.clone();
    let emit_from = options.emit_windows_from_ms;
    let ((mut handle, cap), mut registry_input, (mut history_input, history_cap), probe) =
        worker.dataflow::<u64, _, _>(move |scope| {
            let (input, observations) = scope.new_unordered_input();
            let (history_input, history) = scope.new_unordered_input();
            let (registry_input, registry) = scope.new_collection();
            let changes = registry_changes(registry);
            let enriched = join_registry(observations, changes.clone());
            let (samples, activity) = split_readings(enriched, miss_outputs, miss_metrics);
            let results = event_time_windows(
                samples,
                windows,
                lateness_ms,
                emit_from,
                window_discard,
                window_clock,
            );
            let (probe, _done) = results
                .clone()
                .unary::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(
                    Pipeline,
                    "WindowSink",
                    move |_cap, _info| {
                        move |input, _output| {
                            input.for_each_stamp(|_cap, batches| {
                                let now = sink_clock.now_ms();
                                for batch in batches {
                                    for result in batch.drain(..) {
                                        sink_metrics.observe_window(&result, now);
                                        sink_outputs.window(result);
                                    }
                                }
                            });
                        }
                    },
                )
                .probe();
            let finals = results.filter(is_base_final);
            let device_inputs = activity
                .concat(finals.clone().map(KpiInput::Window))
                .concat(changes.map(|((device, meta), time, diff)| {
                    KpiInput::Registry(device, meta, time, diff)
                }))
                .concat(history.exchange(|i: &KpiInput| match i {
                    KpiInput::Window(w) => device_route(&w.device_id),
                    _ => 0,
                }));
            let per_device = device_kpis(device_inputs, emit_from);
            let city_inputs = per_device.clone().map(CityInput::Device).concat(
                finals
                    .filter(|w: &WindowResult| w.kind == Kind::CameraEvent)
                    .map(CityInput::Camera),
            );
            city_kpis(city_inputs)
                .concat(per_device)
                .unary::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(
                    Pipeline,
                    "KpiSink",
                    move |_cap, _info| {
                        move |input, _output| {
                            input.for_each_stamp(|_cap, batches| {
                                for batch in batches {
                                    for kpi in batch.drain(..) {
                                        kpi_metrics
                                            .kpis
                                            .with_label_values(&[kpi.family().as_str()])
                                            .inc();
                                        kpi_outputs.kpi(kpi);
                                    }
                                }
                            });
                        }
                    },
                )
                .probe_with(&probe);
            (input, registry_input, history_input, probe)
        });

    let Some((mut rx, registry, history)) = input else {
        // Only worker 0 feeds the dataflow; the others give up their input capabilities.
        drop(cap);
        drop(history_cap);
        registry_input.close();
        while worker.step_or_park(None) {}
        return Ok(());
    };
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
    drop(history_cap);

    let mut feeder = Feeder {
        config,
        cap: Some(cap),
        watermarks: Watermarks::new(config.allowed_lateness_ms, config.idle_timeout_ms),
        recent: RecentIds::default(),
        by_epoch: BTreeMap::new(),
        registry: RegistryState {
            input: registry_input,
            changes: registry.changes,
            current,
        },
        outputs,
        metrics,
        clock,
    };
    let mut closed = false;
    while !closed {
        let mut taken = 0;
        while taken < config.input_batch {
            match rx.try_recv() {
                Ok(record) => {
                    feeder.take(record);
                    taken += 1;
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        feeder.apply_registry_changes();
        feeder.flush(&mut handle);
        feeder.advance();
        // Park briefly when idle: ingest has no way to unpark a timely worker.
        let park = if taken == 0 {
            Some(Duration::from_millis(5))
        } else {
            Some(Duration::ZERO)
        };
        worker.step_or_park(park);
    }
    // Emit every window the final watermark has closed before discarding the open ones.
    if let Some(cap) = feeder.cap.as_ref() {
        let closed_until = *cap.time();
        while probe.less_than(&closed_until) {
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
    }
    discard_open.store(!options.finish_open_windows, Ordering::SeqCst);
    feeder.cap = None;
    drop(feeder.registry);
    drop(handle);
    while worker.step_or_park(None) {}
    Ok(())
}

/// The input source a reading's watermark is tracked under: its Kafka partition, or the MQTT
/// connection.
fn source_of(reading: &IngestedReading) -> &str {
    match reading.transport {
        Transport::Kafka => reading.source.split('@').next().unwrap_or("kafka"),
        Transport::Mqtt => "mqtt",
    }
}

/// A Kafka reading's offset (its source is `topic/partition@offset`).
fn offset_of(reading: &IngestedReading) -> Option<i64> {
    match reading.transport {
        Transport::Kafka => reading.source.rsplit_once('@')?.1.parse().ok(),
        Transport::Mqtt => None,
    }
}

type InputHandle = timely::dataflow::operators::core::unordered_input::UnorderedHandle<
    u64,
    timely::container::CapacityContainerBuilder<Vec<Observation>>,
>;

/// Worker 0's side of the registry: the differential input, where changes come from, and the
/// entries in force (to retract the old entry when one is replaced).
struct RegistryState {
    input: InputSession<u64, (String, DeviceMeta), isize>,
    changes: Option<mpsc::Receiver<DeviceChange>>,
    current: FastMap<String, DeviceMeta>,
}

/// Worker 0's input side: dedupe, lateness, watermark.
struct Feeder<'c, O: Outputs> {
    config: &'c DataflowConfig,
    cap: Option<ActivateCapability<u64>>,
    watermarks: Watermarks,
    /// Ids of the readings seen (replayed ones too) until the watermark passes them by the
    /// allowed lateness. A replay does not move the watermark, so a redelivery after a restart
    /// is recognised however long after the restart the source gets to it.
    recent: RecentIds,
    /// On-time readings of this step, by epoch.
    by_epoch: BTreeMap<u64, Vec<Observation>>,
    registry: RegistryState,
    outputs: O,
    metrics: DataflowMetrics,
    clock: Arc<dyn Clock>,
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
                self.watermarks.mark(&mark, self.clock.now_ms());
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
        let first = self.recent.insert(
            &reading.reading.device_id,
            &reading.reading.message_id,
            event_ms,
        );
        if !first {
            if !replayed {
                // A redelivery after a restart moves time as its first delivery did in the run
                // before, so the rest of its partition is judged as an unbroken run judges it.
                self.observe(&reading, event_ms);
                self.metrics
                    .duplicates
                    .with_label_values(&[kind.as_str()])
                    .inc();
                self.outputs.duplicate(reading, ack);
            }
            return;
        }
        // Replays come in event-time order, so none is late; they are stored already.
        if !replayed && self.watermarks.is_late(event_ms) {
            self.metrics.late.with_label_values(&[kind.as_str()]).inc();
            self.outputs
                .raw_reading(reading, Some(self.watermarks.watermark()), ack);
            return;
        }
        // A replay does not move time: what the sources held back before the stop they hold
        // back again once they deliver, so a restart judges readings as an unbroken run would.
        if !replayed {
            self.observe(&reading, event_ms);
        }
        let epoch = event_ms - event_ms % self.config.epoch_ms;
        let r = &reading.reading;
        let medium = match &r.body {
            ioc_schemas::Body::Environment(b) => Some(b.medium),
            _ => None,
        };
        self.by_epoch.entry(epoch).or_default().push(Observation {
            device_id: r.device_id.clone(),
            kind,
            topic_district: reading.district,
            medium,
            event_ms,
            samples: r.samples(),
        });
        if !replayed {
            self.outputs.raw_reading(reading, None, ack);
        }
    }

    fn observe(&mut self, reading: &IngestedReading, event_ms: u64) {
        self.watermarks.observe(
            source_of(reading),
            offset_of(reading),
            event_ms,
            self.clock.now_ms(),
        );
    }

    /// Applies the registry changes waiting: each takes effect for readings after the newest
    /// event epoch seen.
    fn apply_registry_changes(&mut self) {
        let Some(changes) = self.registry.changes.as_mut() else {
            return;
        };
        loop {
            let change = match changes.try_recv() {
                Ok(change) => change,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.registry.changes = None;
                    break;
                }
            };
            let id = change.device_id().to_owned();
            if let Some(old) = self.registry.current.remove(&id) {
                self.registry.input.remove((id.clone(), old));
            }
            let op = match change {
                DeviceChange::Upsert(device) => {
                    let meta = DeviceMeta::of(&device);
                    self.registry.input.insert((id.clone(), meta.clone()));
                    self.registry.current.insert(id, meta);
                    "upsert"
                }
                DeviceChange::Remove { .. } => "remove",
            };
            self.metrics.registry_changes.with_label_values(&[op]).inc();
        }
    }

    /// Keeps the registry's time just past `epoch`, so readings up to it can be joined.
    fn registry_past(&mut self, epoch: u64) {
        let next = epoch.saturating_add(self.config.epoch_ms);
        if *self.registry.input.time() < next {
            self.registry.input.advance_to(next);
        }
    }

    /// Sends this step's readings at their epochs.
    fn flush(&mut self, handle: &mut InputHandle) {
        if let Some(newest) = self.by_epoch.keys().next_back().copied() {
            self.registry_past(newest);
        }
        self.registry.input.flush();
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
        self.watermarks.tick(self.clock.now_ms());
        let watermark = self.watermarks.watermark();
        self.metrics.watermark_ms.set(watermark as i64);
        for (source, w) in self.watermarks.per_source() {
            if let Some(w) = w {
                self.metrics
                    .source_watermark_ms
                    .with_label_values(&[source])
                    .set(w as i64);
            }
        }
        self.metrics
            .pending_sources
            .set(self.watermarks.pending() as i64);
        let epoch = watermark - watermark % self.config.epoch_ms;
        if let Some(cap) = self.cap.as_mut() {
            if *cap.time() < epoch {
                cap.downgrade(&epoch);
            }
        }
        self.registry_past(epoch);
        self.registry.input.flush();
        // A repeat of an id older than this would be late anyway.
        self.recent
            .forget_before(watermark.saturating_sub(self.config.allowed_lateness_ms));
    }
}
