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
use crate::registry::device_route;

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
            version: result_version(self.count, true),
            is_final: true,
        }
    }
}

/// A window being filled, and the last count sent out for it.
#[derive(Debug, Clone, Copy)]
struct OpenWindow {
    agg: Agg,
    /// The count of the last provisional result sent, if any.
    sent: Option<u64>,
    /// The district of the newest sample: results are reported under it.
    district: District,
}

/// `(series, window size)`: one window of a given end. The series' district is not part of
/// it ([`window_key`]): a device the registry moves to another district mid-window keeps one
/// window, reported under its latest district.
type WindowKey = (SeriesKey, u64);

/// The key of a sample's window of `size_ms`.
fn window_key(series: &SeriesKey, size_ms: u64) -> WindowKey {
    let mut series = series.clone();
    series.district = District::ALL[0];
    (series, size_ms)
}

/// Windows still open on one worker, by window end.
type OpenWindows = BTreeMap<u64, HashMap<WindowKey, OpenWindow>>;

/// The version of a result: it grows with the samples counted, and the final result of a
/// window outranks its provisional ones. Derived from the data alone, so a rebuild after a
/// restart gives the same versions and ClickHouse keeps the right row.
pub fn result_version(count: u64, is_final: bool) -> u32 {
    u32::try_from(count.saturating_mul(2) + u64::from(is_final)).unwrap_or(u32::MAX)
}

