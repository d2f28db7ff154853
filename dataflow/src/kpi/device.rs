//! Per-device KPIs, computed when a base window (5 minutes) closes: traffic at a junction,
//! VN_AQI of an air station (hourly with NowCast, daily), water exceedances, rainfall
//! accumulations, water-level rise, bridge statistics and device health.
//!
//! The state is plain data driven by [`DeviceKpis::take`] and [`DeviceKpis::close`], so the
//! arithmetic is tested without a dataflow; `operators.rs` drives it from timely.

use std::collections::{BTreeMap, VecDeque};

use crate::{FastMap, Name};

use ioc_schemas::{
    AqiKpi, AqiPeriod, BridgeKpi, DeviceStatus, District, HealthKpi, HydrologyKpi, Kind, Kpi,
    Medium, Scope, TrafficKpi, WaterClass, WaterKpi, WindowResult,
};

use crate::kpi::{aqi, hydrology, traffic, water};
use crate::registry::{DeviceMeta, History};

/// The window KPIs are computed on: every KPI is built from these windows' final results.
pub const BASE_WINDOW_MS: u64 = 300_000;
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;
/// Da Nang is UTC+7: a city day starts at 17:00 UTC.
const CITY_OFFSET_MS: u64 = 7 * HOUR_MS;
/// How far back the KPI state reaches: the 24-hour rain (the NowCast needs 12 hours, a city
/// day at most 24).
pub const HISTORY_SPAN_MS: u64 = DAY_MS;
/// The metrics whose windows the KPI state with long horizons is built from; after a restart
/// their stored final windows of the last [`HISTORY_SPAN_MS`] restore it.
pub const HISTORY_METRICS: [&str; 8] = [
    "pm25",
    "pm10",
    "o3",
    "no2",
    "so2",
    "co",
    "rainfall_mm",
    "water_level_m",
];
/// O3's place in the per-pollutant arrays (the order of [`aqi::Pollutant::ALL`]).
const O3_SLOT: usize = 2;
/// A device silent for this many of its intervals is offline.
pub const OFFLINE_AFTER_INTERVALS: u64 = 3;
/// The water-level rise rate is measured over this span.
const RISE_SPAN_MS: u64 = 15 * 60_000;

/// A reading seen, as far as health needs it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Activity {
    /// The device.
    pub device_id: Name,
    /// For environment readings, the medium sampled.
    pub medium: Option<Medium>,
    /// Event time, epoch ms.
    pub event_ms: u64,
    /// Whether the registry knows the device.
    pub registered: bool,
}

/// A camera's final base-window result and how much of the window it covered (see
/// [`DeviceKpis::covered_ms`]), for the district counts of `city.rs`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CameraWindow {
    /// The result.
    pub window: WindowResult,
    /// The part of the window observed, ms.
    pub covered_ms: u64,
}

/// One input of the per-device KPI state.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum KpiInput {
    /// A reading was taken.
    Activity(Activity),
    /// A final base-window result.
    Window(WindowResult),
    /// A consolidated registry change: `(device, entry, +1 or -1)` at a time.
    Registry(String, DeviceMeta, u64, isize),
}

/// Readings of a device, by the end of the base window they fall in.
#[derive(Debug, Default)]
struct Seen {
    /// Newest event time of the windows already closed.
    last_seen_ms: Option<u64>,
    /// The readings of each base window not yet closed, by window end.
    open: BTreeMap<u64, OpenWindow>,
    medium: Option<Medium>,
}

/// A device's readings in one base window not yet closed.
#[derive(Debug, Clone, Copy)]
struct OpenWindow {
    readings: u64,
    oldest_ms: u64,
    newest_ms: u64,
}

/// An hour of pollutant figures being summed.
#[derive(Debug, Default, Clone)]
struct PollutantSums {
    sum: [f64; 6],
    count: [u64; 6],
    /// Base windows with any pollutant.
    windows: u32,
}

impl PollutantSums {
    fn mean(&self, i: usize) -> Option<f64> {
        (self.count[i] > 0).then(|| self.sum[i] / self.count[i] as f64)
    }
}

/// A city day of hourly pollutant means, for the daily AQI.
#[derive(Debug, Default, Clone)]
struct PollutantDay {
    /// Each pollutant's hourly means (24-hour PM is their mean).
    hourly: [Vec<f64>; 6],
    /// The largest hourly mean (the daily 1-hour figure).
    max_hourly: [Option<f64>; 6],
    /// The largest 8-hour mean of O3 of the periods ending in the day.
    max_o3_8h: Option<f64>,
    /// Base windows with any pollutant.
    windows: u32,
}

#[derive(Debug, Default)]
struct AirState {
    hour: PollutantSums,
    day: PollutantDay,
    /// Hourly means by hour start, the last 12 hours.
    hourly: BTreeMap<u64, [Option<f64>; 6]>,
    district: Option<District>,
}

impl AirState {
    /// Pollutant `slot`'s hourly means of the `n` hours up to the one starting at
    /// `hour_start`, most recent first; `None` for an hour without one.
    fn last_hours(&self, hour_start: u64, slot: usize, n: u64) -> Vec<Option<f64>> {
        (0..n)
            .map(|k| {
                hour_start
                    .checked_sub(k * HOUR_MS)
                    .and_then(|s| self.hourly.get(&s))
                    .and_then(|m| m[slot])
            })
            .collect()
    }
}

/// Per-device KPI state of one worker.
#[derive(Debug, Default)]
pub struct DeviceKpis {
    registry: FastMap<String, History>,
    seen: FastMap<Name, Seen>,
    finals: BTreeMap<u64, Vec<WindowResult>>,
    air: FastMap<String, AirState>,
    rain: FastMap<String, VecDeque<(u64, f64)>>,
    level: FastMap<String, VecDeque<(u64, f64)>>,
    /// Cameras' windows closed by [`DeviceKpis::close`], until taken.
    cameras: Vec<CameraWindow>,
}

/// Whether a result is the final one of a base window (5 minutes, tumbling: a 5-minute
/// window sliding by less also ends on other minutes).
pub fn is_base_final(w: &WindowResult) -> bool {
    w.is_final
        && w.window_size_ms == BASE_WINDOW_MS
        && w.window_start_ms.is_multiple_of(BASE_WINDOW_MS)
}

fn base_end_of(event_ms: u64) -> u64 {
    event_ms - event_ms % BASE_WINDOW_MS + BASE_WINDOW_MS
}

