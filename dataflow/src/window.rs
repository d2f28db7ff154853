//! Event-time windows per series (device and metric), tumbling or sliding, by slices: count,
//! sum, mean, min, max.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ioc_schemas::{District, Kind, WindowResult, WindowSpec};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use crate::clock::Clock;
use crate::config::gcd;
use crate::{FastMap, Name};

/// One measured series: a metric of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The reading kind.
    pub kind: Kind,
    /// The device's district.
    pub district: District,
    /// The device.
    pub device_id: Name,
    /// The metric.
    pub metric: Name,
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
            device_id: series.device_id.as_str().to_owned(),
            metric: series.metric.as_str().to_owned(),
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

/// The version of a result: it grows with the samples counted, and the final result of a
/// window outranks its provisional ones. Derived from the data alone, so a rebuild after a
/// restart gives the same versions and ClickHouse keeps the right row.
pub fn result_version(count: u64, is_final: bool) -> u32 {
    u32::try_from(count.saturating_mul(2) + u64::from(is_final)).unwrap_or(u32::MAX)
}

/// A series' partial aggregate over one slice of event time.
#[derive(Debug, Clone, Copy)]
struct Slice {
    agg: Agg,
    /// The district of the newest sample to arrive, and when it arrived (a counter): a window
    /// is reported under the district of its newest arrival.
    district: District,
    arrived: u64,
}

/// One series' slices in one [`SliceGroup`], and the provisional results sent for its windows
/// that are not final yet.
#[derive(Debug, Default)]
struct SeriesSlices {
    slices: BTreeMap<u64, Slice>,
    /// `(window end, spec, count sent)`: a handful (the windows between the watermark and the
    /// event clock).
    sent: Vec<(u64, u16, u64)>,
}

impl SeriesSlices {
    /// The aggregate of the slices in `[start, end)`, with its district; `None` if empty.
    fn window(&self, start: u64, end: u64) -> Option<(Agg, District)> {
        let mut slices = self.slices.range(start..end).map(|(_, s)| s);
        let first = slices.next()?;
        let (mut agg, mut newest) = (first.agg, first);
        for s in slices {
            agg.count += s.agg.count;
            agg.sum += s.agg.sum;
            agg.min = agg.min.min(s.agg.min);
            agg.max = agg.max.max(s.agg.max);
            if s.arrived > newest.arrived {
                newest = s;
            }
        }
        Some((agg, newest.district))
    }

    fn sent_count(&self, end: u64, spec: u16) -> Option<u64> {
        self.sent
            .iter()
            .find(|(e, w, _)| *e == end && *w == spec)
            .map(|s| s.2)
    }

    fn record_sent(&mut self, end: u64, spec: u16, count: u64) {
        match self
            .sent
            .iter_mut()
            .find(|(e, w, _)| *e == end && *w == spec)
        {
            Some(s) => s.2 = count,
            None => self.sent.push((end, spec, count)),
        }
    }
}

/// Window specs whose boundaries share a slice width (the gcd of their sizes and slides): each
/// sample updates one slice of the group, and a window is assembled from its slices when it is
/// put out, so the cost of a sample does not grow with the windows that contain it.
#[derive(Debug)]
struct SliceGroup {
    width: u64,
    specs: Vec<WindowSpec>,
    longest: u64,
    /// The series with data in each slice, by slice start.
    active: BTreeMap<u64, Vec<u32>>,
    /// `(end, spec)` of every window holding data that is not final yet.
    pending: BTreeSet<(u64, u16)>,
}

/// Groups `windows` by slice width: specs whose own width (gcd of size and slide) is the same
/// share slices, so a long window with a coarse slide does not multiply a short one's slices.
fn slice_groups(windows: &[WindowSpec]) -> Vec<SliceGroup> {
    let mut groups: Vec<SliceGroup> = Vec::new();
    for &w in windows {
        let width = gcd(w.size_ms, w.slide()).max(1);
        match groups.iter_mut().find(|g| g.width == width) {
            Some(g) => {
                g.specs.push(w);
                g.longest = g.longest.max(w.size_ms);
            }
            None => groups.push(SliceGroup {
                width,
                specs: vec![w],
                longest: w.size_ms,
                active: BTreeMap::new(),
                pending: BTreeSet::new(),
            }),
        }
    }
    groups
}

