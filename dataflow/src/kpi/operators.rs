//! The timely operators that drive the KPI state: each closes a base window once its input
//! frontier has passed the window's end, so every final result and reading of the window is in.

use ioc_schemas::Kpi;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use crate::kpi::city::{CityInput, CityKpis};
use crate::kpi::device::{DeviceKpis, KpiInput, BASE_WINDOW_MS};

/// State closed window by window.
trait ClosesWindows: 'static {
    type Input: Clone + 'static;
    type Output: Clone + 'static;
    fn take(&mut self, input: Self::Input);
    /// The earliest window end with inputs waiting.
    fn first_pending_end(&self) -> Option<u64>;
    fn close(&mut self, end: u64, out: &mut Vec<Self::Output>);
}

impl ClosesWindows for DeviceKpis {
    type Input = KpiInput;
    /// The device's KPI rows, and the cameras' windows for the district counts.
    type Output = CityInput;
    fn take(&mut self, input: KpiInput) {
        DeviceKpis::take(self, input);
    }
    fn first_pending_end(&self) -> Option<u64> {
        DeviceKpis::first_pending_end(self)
    }
    fn close(&mut self, end: u64, out: &mut Vec<CityInput>) {
        let mut rows = Vec::new();
        DeviceKpis::close(self, end, &mut rows);
        out.extend(rows.into_iter().map(CityInput::Device));
        out.extend(self.take_camera_windows().map(CityInput::Camera));
    }
}

impl ClosesWindows for CityKpis {
    type Input = CityInput;
    type Output = Kpi;
    fn take(&mut self, input: CityInput) {
        CityKpis::take(self, input);
    }
    fn first_pending_end(&self) -> Option<u64> {
        self.pending_ends().next()
    }
    fn close(&mut self, end: u64, out: &mut Vec<Kpi>) {
        CityKpis::close(self, end, out);
    }
}

/// At most this many silent windows are caught up at once (a day of 5-minute windows), so a
/// frontier that jumps far ahead does not make a row for every window in between.
const MAX_CATCH_UP: u64 = 288;

/// Per-device KPIs, on the worker that owns each device. Health is closed for every base
/// window, whether or not anything arrived. Windows ending before `emit_from_ms` plus one
/// window only build up state (after a restart they are the stored history, whose KPI rows
/// were written by the previous run): their rows are not emitted again. Out come the devices'
/// KPI rows and the cameras' windows, for [`city_kpis`].
pub(crate) fn device_kpis<'scope>(
    inputs: Stream<'scope, u64, Vec<KpiInput>>,
    emit_from_ms: u64,
) -> Stream<'scope, u64, Vec<CityInput>> {
    let from = emit_from_ms.saturating_add(BASE_WINDOW_MS);
    close_by_window(
        inputs,
        Pipeline,
        "DeviceKpis",
        DeviceKpis::default(),
        Some(from),
    )
}

/// District, department and city KPIs, on worker 0.
pub(crate) fn city_kpis<'scope>(
    inputs: Stream<'scope, u64, Vec<CityInput>>,
) -> Stream<'scope, u64, Vec<Kpi>> {
    close_by_window(
        inputs,
        Exchange::new(|_: &CityInput| 0),
        "CityKpis",
        CityKpis::default(),
        None,
    )
}

/// Feeds `state` and closes each window end once the frontier has passed it. With
/// `ticks_from`, every base window end from there on is closed even when nothing arrived,
/// and ends before it are closed without emitting their rows (they only build up state).
fn close_by_window<'scope, S, P>(
    inputs: Stream<'scope, u64, Vec<S::Input>>,
    pact: P,
    name: &str,
    mut state: S,
    ticks_from: Option<u64>,
) -> Stream<'scope, u64, Vec<S::Output>>
where
    S: ClosesWindows,
    P: ParallelizationContract<u64, Vec<S::Input>>,
{
    let emit_from = ticks_from.unwrap_or(0);
    inputs.unary_frontier(pact, name, move |default_cap, _info| {
        let mut cap = Some(default_cap);
        let mut next_tick: Option<u64> = None;
        // The earliest time data came at (the registry's initial load at 0 aside).
        let mut earliest_data: Option<u64> = None;
        // The first frontier past 0.
        let mut first_frontier: Option<u64> = None;
        move |(input, frontier), output| {
            input.for_each_stamp(|cap, batches| {
                if let Some(&t) = cap.least().filter(|t| **t > 0) {
                    earliest_data = Some(earliest_data.map_or(t, |e| e.min(t)));
                }
                for batch in batches {
                    for item in batch.drain(..) {
                        state.take(item);
                    }
                }
            });
            let Some(held) = cap.as_mut() else {
                return;
            };
            // Ends before this have all their inputs; when the input is done, every end has.
            let complete_before = frontier.frontier().iter().copied().min();
            let limit = complete_before.unwrap_or(u64::MAX);
            if let (Some(from), Some(f)) = (ticks_from, complete_before) {
                if next_tick.is_none() && f > 0 {
                    // Ticks start after the earliest data. The frontier may pass below data
                    // still in flight from another worker, so without data they wait one
                    // window before starting from the frontier (a worker none comes to).
                    let first_frontier = *first_frontier.get_or_insert(f);
                    let first = match earliest_data {
                        Some(first) => Some(first),
                        None => (f >= first_frontier + BASE_WINDOW_MS).then_some(first_frontier),
                    };
                    next_tick = first
                        .map(|first| (first - first % BASE_WINDOW_MS + BASE_WINDOW_MS).max(from));
                }
            }
            let mut out = Vec::new();
            loop {
                let pending = state.first_pending_end().filter(|e| *e < limit);
                let tick = next_tick.filter(|t| *t < limit && complete_before.is_some());
                let end = match (pending, tick) {
                    (Some(p), Some(t)) => p.min(t),
                    (Some(p), None) => p,
                    (None, Some(t)) => t,
                    (None, None) => break,
                };
                if end < *held.time() || end < emit_from {
                    // Already past, or history: state only.
                    let mut discard = Vec::new();
                    state.close(end, &mut discard);
                    advance_tick(&mut next_tick, end, complete_before);
                    continue;
                }
                state.close(end, &mut out);
                if !out.is_empty() {
                    output.session(&held.delayed(&end)).give_container(&mut out);
                }
                advance_tick(&mut next_tick, end, complete_before);
            }
            match complete_before {
                Some(f) => held.downgrade(&f.max(*held.time())),
                None => cap = None,
            }
        }
    })
}