impl DeviceKpis {
    /// Takes one input.
    pub fn take(&mut self, input: KpiInput) {
        match input {
            KpiInput::Activity(a) => {
                let seen = self.seen.entry(a.device_id).or_default();
                let slot = seen
                    .open
                    .entry(base_end_of(a.event_ms))
                    .or_insert(OpenWindow {
                        readings: 0,
                        oldest_ms: a.event_ms,
                        newest_ms: a.event_ms,
                    });
                slot.readings += 1;
                slot.oldest_ms = slot.oldest_ms.min(a.event_ms);
                slot.newest_ms = slot.newest_ms.max(a.event_ms);
                if a.medium.is_some() {
                    seen.medium = a.medium;
                }
            }
            KpiInput::Window(w) => {
                if is_base_final(&w) {
                    let end = w.window_start_ms + w.window_size_ms;
                    self.finals.entry(end).or_default().push(w);
                }
            }
            KpiInput::Registry(device, meta, time, diff) => {
                self.registry
                    .entry(device)
                    .or_default()
                    .pending
                    .push((time, meta, diff));
            }
        }
    }

    /// The earliest window end with results waiting, if any.
    pub fn first_pending_end(&self) -> Option<u64> {
        self.finals.keys().next().copied()
    }

    /// Computes the KPIs of the base window ending at `end`, once every final result and
    /// reading before `end` has been taken. Call it for increasing ends.
    pub fn close(&mut self, end: u64, out: &mut Vec<Kpi>) {
        for history in self.registry.values_mut() {
            history.compact(end);
        }
        self.registry.retain(|_, h| !h.is_empty());
        let mut finals = BTreeMap::new();
        while let Some(entry) = self.finals.first_entry() {
            if *entry.key() > end {
                break;
            }
            let results = entry.remove();
            for w in results {
                finals
                    .entry(w.device_id.clone())
                    .or_insert_with(Vec::new)
                    .push(w);
            }
        }
        for (device, windows) in finals {
            let meta = self.registry.get(&device).and_then(|h| h.as_of(end));
            self.device_kpis(&device, meta.as_ref(), windows, end, out);
        }
        if end.is_multiple_of(HOUR_MS) {
            self.close_hour(end, out);
            self.forget_strangers(end);
        }
        if (end + CITY_OFFSET_MS).is_multiple_of(DAY_MS) {
            self.close_day(end, out);
        }
        self.health(end, out);
    }

