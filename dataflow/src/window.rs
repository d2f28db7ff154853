//! Tumbling event-time windows per series (device and metric): count, sum, mean, min, max.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ioc_schemas::{District, Kind, WindowResult, WindowSpec};
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

/// Aggregates samples into the given windows (tumbling or sliding; give each size once, see
/// `DataflowConfig::effective_windows`) and emits every window once the input frontier (the
/// watermark) has passed its end, at the window's end as its time. Windows starting before
/// `emit_from_ms` are not emitted: after a restart their readings are only partly replayed.
///
/// When the input ends (an empty frontier) open windows are emitted, unless `discard_open`
/// is set: a process shutting down must not store half-filled windows as final.
pub fn event_time_windows<'scope>(
    samples: Stream<'scope, u64, Vec<Sample>>,
    windows: Vec<WindowSpec>,
    emit_from_ms: u64,
    discard_open: Arc<AtomicBool>,
    clock: Arc<dyn Clock>,
) -> Stream<'scope, u64, Vec<WindowResult>> {
    samples.unary_frontier(
        Exchange::new(|s: &Sample| device_route(&s.series.device_id)),
        "EventTimeWindows",
        move |_default_cap, _info| {
            let mut open = OpenWindows::new();
            // One capability at the least time of any open window's input.
            let mut held: Option<Capability<u64>> = None;
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, batches| {
                    for batch in batches {
                        for sample in batch.drain(..) {
                            for w in &windows {
                                for start in w.starts_of(sample.event_ms) {
                                    if start < emit_from_ms {
                                        break; // starts come latest first
                                    }
                                    open.entry(start + w.size_ms)
                                        .or_default()
                                        .entry((sample.series.clone(), w.size_ms))
                                        .and_modify(|a| a.add(sample.value))
                                        .or_insert_with(|| Agg::of(sample.value));
                                }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use timely::dataflow::operators::capture::{Capture, Event};
    use timely::dataflow::operators::core::UnorderedInput;

    use super::*;
    use crate::clock::ManualClock;

    fn sample(device: &str, event_ms: u64, value: f64) -> Sample {
        Sample {
            series: SeriesKey {
                kind: Kind::Sensor,
                district: District::HaiChau,
                device_id: device.into(),
                metric: "m".into(),
            },
            event_ms,
            value,
        }
    }

    /// Feeds samples out of order at several open times and checks each window comes out
    /// once, at its end, only after the frontier has passed it.
    #[test]
    fn windows_close_when_the_frontier_passes_their_end() {
        let captured = timely::execute_directly(|worker| {
            let (mut input, cap, captured) = worker.dataflow::<u64, _, _>(|scope| {
                let ((input, cap), samples) = scope.new_unordered_input();
                let results = event_time_windows(
                    samples,
                    vec![WindowSpec::tumbling(10)],
                    0,
                    Arc::new(AtomicBool::new(false)),
                    Arc::new(ManualClock::new(0)),
                );
                (input, cap, results.capture())
            });
            // Out of order: times 12 and 3 are both still open (the capability is at 0).
            input
                .activate()
                .session(&cap.delayed(&12))
                .give(sample("a", 12, 5.0));
            input
                .activate()
                .session(&cap.delayed(&3))
                .give(sample("a", 3, 1.0));
            input
                .activate()
                .session(&cap.delayed(&7))
                .give(sample("a", 7, 2.0));
            input
                .activate()
                .session(&cap.delayed(&7))
                .give(sample("b", 7, 9.0));
            let mut cap = cap;
            cap.downgrade(&9);
            for _ in 0..5 {
                worker.step();
            }
            // Frontier at 9: window [0, 10) may still receive input, so nothing yet.
            assert!(
                captured.try_iter().all(|e| matches!(e, Event::Progress(_))),
                "a window was emitted before the frontier passed its end"
            );
            cap.downgrade(&10);
            for _ in 0..5 {
                worker.step();
            }
            drop(cap);
            drop(input);
            while worker.step() {}
            captured
        });
        let mut out: Vec<(u64, String, u64, u64, f64, f64, f64)> = captured
            .try_iter()
            .filter_map(|event| match event {
                Event::Messages(stamp, results) => Some((*stamp.expect_singleton(), results)),
                Event::Progress(_) => None,
            })
            .flat_map(|(time, results)| {
                results.into_iter().map(move |r| {
                    (
                        time,
                        r.device_id,
                        r.window_start_ms,
                        r.count,
                        r.sum,
                        r.min,
                        r.max,
                    )
                })
            })
            .collect();
        out.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
        assert_eq!(
            out,
            vec![
                (10, "a".into(), 0, 2, 3.0, 1.0, 2.0),
                (10, "b".into(), 0, 1, 9.0, 9.0, 9.0),
                (20, "a".into(), 10, 1, 5.0, 5.0, 5.0),
            ]
        );
    }

    #[test]
    fn device_routes_are_stable() {
        // FNV-1a of "a": fixed, so every process of a cluster agrees.
        assert_eq!(device_route("a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(
            device_route("tsc-hai_chau-001"),
            device_route("tsc-hai_chau-002")
        );
    }
}