/// Aggregates samples into the given windows (tumbling or sliding; give each size once, see
/// `DataflowConfig::effective_windows`).
///
/// The input frontier is the watermark, the newest event time less `lateness_ms`; so the
/// event clock is the frontier plus the lateness. A window is emitted as soon as the event
/// clock passes its end (a provisional result), again whenever a reading within the lateness
/// changes it (a correction, superseding the previous version), and a last time, final, once
/// the watermark passes its end; then it leaves memory. Windows starting before
/// `emit_from_ms` are not emitted: after a restart their readings are only partly replayed.
///
/// When the input ends (an empty frontier) open windows are emitted as final, unless
/// `discard_open` is set: a process shutting down must not store half-filled windows as final.
pub fn event_time_windows<'scope>(
    samples: Stream<'scope, u64, Vec<Sample>>,
    windows: Vec<WindowSpec>,
    lateness_ms: u64,
    emit_from_ms: u64,
    discard_open: Arc<AtomicBool>,
    clock: Arc<dyn Clock>,
) -> Stream<'scope, u64, Vec<WindowResult>> {
    samples.unary_frontier(
        Exchange::new(|s: &Sample| device_route(&s.series.device_id)),
        "EventTimeWindows",
        move |_default_cap, _info| {
            let mut open = OpenWindows::new();
            // Windows ending at or before this have had their provisional result.
            let mut provisional_until = 0u64;
            // Windows changed after their provisional result: corrections to send.
            let mut changed: Vec<(u64, WindowKey)> = Vec::new();
            // One capability at the least time anything may still be sent at.
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
                                    let end = start + w.size_ms;
                                    let key = window_key(&sample.series, w.size_ms);
                                    let district = sample.series.district;
                                    let window = open.entry(end).or_default();
                                    match window.get_mut(&key) {
                                        Some(o) => {
                                            o.agg.add(sample.value);
                                            o.district = district;
                                            if o.sent.is_some() || end <= provisional_until {
                                                changed.push((end, key));
                                            }
                                        }
                                        None => {
                                            if end <= provisional_until {
                                                changed.push((end, key.clone()));
                                            }
                                            window.insert(
                                                key,
                                                OpenWindow {
                                                    agg: Agg::of(sample.value),
                                                    sent: None,
                                                    district,
                                                },
                                            );
                                        }
                                    }
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
                    changed.clear();
                }
                // The watermark, and the event clock it implies.
                let watermark = frontier.iter().copied().min().unwrap_or(u64::MAX);
                let event_clock = watermark.saturating_add(lateness_ms);
                let now = clock.now_ms();
                // `(time to send at, result)`: corrections at the watermark, finals at their end.
                let mut out: Vec<(u64, WindowResult)> = Vec::new();
                let mut send = |end: u64, key: &WindowKey, o: &mut OpenWindow, last: bool| {
                    let (series, size) = key;
                    let mut r = o.agg.result(series, end - size, *size, now);
                    r.district = o.district;
                    r.is_final = last;
                    r.version = result_version(o.agg.count, last);
                    o.sent = Some(o.agg.count);
                    out.push((if last { end } else { watermark }, r));
                };
                // Provisional results: the event clock has passed their end, the watermark not.
                let upto = event_clock.min(u64::MAX - 1);
                if upto > provisional_until {
                    for (&end, windows) in open.range_mut(provisional_until + 1..=upto) {
                        if end <= watermark {
                            continue; // final below, without a provisional first
                        }
                        for (key, o) in windows.iter_mut() {
                            if o.sent.is_none() {
                                send(end, key, o, false);
                            }
                        }
                    }
                    provisional_until = upto;
                }
                // Corrections of provisional results.
                for (end, key) in changed.drain(..) {
                    if end <= watermark {
                        continue; // the final result follows
                    }
                    if let Some(o) = open.get_mut(&end).and_then(|w| w.get_mut(&key)) {
                        if o.sent != Some(o.agg.count) {
                            send(end, &key, o, false);
                        }
                    }
                }
                // Final results: no sample before their end can still arrive.
                while let Some(entry) = open.first_entry() {
                    let end = *entry.key();
                    if end > watermark {
                        break;
                    }
                    for (key, mut o) in entry.remove() {
                        send(end, &key, &mut o, true);
                    }
                }
                if let Some(cap) = held.as_ref() {
                    out.sort_by_key(|(t, _)| *t);
                    let mut results = out.into_iter().peekable();
                    while let Some((t, first)) = results.next() {
                        let at = cap.delayed(&t.max(*cap.time()));
                        let mut session = output.session(&at);
                        session.give(first);
                        while let Some((_, r)) = results.next_if(|(u, _)| *u == t) {
                            session.give(r);
                        }
                    }
                }
                if open.is_empty() {
                    held = None;
                } else if let Some(cap) = held.as_mut() {
                    // Anything sent later is sent at or after the current watermark.
                    if *cap.time() < watermark && watermark != u64::MAX {
                        cap.downgrade(&watermark);
                    }
                }
            }
        },
    )
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

    type Input = timely::dataflow::operators::core::unordered_input::UnorderedHandle<
        u64,
        timely::container::CapacityContainerBuilder<Vec<Sample>>,
    >;
    type Captured = std::sync::mpsc::Receiver<Event<u64, Vec<WindowResult>>>;

    /// A dataflow of tumbling windows of 10 with the given lateness, fed by hand and captured.
    fn ten_unit_windows(
        worker: &mut timely::worker::Worker,
        lateness: u64,
    ) -> (
        Input,
        timely::dataflow::operators::ActivateCapability<u64>,
        Captured,
    ) {
        worker.dataflow::<u64, _, _>(|scope| {
            let ((input, cap), samples) = scope.new_unordered_input();
            let results = event_time_windows(
                samples,
                vec![WindowSpec::tumbling(10)],
                lateness,
                0,
                Arc::new(AtomicBool::new(false)),
                Arc::new(ManualClock::new(0)),
            );
            (input, cap, results.capture())
        })
    }

    /// Sends `s` at time `t`.
    fn give(
        input: &mut Input,
        cap: &timely::dataflow::operators::ActivateCapability<u64>,
        t: u64,
        s: Sample,
    ) {
        input.activate().session(&cap.delayed(&t)).give(s);
    }

    /// Feeds samples out of order at several open times and checks each window comes out
    /// once, at its end, only after the frontier has passed it.
    #[test]
    fn windows_close_when_the_frontier_passes_their_end() {
        let captured = timely::execute_directly(|worker| {
            let (mut input, cap, captured) = ten_unit_windows(worker, 0);
            // Out of order: times 12 and 3 are both still open (the capability is at 0).
            give(&mut input, &cap, 12, sample("a", 12, 5.0));
            give(&mut input, &cap, 3, sample("a", 3, 1.0));
            give(&mut input, &cap, 7, sample("a", 7, 2.0));
            give(&mut input, &cap, 7, sample("b", 7, 9.0));
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

    /// With 10 of lateness, the window [0, 10) goes out provisionally once event time passes 10
    /// (the frontier passes 0), is corrected by a sample within the lateness, and is final once
    /// the frontier passes 10.
    #[test]
    fn provisional_then_corrected_then_final() {
        let captured = timely::execute_directly(|worker| {
            let (mut input, cap, captured) = ten_unit_windows(worker, 10);
            let mut cap = cap;
            let mut versions = Vec::new();
            let step = |worker: &mut timely::worker::Worker, versions: &mut Vec<_>| {
                for _ in 0..5 {
                    worker.step();
                }
                for event in captured.try_iter() {
                    if let Event::Messages(_, results) = event {
                        for r in results {
                            versions.push((r.window_start_ms, r.count, r.version, r.is_final));
                        }
                    }
                }
            };
            give(&mut input, &cap, 3, sample("a", 3, 1.0));
            cap.downgrade(&1); // event clock 11: past the window's end
            step(worker, &mut versions);
            give(&mut input, &cap, 5, sample("a", 5, 2.0));
            step(worker, &mut versions);
            cap.downgrade(&10); // watermark 10: final
            step(worker, &mut versions);
            drop(cap);
            drop(input);
            while worker.step() {}
            versions
        });
        assert_eq!(
            captured,
            vec![(0, 1, 2, false), (0, 2, 4, false), (0, 2, 5, true)]
        );
    }

    /// One step of the frontier can finalise one window and put the next out provisionally.
    #[test]
    fn a_final_and_a_provisional_result_in_the_same_step() {
        let results = timely::execute_directly(|worker| {
            let (mut input, cap, captured) = ten_unit_windows(worker, 5);
            give(&mut input, &cap, 3, sample("a", 3, 1.0));
            give(&mut input, &cap, 15, sample("a", 15, 2.0));
            let mut cap = cap;
            cap.downgrade(&15); // watermark 15, event clock 20
            for _ in 0..10 {
                worker.step();
            }
            let mut got = Vec::new();
            for event in captured.try_iter() {
                if let Event::Messages(_, results) = event {
                    got.extend(results.into_iter().map(|r| (r.window_start_ms, r.is_final)));
                }
            }
            got.sort();
            got
        });
        assert_eq!(results, vec![(0, true), (10, false)]);
    }
}