    /// The cameras' windows closed since the last call: their events are counted per
    /// district (`city.rs`).
    pub fn take_camera_windows(&mut self) -> std::vec::Drain<'_, CameraWindow> {
        self.cameras.drain(..)
    }

    /// How much of the base window ending at `end` a device was observed for: all of it
    /// once it reported in an earlier window of this run; in its first window, from its
    /// first reading less one registered interval (a report counts what passed since the
    /// one before). So a run that starts mid-window does not scale a part of the window's
    /// vehicles up as if they had taken the whole window (the first 5-minute row of a demo
    /// showed 136,116 veh/h for Hải Châu, then 209,112).
    fn covered_ms(&self, device: &str, meta: Option<&DeviceMeta>, end: u64) -> u64 {
        let Some(seen) = self.seen.get(&Name::of(device)) else {
            return BASE_WINDOW_MS;
        };
        if seen.last_seen_ms.is_some() {
            return BASE_WINDOW_MS;
        }
        let Some(window) = seen.open.get(&end) else {
            return BASE_WINDOW_MS;
        };
        let interval_ms = meta.map_or(0, |m| u64::from(m.expected_interval_s) * 1000);
        first_window_covered_ms(window.oldest_ms, interval_ms, end)
    }

    fn device_kpis(
        &mut self,
        device: &str,
        meta: Option<&DeviceMeta>,
        windows: Vec<WindowResult>,
        end: u64,
        out: &mut Vec<Kpi>,
    ) {
        let Some(first) = windows.first() else {
            return;
        };
        let district = meta.map_or(first.district, |m| m.district);
        let start = end - BASE_WINDOW_MS;
        let get = |metric: &str| windows.iter().find(|w| w.metric == metric);
        match first.kind {
            Kind::TrafficSignal => {
                let free_flow = meta.map_or(traffic::DEFAULT_FREE_FLOW_KMH, |m| m.free_flow_kmh());
                let covered = self.covered_ms(device, meta, end);
                if let Some(k) =
                    junction_traffic(device, district, (start, covered), &windows, free_flow)
                {
                    out.push(Kpi::Traffic(k));
                }
            }
            Kind::Environment => {
                let medium = self.seen.get(&Name::of(device)).and_then(|s| s.medium);
                let is_air = aqi::Pollutant::ALL
                    .iter()
                    .any(|p| get(p.measurement()).is_some());
                if is_air {
                    let air = self.air.entry(device.to_owned()).or_default();
                    air.district = Some(district);
                    air.hour.windows += 1;
                    for (i, p) in aqi::Pollutant::ALL.iter().enumerate() {
                        if let Some(w) = get(p.measurement()) {
                            air.hour.sum[i] += w.sum;
                            air.hour.count[i] += w.count;
                        }
                    }
                }
                let class = medium.and_then(|m| {
                    meta.and_then(|d| d.water_class)
                        .or_else(|| WaterClass::default_for(m))
                        .map(|c| (m, c))
                });
                if let Some((medium, class)) = class {
                    let row = |parameter: &str, value: f64, limit: water::Limit, standard: &str| {
                        Kpi::Water(WaterKpi {
                            station_id: device.to_owned(),
                            district,
                            medium,
                            window_start_ms: start,
                            window_size_ms: BASE_WINDOW_MS,
                            parameter: parameter.to_owned(),
                            value,
                            limit_min: limit.min,
                            limit_max: limit.max,
                            standard: standard.to_owned(),
                            exceeded: limit.exceeded_by(value),
                        })
                    };
                    for w in &windows {
                        if let Some((standard, limit)) = water::limit(class, &w.metric) {
                            out.push(row(&w.metric, w.mean, limit, standard));
                        }
                    }
                    if water::has_wqi(class) {
                        if let Some(wqi) = water::vn_wqi(|p| get(p).map(|w| w.mean)) {
                            let fair = water::WQI_FAIR;
                            out.push(row(fair.parameter, wqi, fair, water::WQI_STANDARD));
                        }
                    }
                }
            }
            Kind::Sensor => {
                if let Some(rain) = get("rainfall_mm") {
                    out.push(Kpi::Hydrology(self.rain(device, district, end, rain.sum)));
                }
                if let Some(level) = get("water_level_m") {
                    let alarm = meta.and_then(DeviceMeta::flood_alarm_m);
                    out.push(Kpi::Hydrology(
                        self.level(device, district, end, level.mean, alarm),
                    ));
                }
                let wind = get("wind_speed_ms");
                let strain = get("strain_ue");
                if wind.is_some() || strain.is_some() {
                    out.push(Kpi::Bridge(BridgeKpi {
                        device_id: device.to_owned(),
                        district,
                        window_start_ms: start,
                        window_size_ms: BASE_WINDOW_MS,
                        wind_mean_ms: wind.map(|w| w.mean),
                        wind_max_ms: wind.map(|w| w.max),
                        strain_mean_ue: strain.map(|w| w.mean),
                        strain_min_ue: strain.map(|w| w.min),
                        strain_max_ue: strain.map(|w| w.max),
                        temperature_c: get("temperature_c").map(|w| w.mean),
                        humidity_pct: get("humidity_pct").map(|w| w.mean),
                    }));
                }
            }
            // Camera events are counted per district (`city.rs`).
            Kind::CameraEvent => {
                let covered_ms = self.covered_ms(device, meta, end);
                self.cameras.extend(
                    windows
                        .into_iter()
                        .map(|window| CameraWindow { window, covered_ms }),
                );
            }
        }
    }

    /// Drops the state of unregistered devices silent for a day (the longest KPI horizon),
    /// so ids that come and go do not pile up.
    fn forget_strangers(&mut self, end: u64) {
        let horizon = end.saturating_sub(DAY_MS);
        let registry = &self.registry;
        let stranger = |id: &str| !registry.contains_key(id);
        self.seen.retain(|id, s| {
            !stranger(id.as_str())
                || !s.open.is_empty()
                || s.last_seen_ms.is_some_and(|t| t >= horizon)
        });
        self.rain
            .retain(|id, h| !stranger(id) || h.back().is_some_and(|(e, _)| *e >= horizon));
        self.level
            .retain(|id, h| !stranger(id) || h.back().is_some_and(|(e, _)| *e >= horizon));
        self.air.retain(|id, a| {
            !stranger(id)
                || a.hour.windows > 0
                || a.hourly.keys().next_back().is_some_and(|t| *t >= horizon)
        });
    }

    fn rain(&mut self, gauge: &str, district: District, end: u64, mm: f64) -> HydrologyKpi {
        let history = self.rain.entry(gauge.to_owned()).or_default();
        history.push_back((end, mm));
        while history.front().is_some_and(|(e, _)| *e + DAY_MS <= end) {
            history.pop_front();
        }
        let over = |span: u64| {
            let values: Vec<f64> = history
                .iter()
                .filter(|(e, _)| e + span > end)
                .map(|(_, v)| *v)
                .collect();
            hydrology::accumulation_mm(&values)
        };
        HydrologyKpi {
            gauge_id: gauge.to_owned(),
            district,
            window_start_ms: end - BASE_WINDOW_MS,
            window_size_ms: BASE_WINDOW_MS,
            rain_mm: Some(mm),
            rain_1h_mm: Some(over(HOUR_MS)),
            rain_3h_mm: Some(over(3 * HOUR_MS)),
            rain_24h_mm: Some(over(DAY_MS)),
            rain_12h_mm: Some(over(12 * HOUR_MS)),
            water_level_m: None,
            rise_rate_m_per_h: None,
            coverage: history.len() as u32,
            alarm_level: None,
        }
    }

    fn level(
        &mut self,
        gauge: &str,
        district: District,
        end: u64,
        mean: f64,
        alarm_m: Option<[f64; 3]>,
    ) -> HydrologyKpi {
        let history = self.level.entry(gauge.to_owned()).or_default();
        history.push_back((end, mean));
        while history
            .front()
            .is_some_and(|(e, _)| *e + RISE_SPAN_MS < end)
        {
            history.pop_front();
        }
        let rise = match (history.front(), history.back()) {
            (Some(first), Some(last)) => hydrology::rise_rate_m_per_h(*first, *last),
            _ => None,
        };
        HydrologyKpi {
            gauge_id: gauge.to_owned(),
            district,
            window_start_ms: end - BASE_WINDOW_MS,
            window_size_ms: BASE_WINDOW_MS,
            rain_mm: None,
            rain_1h_mm: None,
            rain_3h_mm: None,
            rain_24h_mm: None,
            rain_12h_mm: None,
            water_level_m: Some(mean),
            rise_rate_m_per_h: rise,
            coverage: history.len() as u32,
            alarm_level: alarm_m.map(|levels| hydrology::alarm_level(mean, levels)),
        }
    }

    fn close_hour(&mut self, end: u64, out: &mut Vec<Kpi>) {
        let hour_start = end - HOUR_MS;
        for (station, air) in &mut self.air {
            let hour = std::mem::take(&mut air.hour);
            if hour.windows > 0 {
                let means: [Option<f64>; 6] = std::array::from_fn(|i| hour.mean(i));
                air.hourly.insert(hour_start, means);
                for (i, mean) in means.iter().enumerate() {
                    if let Some(m) = mean {
                        air.day.hourly[i].push(*m);
                        let max = air.day.max_hourly[i].get_or_insert(*m);
                        *max = max.max(*m);
                    }
                }
                air.day.windows += hour.windows;
                // The 8-hour O3 mean of the period ending with this hour.
                let eight = air.last_hours(hour_start, O3_SLOT, 8);
                if let Some(m) = aqi::mean_of_hours(&eight, aqi::MIN_HOURS_OF_8) {
                    air.day.max_o3_8h = Some(air.day.max_o3_8h.map_or(m, |x| x.max(m)));
                }
            }
            air.hourly
                .retain(|start, _| start + 12 * HOUR_MS > hour_start);
            if hour.windows == 0 {
                continue;
            }
            // Hourly AQI: NowCast of the last 12 hours for PM, this hour's mean for gases.
            let concentrations: Vec<(aqi::Pollutant, f64)> = aqi::Pollutant::ALL
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    let c = if p.is_particulate() {
                        aqi::nowcast(&air.last_hours(hour_start, i, 12))
                    } else {
                        air.hourly.get(&hour_start).and_then(|m| m[i])
                    };
                    c.map(|c| (*p, c))
                })
                .collect();
            out.push(Kpi::Air(aqi_kpi(
                station,
                air.district.unwrap_or(District::HaiChau),
                AqiPeriod::Hour,
                (hour_start, HOUR_MS),
                &concentrations,
                None,
                hour.windows,
            )));
        }
    }

    fn close_day(&mut self, end: u64, out: &mut Vec<Kpi>) {
        for (station, air) in &mut self.air {
            let day = std::mem::take(&mut air.day);
            if day.windows == 0 {
                continue;
            }
            // Daily AQI: the mean of the hourly PM means (18 of 24 hours at least), the
            // largest hourly mean of the gases, and O3's 8-hour maximum beside its 1-hour one.
            let concentrations: Vec<(aqi::Pollutant, f64)> = aqi::Pollutant::ALL
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    let c = if p.is_particulate() {
                        let hours: Vec<Option<f64>> =
                            day.hourly[i].iter().copied().map(Some).collect();
                        aqi::mean_of_hours(&hours, aqi::MIN_HOURS_OF_24)
                    } else {
                        day.max_hourly[i]
                    };
                    c.map(|c| (*p, c))
                })
                .collect();
            out.push(Kpi::Air(aqi_kpi(
                station,
                air.district.unwrap_or(District::HaiChau),
                AqiPeriod::Day,
                (end - DAY_MS, DAY_MS),
                &concentrations,
                day.max_o3_8h,
                day.windows,
            )));
        }
    }

    /// Health of every registered device at `end`.
    fn health(&mut self, end: u64, out: &mut Vec<Kpi>) {
        // Fold the readings of closed windows into each device's last-seen time; a device's
        // first window is observed from its first reading on (see `covered_ms`).
        let mut readings: FastMap<Name, (u64, Option<u64>)> = FastMap::default();
        for (device, seen) in &mut self.seen {
            let mut n = 0;
            let mut first_oldest = None;
            while let Some(entry) = seen.open.first_entry() {
                if *entry.key() > end {
                    break;
                }
                let window_end = *entry.key();
                let window = entry.remove();
                if window_end == end {
                    n = window.readings;
                    if seen.last_seen_ms.is_none() {
                        first_oldest = Some(window.oldest_ms);
                    }
                }
                let newest = window.newest_ms;
                seen.last_seen_ms = Some(seen.last_seen_ms.map_or(newest, |l| l.max(newest)));
            }
            if n > 0 {
                readings.insert(*device, (n, first_oldest));
            }
        }
        for (device, history) in &self.registry {
            let Some(meta) = history.as_of(end) else {
                continue;
            };
            let name = Name::of(device);
            let last_seen = self.seen.get(&name).and_then(|s| s.last_seen_ms);
            let (n, first_oldest) = readings.get(&name).copied().unwrap_or((0, None));
            let interval_ms = u64::from(meta.expected_interval_s) * 1000;
            let covered_ms = first_oldest.map_or(BASE_WINDOW_MS, |oldest| {
                first_window_covered_ms(oldest, interval_ms, end)
            });
            let activity = (n, last_seen, covered_ms);
            out.push(Kpi::Health(device_health(device, &meta, end, activity)));
        }
        self.seen
            .retain(|_, s| s.last_seen_ms.is_some() || !s.open.is_empty());
    }
}