/// Moves the next tick past a closed `end`, catching up at most a day of silent windows.
fn advance_tick(next_tick: &mut Option<u64>, end: u64, complete_before: Option<u64>) {
    if let Some(t) = next_tick.as_mut() {
        if *t <= end {
            *t = end - end % BASE_WINDOW_MS + BASE_WINDOW_MS;
            if let Some(f) = complete_before {
                let last = f.saturating_sub(1) / BASE_WINDOW_MS * BASE_WINDOW_MS;
                let earliest = last.saturating_sub((MAX_CATCH_UP - 1) * BASE_WINDOW_MS);
                *t = (*t).max(earliest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use ioc_schemas::{Department, District, Kind, Scope};
    use timely::dataflow::operators::{Capture, Input, Probe};

    use super::*;
    use crate::kpi::device::Activity;
    use crate::registry::DeviceMeta;

    const T0: u64 = 1_795_824_000_000;

    /// A gauge (every 60 s) reports twice in its first window and then falls silent; health comes out for
    /// every window the frontier passes, including the silent ones, at each window's end.
    #[test]
    fn device_health_ticks_every_window_as_the_frontier_passes() {
        let captured = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&captured);
        timely::execute_directly(move |worker| {
            let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, stream) = scope.new_input::<Vec<KpiInput>>();
                let kpis = device_kpis(stream, 0);
                let probe = kpis.clone().probe().0;
                let rx = kpis.capture();
                *sink.lock().unwrap() = vec![rx];
                (input, probe)
            });
            input.send(KpiInput::Registry(
                "rg1".into(),
                DeviceMeta {
                    kind: Kind::Sensor,
                    district: District::HoaVang,
                    department: Department::DisasterPrevention,
                    expected_interval_s: 60,
                    free_flow_dkmh: 500,
                    water_class: None,
                    flood_alarm_mm: None,
                },
                0,
                1,
            ));
            input.advance_to(T0);
            for t in [T0 + 10_000, T0 + 250_000] {
                input.send(KpiInput::Activity(Activity {
                    device_id: "rg1".into(),
                    medium: None,
                    event_ms: t,
                    registered: true,
                }));
            }
            // The watermark moves on 20 minutes in two jumps.
            input.advance_to(T0 + 10 * 60_000 + 1);
            input.advance_to(T0 + 20 * 60_000 + 1);
            while probe.less_than(input.time()) {
                worker.step();
            }
        });
        let rx = captured.lock().unwrap().pop().unwrap();
        let mut rows = Vec::new();
        for event in rx.try_iter() {
            if let timely::dataflow::operators::capture::Event::Messages(stamp, data) = event {
                let time = *stamp.expect_singleton();
                for kpi in data {
                    if let CityInput::Device(Kpi::Health(h)) = kpi {
                        assert_eq!(time, h.window_start_ms + h.window_size_ms);
                        assert_eq!(h.scope, Scope::Device);
                        rows.push((h.window_start_ms - T0, h.readings, h.status));
                    }
                }
            }
        }
        use ioc_schemas::DeviceStatus::*;
        assert_eq!(
            rows,
            vec![
                (0, 2, Some(Online)),
                (300_000, 0, Some(Offline)),
                (600_000, 0, Some(Offline)),
                (900_000, 0, Some(Offline)),
            ]
        );
    }
}