/// A series and its slices in every group.
#[derive(Debug)]
struct SeriesEntry {
    key: SeriesKey,
    groups: Vec<SeriesSlices>,
    /// Slices held over all groups: the entry is freed at 0.
    slices: usize,
}

/// The open windows of one worker, as slices per series. Series are numbered as they come and
/// their numbers reused once they hold no slice.
struct SlicedWindows {
    emit_from_ms: u64,
    groups: Vec<SliceGroup>,
    series: Vec<Option<SeriesEntry>>,
    free: Vec<u32>,
    /// The series number of each key (its district left out: a window is reported under the
    /// district of its newest sample).
    index: FastMap<SeriesKey, u32>,
    arrivals: u64,
    /// `(end, group, spec, series)` of windows changed after their provisional result.
    changed: Vec<(u64, u8, u16, u32)>,
}

impl SlicedWindows {
    fn new(windows: &[WindowSpec], emit_from_ms: u64) -> SlicedWindows {
        SlicedWindows {
            emit_from_ms,
            groups: slice_groups(windows),
            series: Vec::new(),
            free: Vec::new(),
            index: FastMap::default(),
            arrivals: 0,
            changed: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.groups.iter().all(|g| g.pending.is_empty())
    }

    fn clear(&mut self) {
        let emit_from_ms = self.emit_from_ms;
        let specs: Vec<WindowSpec> = self.groups.iter().flat_map(|g| g.specs.clone()).collect();
        *self = SlicedWindows::new(&specs, emit_from_ms);
    }

    /// The series number of `series`, numbering it when it is new.
    fn intern(&mut self, series: SeriesKey) -> u32 {
        let key = SeriesKey {
            district: District::ALL[0],
            ..series
        };
        if let Some(n) = self.index.get(&key) {
            return *n;
        }
        let entry = SeriesEntry {
            groups: self
                .groups
                .iter()
                .map(|_| SeriesSlices::default())
                .collect(),
            slices: 0,
            key,
        };
        let n = match self.free.pop() {
            Some(n) => {
                self.series[n as usize] = Some(entry);
                n
            }
            None => {
                self.series.push(Some(entry));
                u32::try_from(self.series.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.index.insert(key, n);
        n
    }

    /// Frees series `n`, which holds no slice any more.
    fn release(&mut self, n: u32) {
        if let Some(entry) = self.series[n as usize].take() {
            self.index.remove(&entry.key);
            self.free.push(n);
        }
    }

    /// Adds a sample. Windows whose provisional result has gone out (ending by
    /// `provisional_until`) and that it changes are noted for a correction.
    fn add(&mut self, sample: Sample, provisional_until: u64) {
        let t = sample.event_ms;
        // Every window holding it starts at or before it.
        if t < self.emit_from_ms {
            return;
        }
        let district = sample.series.district;
        let n = self.intern(sample.series);
        self.arrivals += 1;
        let arrived = self.arrivals;
        let entry = self.series[n as usize]
            .as_mut()
            .expect("an interned series has an entry");
        for (g, group) in self.groups.iter_mut().enumerate() {
            let start = t - t % group.width;
            match entry.groups[g].slices.entry(start) {
                std::collections::btree_map::Entry::Occupied(mut o) => {
                    let slice = o.get_mut();
                    slice.agg.add(sample.value);
                    slice.district = district;
                    slice.arrived = arrived;
                }
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(Slice {
                        agg: Agg::of(sample.value),
                        district,
                        arrived,
                    });
                    entry.slices += 1;
                    let series = group.active.entry(start).or_default();
                    if series.is_empty() {
                        // The first data in this slice: its windows now hold data.
                        for (i, w) in group.specs.iter().enumerate() {
                            for s in w.starts_of(t) {
                                group.pending.insert((s + w.size_ms, i as u16));
                            }
                        }
                    }
                    series.push(n);
                }
            }
            // A window holding this slice may have had its provisional result already.
            if start + group.width <= provisional_until {
                for (i, w) in group.specs.iter().enumerate() {
                    for s in w.starts_of(t) {
                        let end = s + w.size_ms;
                        if end <= provisional_until && s >= self.emit_from_ms {
                            self.changed.push((end, g as u8, i as u16, n));
                        }
                    }
                }
            }
        }
    }

    /// The series with data in window `[start, end)` of group `g`, each once.
    fn series_in(&self, g: usize, start: u64, end: u64) -> Vec<u32> {
        let mut series: Vec<u32> = self.groups[g]
            .active
            .range(start..end)
            .flat_map(|(_, s)| s.iter().copied())
            .collect();
        series.sort_unstable();
        series.dedup();
        series
    }

    /// The result of series `n`'s window `[end - size, end)` in group `g`, recorded as sent
    /// unless final (then forgotten).
    #[allow(clippy::too_many_arguments)]
    fn result(
        &mut self,
        g: usize,
        spec: u16,
        n: u32,
        end: u64,
        now: u64,
        last: bool,
        only_if_changed: bool,
    ) -> Option<WindowResult> {
        let size = self.groups[g].specs[spec as usize].size_ms;
        let entry = self.series[n as usize].as_mut()?;
        let slices = &mut entry.groups[g];
        let (agg, district) = slices.window(end - size, end)?;
        if only_if_changed && slices.sent_count(end, spec) == Some(agg.count) {
            return None;
        }
        if last {
            slices.sent.retain(|(e, w, _)| !(*e == end && *w == spec));
        } else {
            slices.record_sent(end, spec, agg.count);
        }
        let mut r = agg.result(&entry.key, end - size, size, now);
        r.district = district;
        r.is_final = last;
        r.version = result_version(agg.count, last);
        Some(r)
    }

    /// Provisional results of the windows ending in `(from, upto]` and after `watermark`.
    fn provisional(&mut self, from: u64, upto: u64, watermark: u64, now: u64, out: &mut Out) {
        for g in 0..self.groups.len() {
            let ends: Vec<(u64, u16)> = self.groups[g]
                .pending
                .range((from + 1, 0)..=(upto, u16::MAX))
                .copied()
                .filter(|(end, _)| *end > watermark)
                .collect();
            for (end, spec) in ends {
                self.put_out(g, spec, end, now, (watermark, false), out);
            }
        }
    }

    /// Puts out window `(end, spec)` of group `g` for every series with data in it, at `at`,
    /// final if `last`; a window starting before `emit_from_ms` is left out.
    fn put_out(
        &mut self,
        g: usize,
        spec: u16,
        end: u64,
        now: u64,
        (at, last): (u64, bool),
        out: &mut Out,
    ) {
        let size = self.groups[g].specs[spec as usize].size_ms;
        if end - size < self.emit_from_ms {
            return;
        }
        for n in self.series_in(g, end - size, end) {
            if let Some(r) = self.result(g, spec, n, end, now, last, false) {
                out.push((at, r));
            }
        }
    }

    /// Corrections of provisional results changed since, for windows not final yet.
    fn corrections(&mut self, watermark: u64, now: u64, out: &mut Out) {
        let mut changed = std::mem::take(&mut self.changed);
        changed.sort_unstable();
        changed.dedup();
        for (end, g, spec, n) in changed {
            if end <= watermark {
                continue; // the final result follows
            }
            if let Some(r) = self.result(g.into(), spec, n, end, now, false, true) {
                out.push((watermark, r));
            }
        }
    }

    /// Final results of the windows ending by `watermark`; then the slices no window needs.
    fn finals(&mut self, watermark: u64, now: u64, out: &mut Out) {
        for g in 0..self.groups.len() {
            while let Some(&(end, spec)) = self.groups[g].pending.first() {
                if end > watermark {
                    break;
                }
                self.groups[g].pending.pop_first();
                self.put_out(g, spec, end, now, (end, true), out);
            }
            // A slice is in windows ending by its start plus the longest size.
            let longest = self.groups[g].longest;
            while let Some(entry) = self.groups[g].active.first_entry() {
                if entry.key().saturating_add(longest) > watermark {
                    break;
                }
                let start = *entry.key();
                for n in entry.remove() {
                    let Some(series) = self.series[n as usize].as_mut() else {
                        continue;
                    };
                    if series.groups[g].slices.remove(&start).is_some() {
                        series.slices -= 1;
                    }
                    if series.slices == 0 {
                        self.release(n);
                    }
                }
            }
        }
    }
}

/// `(time to send at, result)`.
type Out = Vec<(u64, WindowResult)>;

/// Aggregates samples into the given windows (tumbling or sliding; give each size once, see
/// `DataflowConfig::effective_windows`), by slices: each sample updates one partial aggregate
/// per slice width, and windows are assembled from their slices when they are put out.
///
/// The input frontier is the watermark, the newest event time less `lateness_ms`; so the
/// event clock is the frontier plus the lateness. A window is emitted as soon as the event
/// clock passes its end (a provisional result), again whenever a reading within the lateness
/// changes it (a correction, superseding the previous version), and a last time, final, once
/// the watermark passes its end; then its slices leave memory once no other window needs
/// them. Windows starting before `emit_from_ms` are not emitted: after a restart their
/// readings are only partly replayed.
///
/// When the input ends (an empty frontier) open windows are emitted as final, unless
/// `discard_open` is set: a process shutting down must not store half-filled windows as final.
/// It is set once every window the watermark closed is out, before the inputs close one by
/// one, so nothing the closing inputs move time past is emitted either.
pub fn event_time_windows<'scope>(
    samples: Stream<'scope, u64, Vec<Sample>>,
    windows: Vec<WindowSpec>,
    lateness_ms: u64,
    emit_from_ms: u64,
    discard_open: Arc<AtomicBool>,
    clock: Arc<dyn Clock>,
) -> Stream<'scope, u64, Vec<WindowResult>> {
    samples.unary_frontier(
        Exchange::new(|s: &Sample| s.series.device_id.route()),
        "EventTimeWindows",
        move |_default_cap, _info| {
            let mut open = SlicedWindows::new(&windows, emit_from_ms);
            // Windows ending at or before this have had their provisional result.
            let mut provisional_until = 0u64;
            // One capability at the least time anything may still be sent at.
            let mut held: Option<Capability<u64>> = None;
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, batches| {
                    for batch in batches {
                        for sample in batch.drain(..) {
                            open.add(sample, provisional_until);
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
                if discard_open.load(Ordering::SeqCst) {
                    open.clear();
                }
                // The watermark, and the event clock it implies.
                let watermark = frontier.iter().copied().min().unwrap_or(u64::MAX);
                let event_clock = watermark.saturating_add(lateness_ms);
                let now = clock.now_ms();
                // Corrections and provisional results at the watermark, finals at their end.
                let mut out: Out = Vec::new();
                let upto = event_clock.min(u64::MAX - 1);
                if upto > provisional_until {
                    open.provisional(provisional_until, upto, watermark, now, &mut out);
                    provisional_until = upto;
                }
                open.corrections(watermark, now, &mut out);
                open.finals(watermark, now, &mut out);
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

    /// A minute of samples makes one slice per width, whatever windows hold them; the windows
    /// are assembled from it, and once they are final the series leaves memory.
    #[test]
    fn slices_are_shared_within_a_width_and_freed_once_final() {
        const BASE: u64 = 1_795_827_600_000; // an hour boundary
        let specs = [
            WindowSpec::MINUTE,
            WindowSpec::sliding(300_000, 60_000),
            WindowSpec::sliding(3_600_000, 1_800_000),
        ];
        let mut open = SlicedWindows::new(&specs, 0);
        let widths: Vec<u64> = open.groups.iter().map(|g| g.width).collect();
        assert_eq!(widths, vec![60_000, 1_800_000]);
        for i in 0..60 {
            open.add(sample("a", BASE + i * 1_000, i as f64), 0);
        }
        assert_eq!(open.series[0].as_ref().map(|e| e.slices), Some(2));
        let mut out = Vec::new();
        open.finals(BASE + 60_000, 0, &mut out);
        // The minute, and the 5-minute window that ends with it.
        assert_eq!(out.len(), 2, "{out:?}");
        open.finals(u64::MAX, 0, &mut out);
        // 1 + 5 sliding 5-minute windows + 2 half-hourly hour windows, all of the 60 samples.
        assert_eq!(out.len(), 8);
        assert!(out
            .iter()
            .all(|(_, r)| r.is_final && r.count == 60 && r.sum == 1770.0));
        let mut sizes: Vec<u64> = out.iter().map(|(_, r)| r.window_size_ms).collect();
        sizes.dedup();
        assert_eq!(sizes, vec![60_000, 300_000, 3_600_000]);
        assert!(open.is_empty() && open.index.is_empty());
        assert_eq!(open.free, vec![0], "the series number is free again");
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