/// How much of the base window ending at `end` a device's first reports cover, the oldest
/// at `oldest_ms`: from one registered interval before it (a report counts what passed since
/// the one before), at least a second.
fn first_window_covered_ms(oldest_ms: u64, interval_ms: u64, end: u64) -> u64 {
    let from = oldest_ms
        .saturating_sub(interval_ms)
        .max(end - BASE_WINDOW_MS);
    (end - from).max(1_000)
}

/// The traffic KPI of a junction from its base-window results, `covered_ms` of the window
/// starting at `start` being observed (see [`DeviceKpis::covered_ms`]).
fn junction_traffic(
    device: &str,
    district: District,
    (start, covered_ms): (u64, u64),
    windows: &[WindowResult],
    free_flow_kmh: f64,
) -> Option<TrafficKpi> {
    let get = |metric: &str| windows.iter().find(|w| w.metric == metric);
    let vehicles = get("vehicles")?;
    let occupancy = get("occupancy_pct")?.mean;
    let speed = get("mean_speed_kmh")?.mean;
    let level = traffic::congestion(speed, occupancy, free_flow_kmh);
    // The worst approach, over the window's reports: its typical speed and occupancy.
    let worst_level = match (get("worst_speed_kmh"), get("worst_occupancy_pct")) {
        (Some(s), Some(o)) => traffic::congestion(s.mean, o.mean, free_flow_kmh).max(level),
        _ => level,
    };
    Some(TrafficKpi {
        scope: Scope::Device,
        entity_id: device.to_owned(),
        district,
        window_start_ms: start,
        window_size_ms: BASE_WINDOW_MS,
        junctions: 1,
        volume_veh_h: traffic::volume_per_hour(vehicles.sum, covered_ms),
        occupancy_pct: occupancy,
        mean_speed_kmh: speed,
        queue_m: get("queue_length_m").map_or(0.0, |w| w.max),
        level,
        availability_pct: get("signal_available").map_or(100.0, |w| w.mean * 100.0),
        free_flow_kmh: Some(free_flow_kmh),
        worst_level: Some(worst_level),
        covered_ms: Some(covered_ms),
    })
}

/// An AQI row from the concentrations a period calls for.
fn aqi_kpi(
    station: &str,
    district: District,
    period: AqiPeriod,
    (start, size): (u64, u64),
    concentrations: &[(aqi::Pollutant, f64)],
    o3_8h: Option<f64>,
    coverage: u32,
) -> AqiKpi {
    use aqi::Pollutant::*;
    let value = |p: aqi::Pollutant| {
        concentrations
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, c)| *c)
    };
    let index = |p: aqi::Pollutant| match (p, period) {
        (O3, AqiPeriod::Day) => aqi::daily_o3_sub_index(value(O3), o3_8h),
        _ => value(p).and_then(|c| aqi::sub_index(p, c)),
    };
    let result = aqi::aqi_of(
        aqi::Pollutant::ALL
            .iter()
            .filter_map(|p| index(*p).map(|i| (*p, i)))
            .collect(),
    );
    AqiKpi {
        station_id: station.to_owned(),
        district,
        period,
        window_start_ms: start,
        window_size_ms: size,
        pm25: value(Pm25),
        pm10: value(Pm10),
        o3: value(O3),
        no2: value(No2),
        so2: value(So2),
        co: value(Co),
        o3_8h,
        aqi_pm25: index(Pm25),
        aqi_pm10: index(Pm10),
        aqi_o3: index(O3),
        aqi_no2: index(No2),
        aqi_so2: index(So2),
        aqi_co: index(Co),
        aqi: result.as_ref().map(|a| a.aqi),
        dominant: result.as_ref().map(|a| a.dominant.measurement().to_owned()),
        band: result.as_ref().map(|a| a.band),
        colour: result.as_ref().map(|a| a.band.colour().to_owned()),
        advice: result.as_ref().map(|a| a.band.advice()),
        coverage,
    }
}

