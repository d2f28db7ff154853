//! Tumbling event-time windows per series (device and metric): count, sum, mean, min, max.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ioc_schemas::{District, Kind, WindowResult};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use crate::clock::Clock;

/// One measured series: a metric of a device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The reading kind.
    pub kind: Kind,
    /// The device's district.
    pub district: District,
    /// The device.
    pub device_id: String,
    /// The metric.
    pub metric: String,
}

/// One value of a series at an event time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The series.
    pub series: SeriesKey,
    /// The observation's event time, epoch ms.
    pub event_ms: u64,
    /// The value.
    pub value: f64,
}

/// Running aggregate of a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agg {
    /// Samples seen.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Agg {
    /// The aggregate of one value.
    pub fn of(value: f64) -> Agg {
        Agg {
            count: 1,
            sum: value,
            min: value,
            max: value,
        }
    }

    /// Adds a value.
    pub fn add(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// The window result for this aggregate.
    pub fn result(
        &self,
        series: &SeriesKey,
        window_start_ms: u64,
        window_size_ms: u64,
        emitted_at_ms: u64,
    ) -> WindowResult {
        WindowResult {
            kind: series.kind,
            district: series.district,
            device_id: series.device_id.clone(),
            metric: series.metric.clone(),
            window_start_ms,
            window_size_ms,
            count: self.count,
            sum: self.sum,
            min: self.min,
            max: self.max,
            mean: self.sum / self.count as f64,
            emitted_at_ms,
        }
    }
}

/// A stable 64-bit hash of a device id (FNV-1a), so every process of a cluster routes a
/// device to the same worker.
pub fn device_route(device_id: &str) -> u64 {
    device_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Windows still open on one worker, by window end.
type OpenWindows = BTreeMap<u64, HashMap<(SeriesKey, u64), Agg>>;

/// Aggregates samples into tumbling windows of each size and emits every window once the
/// input frontier (the watermark) has passed its end, at the window's end as its time.
///
/// When the input ends (an empty frontier) open windows are emitted, unless `discard_open`
/// is set: a process shutting down must not store half-filled windows as final.
pub fn tumbling_windows<'scope>(
    samples: Stream<'scope, u64, Vec<Sample>>,
    window_sizes_ms: Vec<u64>,
    discard_open: Arc<AtomicBool>,
    clock: Arc<dyn Clock>,
) -> Stream<'scope, u64, Vec<WindowResult>> {
    samples.unary_frontier(
        Exchange::new(|s: &Sample| device_route(&s.series.device_id)),
        "TumblingWindows",
        move |_default_cap, _info| {
            let mut open = OpenWindows::new();
            // One capability at the least time of any open window's input.
            let mut held: Option<Capability<u64>> = None;
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, batches| {
                    for batch in batches {
                        for sample in batch.drain(..) {
                            for &size in &window_sizes_ms {
                                let start = sample.event_ms - sample.event_ms % size;
                                open.entry(start + size)
                                    .or_default()
                                    .entry((sample.series.clone(), size))
                                    .and_modify(|a| a.add(sample.value))
                                    .or_insert_with(|| Agg::of(sample.value));
                            }
                        }
                    }
                    let earlier = cap
                        .least()
                        .is_some_and(|t| held.as_ref().is_none_or(|h| t < h.time()));
                    if earlier {
                        held = cap.retain_least(output.output_index());
                    }
                });

                let frontier = frontier.frontier();
                let input_done = frontier.is_empty();
                if input_done && discard_open.load(Ordering::SeqCst) {
                    open.clear();
                }
                while let Some(entry) = open.first_entry() {
                    let end = *entry.key();
                    // Complete once no sample with a time before `end` can still arrive.
                    if frontier.iter().any(|t| *t < end) {
                        break;
                    }
                    let windows = entry.remove();
                    if let Some(cap) = held.as_ref() {
                        let at = cap.delayed(&end.max(*cap.time()));
                        let now = clock.now_ms();
                        let mut session = output.session(&at);
                        for ((series, size), agg) in windows {
                            session.give(agg.result(&series, end - size, size, now));
                        }
                    }
                }
                match open.keys().next() {
                    Some(&next_end) => {
                        // Hold no earlier than needed: the next window's end, or the frontier if
                        // that is earlier (new input may open an earlier-ending window).
                        let target = next_end.min(frontier_min(frontier, next_end));
                        if let Some(cap) = held.as_mut() {
                            if *cap.time() < target {
                                cap.downgrade(&target);
                            }
                        }
                    }
                    None => held = None,
                }
            }
        },
    )
}

/// The least time in the frontier, or `fallback` for an empty one.
fn frontier_min(frontier: timely::progress::frontier::AntichainRef<'_, u64>, fallback: u64) -> u64 {
    frontier.iter().copied().min().unwrap_or(fallback)
}