/// A device's health at the end of a base window, from its readings in the window, its
/// newest event time, and how much of the window it was observed for: in its first window,
/// the readings expected are those of the time since it started reporting.
fn device_health(
    device: &str,
    meta: &DeviceMeta,
    end: u64,
    (readings, last_seen_ms, covered_ms): (u64, Option<u64>, u64),
) -> HealthKpi {
    let interval_ms = u64::from(meta.expected_interval_s) * 1000;
    let status = match last_seen_ms {
        None => DeviceStatus::NeverSeen,
        Some(t) if end.saturating_sub(t) > OFFLINE_AFTER_INTERVALS * interval_ms => {
            DeviceStatus::Offline
        }
        Some(_) => DeviceStatus::Online,
    };
    let online = status == DeviceStatus::Online;
    let (expected, completeness) = if interval_ms > BASE_WINDOW_MS {
        // Reports less than once a window: complete while it keeps its interval.
        (1, if online { 100.0 } else { 0.0 })
    } else {
        let expected = (covered_ms / interval_ms.max(1)).max(1);
        let pct = (readings as f64 * 100.0 / expected as f64).min(100.0);
        (expected, pct)
    };
    HealthKpi {
        scope: Scope::Device,
        entity_id: device.to_owned(),
        district: Some(meta.district),
        department: Some(meta.department),
        window_start_ms: end - BASE_WINDOW_MS,
        window_size_ms: BASE_WINDOW_MS,
        devices: 1,
        online: u32::from(online),
        offline: u32::from(!online),
        readings,
        expected,
        completeness_pct: completeness,
        last_seen_ms,
        status: Some(status),
    }
}

#[cfg(test)]
mod tests {
    use ioc_schemas::Department;

    use super::*;

    const T0: u64 = 1_795_824_000_000; // 2026-11-28 00:00 UTC: a whole day and hour

    fn window(device: &str, kind: Kind, metric: &str, end: u64, values: &[f64]) -> WindowResult {
        let sum: f64 = values.iter().sum();
        WindowResult {
            kind,
            district: District::HaiChau,
            device_id: device.into(),
            metric: metric.into(),
            window_start_ms: end - BASE_WINDOW_MS,
            window_size_ms: BASE_WINDOW_MS,
            count: values.len() as u64,
            sum,
            min: values.iter().copied().fold(f64::MAX, f64::min),
            max: values.iter().copied().fold(f64::MIN, f64::max),
            mean: sum / values.len() as f64,
            emitted_at_ms: end,
            version: 1,
            is_final: true,
        }
    }

    fn meta(kind: Kind, interval_s: u32) -> DeviceMeta {
        DeviceMeta {
            kind,
            district: District::HaiChau,
            department: Department::Environment,
            expected_interval_s: interval_s,
            free_flow_dkmh: 500,
            water_class: None,
            flood_alarm_mm: None,
        }
    }

    fn register(k: &mut DeviceKpis, id: &str, m: DeviceMeta) {
        k.take(KpiInput::Registry(id.into(), m, 0, 1));
    }

    fn close(k: &mut DeviceKpis, end: u64) -> Vec<Kpi> {
        let mut out = Vec::new();
        k.close(end, &mut out);
        out
    }

    #[test]
    fn a_junction_first_seen_mid_window_is_scaled_by_what_was_observed() {
        let mut k = DeviceKpis::default();
        register(&mut k, "j3", meta(Kind::TrafficSignal, 30));
        let volume = |k: &mut DeviceKpis, end: u64, reports: &[u64]| {
            for at in reports {
                k.take(KpiInput::Activity(Activity {
                    device_id: "j3".into(),
                    medium: None,
                    event_ms: end - at * 1000,
                    registered: true,
                }));
            }
            let vehicles = vec![30.0; reports.len()];
            for (metric, values) in [
                ("vehicles", vehicles.as_slice()),
                ("occupancy_pct", &[20.0]),
                ("mean_speed_kmh", &[40.0]),
            ] {
                k.take(KpiInput::Window(window(
                    "j3",
                    Kind::TrafficSignal,
                    metric,
                    end,
                    values,
                )));
            }
            close(k, end)
                .into_iter()
                .find_map(|kpi| match kpi {
                    Kpi::Traffic(t) => Some((t.volume_veh_h, t.covered_ms)),
                    _ => None,
                })
                .unwrap()
        };
        let first = T0 + BASE_WINDOW_MS;
        // The run starts 2 minutes before the window ends: reports 90, 60 and 30 s before
        // it, each of the 30 s before it. 90 vehicles in 120 s, not in 300, and the row says
        // so.
        assert_eq!(
            volume(&mut k, first, &[90, 60, 30]),
            (2_700.0, Some(120_000))
        );
        // Seen before: the whole window counts. 10 reports of 30 in 5 minutes.
        let second = first + BASE_WINDOW_MS;
        let all: Vec<u64> = (0..10).map(|i| 300 - i * 30).collect();
        assert_eq!(
            volume(&mut k, second, &all),
            (3_600.0, Some(BASE_WINDOW_MS))
        );
    }

    #[test]
    fn one_jammed_approach_shows_as_the_worst_level() {
        let mut k = DeviceKpis::default();
        let mut m = meta(Kind::TrafficSignal, 30);
        m.free_flow_dkmh = 600; // its own 60 km/h
        register(&mut k, "j2", m);
        let end = T0 + BASE_WINDOW_MS;
        for (metric, value) in [
            ("vehicles", 300.0),
            ("occupancy_pct", 35.0),
            // 42 km/h of its 60: 70 %, B; but one approach crawls at 12 (20 %), F.
            ("mean_speed_kmh", 42.0),
            ("worst_speed_kmh", 12.0),
            ("worst_occupancy_pct", 60.0),
        ] {
            k.take(KpiInput::Window(window(
                "j2",
                Kind::TrafficSignal,
                metric,
                end,
                &[value],
            )));
        }
        let t = close(&mut k, end)
            .into_iter()
            .find_map(|kpi| match kpi {
                Kpi::Traffic(t) => Some(t),
                _ => None,
            })
            .unwrap();
        assert_eq!(t.level, ioc_schemas::Congestion::B);
        assert_eq!(t.worst_level, Some(ioc_schemas::Congestion::F));
        assert_eq!(t.free_flow_kmh, Some(60.0));
    }

    #[test]
    fn junction_traffic_from_its_windows() {
        let mut k = DeviceKpis::default();
        let end = T0 + BASE_WINDOW_MS;
        // 10 reports of 30 vehicles in 5 minutes: 300 vehicles, 3 600 veh/h. Speed 20 km/h
        // of a 50 km/h free flow is 40 %: level E. One report of ten flashing: 90 %.
        k.take(KpiInput::Window(window(
            "j1",
            Kind::TrafficSignal,
            "vehicles",
            end,
            &[30.0; 10],
        )));
        k.take(KpiInput::Window(window(
            "j1",
            Kind::TrafficSignal,
            "mean_speed_kmh",
            end,
            &[20.0; 10],
        )));
        k.take(KpiInput::Window(window(
            "j1",
            Kind::TrafficSignal,
            "occupancy_pct",
            end,
            &[35.0; 10],
        )));
        k.take(KpiInput::Window(window(
            "j1",
            Kind::TrafficSignal,
            "queue_length_m",
            end,
            &[10.0, 80.0],
        )));
        let mut available = vec![1.0; 9];
        available.push(0.0);
        k.take(KpiInput::Window(window(
            "j1",
            Kind::TrafficSignal,
            "signal_available",
            end,
            &available,
        )));
        let out = close(&mut k, end);
        let Some(Kpi::Traffic(t)) = out.first() else {
            panic!("{out:?}");
        };
        assert_eq!(t.volume_veh_h, 3600.0);
        assert_eq!(t.level, ioc_schemas::Congestion::E);
        assert_eq!(t.queue_m, 80.0);
        assert!((t.availability_pct - 90.0).abs() < 1e-9);
    }

    #[test]
    fn hourly_aqi_uses_the_nowcast_and_daily_the_24_hour_mean() {
        let mut k = DeviceKpis::default();
        let env = |k: &mut DeviceKpis, end: u64, pm25: f64| {
            k.take(KpiInput::Activity(Activity {
                device_id: "air1".into(),
                medium: Some(Medium::Air),
                event_ms: end - 1,
                registered: true,
            }));
            k.take(KpiInput::Window(window(
                "air1",
                Kind::Environment,
                "pm25",
                end,
                &[pm25],
            )));
            k.take(KpiInput::Window(window(
                "air1",
                Kind::Environment,
                "no2",
                end,
                &[40.0],
            )));
        };
        // Hour 1: PM2.5 40 µg/m³ throughout; hour 2: 100.
        let mut hourly = Vec::new();
        for (hour, pm) in [(0u64, 40.0), (1, 100.0)] {
            for i in 1..=12u64 {
                let end = T0 + hour * HOUR_MS + i * BASE_WINDOW_MS;
                env(&mut k, end, pm);
                hourly.extend(close(&mut k, end).into_iter().filter_map(|kpi| match kpi {
                    Kpi::Air(a) => Some(a),
                    _ => None,
                }));
            }
        }
        assert_eq!(hourly.len(), 2, "{hourly:?}");
        // After hour 1 only one hour is known: NowCast needs 2 of the last 3, so PM has no
        // value and the station no AQI (NO2 alone does not make one).
        assert_eq!(hourly[0].pm25, None);
        assert_eq!(hourly[0].aqi, None);
        assert_eq!(hourly[0].aqi_no2, Some(20));
        // After hour 2: w* = 40/100 → w = 0.5; NowCast = (100 + 0.5 × 40) / 1.5 = 80 µg/m³,
        // PM2.5 sub-index 150 (the top of Kém), the AQI.
        let h2 = &hourly[1];
        assert!((h2.pm25.unwrap() - 80.0).abs() < 1e-9, "{h2:?}");
        assert_eq!(h2.aqi, Some(150));
        assert_eq!(h2.band, Some(ioc_schemas::AqiBand::Poor));
        assert_eq!(h2.colour.as_deref(), Some("#ff7e00"));
        assert_eq!(h2.coverage, 12);
    }

    #[test]
    fn daily_aqi_at_the_end_of_a_city_day() {
        let mut k = DeviceKpis::default();
        let day_end = T0 + 17 * HOUR_MS; // 00:00 in Da Nang
        let mut daily = Vec::new();
        let mut end = day_end - DAY_MS;
        while end < day_end {
            end += BASE_WINDOW_MS;
            // PM10 120 µg/m³ all day: daily sub-index 100 + 50/100 × (120 − 150)... below 150:
            // 50 + 50/100 × (120 − 50) = 85. O3 hourly means 100 µg/m³ except one hour at 180.
            let o3 = if end > day_end - HOUR_MS {
                180.0
            } else {
                100.0
            };
            k.take(KpiInput::Window(window(
                "air2",
                Kind::Environment,
                "pm10",
                end,
                &[120.0],
            )));
            k.take(KpiInput::Window(window(
                "air2",
                Kind::Environment,
                "o3",
                end,
                &[o3],
            )));
            daily.extend(close(&mut k, end).into_iter().filter_map(|kpi| match kpi {
                Kpi::Air(a) if a.period == AqiPeriod::Day => Some(a),
                _ => None,
            }));
        }
        assert_eq!(daily.len(), 1);
        let d = &daily[0];
        assert_eq!(d.window_start_ms, day_end - DAY_MS);
        assert_eq!(d.aqi_pm10, Some(85));
        // O3 180 µg/m³: 50 + 50/40 × 20 = 75.
        assert_eq!(d.aqi_o3, Some(75));
        assert_eq!(d.aqi, Some(85));
        assert_eq!(d.dominant.as_deref(), Some("pm10"));
        assert_eq!(d.coverage, 288);
    }

    /// Feeds a city day of 5-minute windows to `k`, `values(hour)` giving the metrics of each
    /// local hour (0–23), and returns the daily AQI rows.
    fn one_city_day(
        k: &mut DeviceKpis,
        station: &str,
        values: impl Fn(u64) -> Vec<(&'static str, f64)>,
    ) -> Vec<AqiKpi> {
        let day_end = T0 + 17 * HOUR_MS; // 00:00 in Da Nang
        let day_start = day_end - DAY_MS;
        let mut daily = Vec::new();
        let mut end = day_start;
        while end < day_end {
            end += BASE_WINDOW_MS;
            let hour = (end - BASE_WINDOW_MS - day_start) / HOUR_MS;
            for (metric, value) in values(hour) {
                let w = window(station, Kind::Environment, metric, end, &[value]);
                k.take(KpiInput::Window(w));
            }
            daily.extend(close(k, end).into_iter().filter_map(|kpi| match kpi {
                Kpi::Air(a) if a.period == AqiPeriod::Day => Some(a),
                _ => None,
            }));
        }
        daily
    }

    #[test]
    fn a_sunny_day_is_set_by_the_8_hour_ozone() {
        assert_eq!(aqi::Pollutant::ALL[O3_SLOT], aqi::Pollutant::O3);
        // Quyết định 1459 §2.2: O3's daily index is the larger of its 1-hour maximum's and its
        // 8-hour maximum's. Night and morning at 60 µg/m³; from 10:00 to 17:00 the hourly
        // means 120, 130, 140, 150, 130, 130, 120, 120 (8-hour mean 130, index 110 Kém);
        // the 1-hour peak 150 alone gives 47 (Tốt). PM10 at 40 µg/m³ (index 40).
        let sunny = [120.0, 130.0, 140.0, 150.0, 130.0, 130.0, 120.0, 120.0];
        let mut k = DeviceKpis::default();
        let daily = one_city_day(&mut k, "air-sunny", |hour| {
            let o3 = match hour {
                10..=17 => sunny[(hour - 10) as usize],
                _ => 60.0,
            };
            vec![("pm10", 40.0), ("o3", o3)]
        });
        assert_eq!(daily.len(), 1);
        let d = &daily[0];
        assert_eq!((d.o3, d.o3_8h), (Some(150.0), Some(130.0)));
        assert_eq!(d.aqi_o3, Some(110));
        assert_eq!(d.aqi_pm10, Some(40));
        assert_eq!(d.aqi, Some(110));
        assert_eq!(d.dominant.as_deref(), Some("o3"));
        assert_eq!(d.band, Some(ioc_schemas::AqiBand::Poor));
        let advice = d.advice.as_ref().expect("advice with a band");
        assert!(advice.sensitive.starts_with("Nên giảm các hoạt động mạnh"));
    }

    #[test]
    fn a_day_short_of_pm_hours_has_no_daily_pm() {
        // PM2.5 in 17 of the 24 hours: no 24-hour mean, so no AQI (it needs PM); O3 is still
        // reported.
        let mut k = DeviceKpis::default();
        let daily = one_city_day(&mut k, "air-short", |hour| {
            let mut v = vec![("o3", 80.0)];
            if hour < 17 {
                v.push(("pm25", 30.0));
            }
            v
        });
        let d = &daily[0];
        assert_eq!(
            (d.pm25, d.aqi_pm25, d.aqi, d.band),
            (None, None, None, None)
        );
        assert_eq!(d.o3, Some(80.0));
        assert!(d.advice.is_none());
        assert_eq!(d.coverage, 288);
        // 18 hours are enough: the mean of the hourly means (10 for 9 hours, 40 for 9).
        let mut k = DeviceKpis::default();
        let daily = one_city_day(&mut k, "air-enough", |hour| match hour {
            0..=8 => vec![("pm25", 10.0)],
            9..=17 => vec![("pm25", 40.0)],
            _ => vec![],
        });
        let d = &daily[0];
        assert_eq!(d.pm25, Some(25.0));
        assert_eq!(d.aqi_pm25, Some(50));
        assert_eq!(d.coverage, 18 * 12);
    }

    #[test]
    fn rain_totals_over_1_3_12_and_24_hours() {
        let mut k = DeviceKpis::default();
        let mut last = None;
        // 14 hours: 1 mm a window for 2 hours, then 2 mm a window for 12 hours.
        for i in 1..=168u64 {
            let end = T0 + i * BASE_WINDOW_MS;
            let mm = if i <= 24 { 1.0 } else { 2.0 };
            k.take(KpiInput::Window(window(
                "rg12",
                Kind::Sensor,
                "rainfall_mm",
                end,
                &[mm],
            )));
            for kpi in close(&mut k, end) {
                if let Kpi::Hydrology(h) = kpi {
                    last = Some(h);
                }
            }
        }
        let h = last.unwrap();
        assert_eq!(
            (h.rain_1h_mm, h.rain_3h_mm, h.rain_12h_mm, h.rain_24h_mm),
            (Some(24.0), Some(72.0), Some(288.0), Some(312.0))
        );
    }

    #[test]
    fn rain_accumulates_and_levels_rise() {
        let mut k = DeviceKpis::default();
        let mut last = None;
        let mut level = None;
        for i in 1..=36u64 {
            let end = T0 + i * BASE_WINDOW_MS;
            // 2.5 mm every 5 minutes for the last hour only.
            let mm = if i > 24 { 2.5 } else { 0.0 };
            k.take(KpiInput::Window(window(
                "rg1",
                Kind::Sensor,
                "rainfall_mm",
                end,
                &[mm],
            )));
            // The level rises 0.1 m every 5 minutes: 1.2 m/h.
            k.take(KpiInput::Window(window(
                "fg1",
                Kind::Sensor,
                "water_level_m",
                end,
                &[i as f64 * 0.1],
            )));
            for kpi in close(&mut k, end) {
                if let Kpi::Hydrology(h) = kpi {
                    if h.gauge_id == "rg1" {
                        last = Some(h);
                    } else {
                        level = Some(h);
                    }
                }
            }
        }
        let rain = last.unwrap();
        assert_eq!(rain.rain_1h_mm, Some(30.0));
        assert_eq!(rain.rain_3h_mm, Some(30.0));
        assert_eq!(rain.coverage, 36);
        let level = level.unwrap();
        assert!(
            (level.rise_rate_m_per_h.unwrap() - 1.2).abs() < 1e-9,
            "{level:?}"
        );
        assert!((level.water_level_m.unwrap() - 3.6).abs() < 1e-9);
        assert_eq!(level.alarm_level, None, "no alarm levels registered");
    }

    #[test]
    fn a_river_gauge_reports_the_alarm_level_reached() {
        let mut k = DeviceKpis::default();
        // Cẩm Lệ: báo động I 1.0 m, II 1.8 m, III 2.5 m (the registry's values).
        let gauge = DeviceMeta {
            flood_alarm_mm: Some([1000, 1800, 2500]),
            ..meta(Kind::Sensor, 60)
        };
        register(&mut k, "hydro-cam_le", gauge);
        let mut levels = Vec::new();
        for (i, metres) in [0.6, 1.0, 1.79, 1.8, 2.49, 2.5, 3.2, 1.2]
            .into_iter()
            .enumerate()
        {
            let end = T0 + (i as u64 + 1) * BASE_WINDOW_MS;
            k.take(KpiInput::Window(window(
                "hydro-cam_le",
                Kind::Sensor,
                "water_level_m",
                end,
                &[metres],
            )));
            for kpi in close(&mut k, end) {
                if let Kpi::Hydrology(h) = kpi {
                    levels.push(h.alarm_level);
                }
            }
        }
        let expected = [0, 1, 1, 2, 2, 3, 3, 1].map(Some);
        assert_eq!(levels, expected);
    }

    #[test]
    fn bridge_wind_and_strain() {
        let mut k = DeviceKpis::default();
        let end = T0 + BASE_WINDOW_MS;
        // 30 wind reports (every 10 s): 29 at 11 m/s and a 40 m/s gust; strain 80–140 µε.
        let mut wind = vec![11.0; 29];
        wind.push(40.0);
        k.take(KpiInput::Window(window(
            "bridge-rong",
            Kind::Sensor,
            "wind_speed_ms",
            end,
            &wind,
        )));
        k.take(KpiInput::Window(window(
            "bridge-rong",
            Kind::Sensor,
            "strain_ue",
            end,
            &[80.0, 110.0, 140.0],
        )));
        k.take(KpiInput::Window(window(
            "bridge-rong",
            Kind::Sensor,
            "temperature_c",
            end,
            &[27.0, 29.0],
        )));
        let out = close(&mut k, end);
        let Some(Kpi::Bridge(b)) = out.first() else {
            panic!("{out:?}");
        };
        // (29 × 11 + 40) / 30 = 11.97 m/s mean; the gust is the window's max.
        assert!((b.wind_mean_ms.unwrap() - 359.0 / 30.0).abs() < 1e-9);
        assert_eq!(b.wind_max_ms, Some(40.0));
        assert_eq!(
            (b.strain_min_ue, b.strain_mean_ue, b.strain_max_ue),
            (Some(80.0), Some(110.0), Some(140.0))
        );
        assert_eq!(b.temperature_c, Some(28.0));
        assert_eq!(b.humidity_pct, None);
    }

    #[test]
    fn water_exceedances_use_the_station_class() {
        let mut k = DeviceKpis::default();
        let end = T0 + BASE_WINDOW_MS;
        let feed = |k: &mut DeviceKpis, id: &str, values: &[(&str, f64)]| {
            k.take(KpiInput::Activity(Activity {
                device_id: id.into(),
                medium: Some(Medium::RiverWater),
                event_ms: end - 10,
                registered: true,
            }));
            for (metric, v) in values {
                k.take(KpiInput::Window(window(
                    id,
                    Kind::Environment,
                    metric,
                    end,
                    &[*v],
                )));
            }
        };
        // A river station the registry gives no class is held to level B.
        feed(
            &mut k,
            "river1",
            &[("nh4", 1.2), ("do", 5.0), ("temperature", 28.0)],
        );
        // One the registry holds to level A (a water plant's intake), with the parameters of
        // the worked VN_WQI in `water.rs`.
        let intake = DeviceMeta {
            water_class: Some(WaterClass::RiverA),
            ..meta(Kind::Environment, 300)
        };
        register(&mut k, "intake", intake);
        feed(&mut k, "intake", &water::WORKED_WQI);
        let water: Vec<WaterKpi> = close(&mut k, end)
            .into_iter()
            .filter_map(|kpi| match kpi {
                Kpi::Water(w) => Some(w),
                _ => None,
            })
            .collect();
        let row = |id: &str, p: &str| {
            water
                .iter()
                .find(|w| w.station_id == id && w.parameter == p)
                .unwrap_or_else(|| panic!("{id} {p}: {water:?}"))
        };
        let of = |id: &str| water.iter().filter(|w| w.station_id == id).count();
        // Temperature has no limit; two parameters are too few for a VN_WQI.
        assert_eq!(of("river1"), 2, "{water:?}");
        let nh4 = row("river1", "nh4");
        assert!(nh4.exceeded);
        assert_eq!(nh4.limit_max, Some(0.3));
        assert_eq!(nh4.standard, "QCVN 08:2023/BTNMT Bảng 2 mức B");
        assert!(!row("river1", "do").exceeded, "B asks DO ≥ 5");
        // At level A, BOD5 5 breaks ≤ 4 and DO 6.5 meets ≥ 6.
        assert!(row("intake", "bod5").exceeded);
        assert!(!row("intake", "do").exceeded);
        assert_eq!(
            row("intake", "do").standard,
            "QCVN 08:2023/BTNMT Bảng 2 mức A"
        );
        let wqi = row("intake", "vn_wqi");
        assert_eq!(wqi.value, 82.0);
        assert_eq!(wqi.limit_min, Some(51.0));
        assert!(!wqi.exceeded);
        assert_eq!(wqi.standard, "QĐ 1460/QĐ-TCMT VN_WQI");
        assert_eq!(
            of("intake"),
            6,
            "ph, do, bod5, cod, nh4 and vn_wqi: {water:?}"
        );
    }

    #[test]
    fn unregistered_devices_are_forgotten_after_a_day_of_silence() {
        let mut k = DeviceKpis::default();
        register(&mut k, "known", meta(Kind::Sensor, 60));
        for id in ["known", "stranger"] {
            k.take(KpiInput::Activity(Activity {
                device_id: id.into(),
                medium: None,
                event_ms: T0 + 1,
                registered: id == "known",
            }));
            k.take(KpiInput::Window(window(
                id,
                Kind::Sensor,
                "rainfall_mm",
                T0 + BASE_WINDOW_MS,
                &[1.0],
            )));
        }
        close(&mut k, T0 + BASE_WINDOW_MS);
        close(&mut k, T0 + HOUR_MS);
        assert!(k.rain.contains_key("stranger") && k.seen.contains_key(&Name::of("stranger")));
        close(&mut k, T0 + DAY_MS + HOUR_MS);
        assert!(!k.rain.contains_key("stranger") && !k.seen.contains_key(&Name::of("stranger")));
        assert!(k.rain.contains_key("known") && k.seen.contains_key(&Name::of("known")));
    }

    #[test]
    fn health_counts_readings_and_marks_silent_devices_offline() {
        let mut k = DeviceKpis::default();
        register(&mut k, "gauge", meta(Kind::Sensor, 60));
        register(&mut k, "never", meta(Kind::Sensor, 60));
        register(&mut k, "newcomer", meta(Kind::Sensor, 60));
        let health = |out: &[Kpi], id: &str| {
            out.iter()
                .find_map(|kpi| match kpi {
                    Kpi::Health(h) if h.entity_id == id => Some(h.clone()),
                    _ => None,
                })
                .unwrap()
        };
        // Window 1: 4 of 5 readings.
        for i in 0..4 {
            k.take(KpiInput::Activity(Activity {
                device_id: "gauge".into(),
                medium: None,
                event_ms: T0 + i * 60_000,
                registered: true,
            }));
        }
        // A device that starts reporting at 00:03 covers 3 minutes of the window (its first
        // report counts the minute before it): 2 of the 3 readings of that time are in.
        for at in [180_000, 240_000] {
            k.take(KpiInput::Activity(Activity {
                device_id: "newcomer".into(),
                medium: None,
                event_ms: T0 + at,
                registered: true,
            }));
        }
        let out = close(&mut k, T0 + BASE_WINDOW_MS);
        assert_eq!(
            (
                health(&out, "newcomer").readings,
                health(&out, "newcomer").expected
            ),
            (2, 3)
        );
        let g = health(&out, "gauge");
        assert_eq!((g.readings, g.expected), (4, 5));
        assert!((g.completeness_pct - 80.0).abs() < 1e-9);
        assert_eq!(g.status, Some(DeviceStatus::Online));
        assert_eq!(g.last_seen_ms, Some(T0 + 180_000));
        assert_eq!(health(&out, "never").status, Some(DeviceStatus::NeverSeen));
        // Silent afterwards: 3 × 60 s after 00:03 it is offline, so at 00:10 it is.
        let out = close(&mut k, T0 + 2 * BASE_WINDOW_MS);
        let g = health(&out, "gauge");
        assert_eq!(g.status, Some(DeviceStatus::Offline));
        assert_eq!(g.completeness_pct, 0.0);
        // Removed from the registry: no more health rows.
        k.take(KpiInput::Registry(
            "gauge".into(),
            meta(Kind::Sensor, 60),
            T0 + 2 * BASE_WINDOW_MS,
            -1,
        ));
        let out = close(&mut k, T0 + 3 * BASE_WINDOW_MS);
        assert!(out.iter().all(|kpi| kpi.entity_id() != "gauge"), "{out:?}");
    }
}
