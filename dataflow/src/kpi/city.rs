//! District, department and city KPIs: junction traffic summed per district, camera events
//! per type and district with violation rates, and device health per district, department
//! and the whole city. Computed on one worker from the per-device KPIs and the cameras' final
//! base windows, when a base window closes.

use std::collections::{BTreeMap, BTreeSet};

use ioc_schemas::{CameraKpi, Department, District, HealthKpi, Kind, Kpi, Scope, TrafficKpi};

use crate::kpi::device::{is_base_final, CameraWindow, BASE_WINDOW_MS};
use crate::kpi::traffic;

/// Camera event types that are traffic violations.
pub const VIOLATIONS: [&str; 3] = ["red_light_violation", "lane_violation", "wrong_way"];
/// Camera event types that observe a vehicle passing.
const VEHICLES_SEEN: [&str; 2] = ["plate_read", "vehicle_count"];
/// The entity id of city-wide rows.
pub const CITY_ID: &str = "da_nang";

/// One input of the city-level state.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum CityInput {
    /// A per-device KPI (junction traffic and device health are summed here).
    Device(#[serde(with = "crate::wire::kpi")] Kpi),
    /// A camera's final base-window result, with the part of the window it covered.
    Camera(CameraWindow),
}

impl CityInput {
    /// The device's KPI row, if it is one (not a camera's window).
    pub fn into_kpi(self) -> Option<Kpi> {
        match self {
            CityInput::Device(kpi) => Some(kpi),
            CityInput::Camera(_) => None,
        }
    }
}

/// What is gathered for one window end.
#[derive(Debug, Default)]
struct Gathered {
    traffic: Vec<TrafficKpi>,
    health: Vec<HealthKpi>,
    cameras: Vec<CameraWindow>,
}

/// City-level KPI state.
#[derive(Debug, Default)]
pub struct CityKpis {
    by_end: BTreeMap<u64, Gathered>,
}

impl CityKpis {
    /// Takes one input.
    pub fn take(&mut self, input: CityInput) {
        match input {
            CityInput::Device(Kpi::Traffic(t)) if t.scope == Scope::Device => {
                let end = t.window_start_ms + t.window_size_ms;
                self.by_end.entry(end).or_default().traffic.push(t);
            }
            CityInput::Device(Kpi::Health(h)) if h.scope == Scope::Device => {
                let end = h.window_start_ms + h.window_size_ms;
                self.by_end.entry(end).or_default().health.push(h);
            }
            CityInput::Device(_) => {}
            CityInput::Camera(c) => {
                let w = &c.window;
                if w.kind == Kind::CameraEvent && is_base_final(w) {
                    let end = w.window_start_ms + w.window_size_ms;
                    self.by_end.entry(end).or_default().cameras.push(c);
                }
            }
        }
    }

    /// Window ends with inputs gathered, earliest first.
    pub fn pending_ends(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_end.keys().copied()
    }

    /// The aggregates of the window ending at `end`, once all its inputs are in.
    pub fn close(&mut self, end: u64, out: &mut Vec<Kpi>) {
        let Some(g) = self.by_end.remove(&end) else {
            return;
        };
        let start = end - BASE_WINDOW_MS;
        district_traffic(&g.traffic, start, out);
        camera_events(&g.cameras, start, out);
        health_rollups(&g.health, start, out);
    }
}

fn district_traffic(rows: &[TrafficKpi], start: u64, out: &mut Vec<Kpi>) {
    let mut by_district: BTreeMap<District, Vec<&TrafficKpi>> = BTreeMap::new();
    for r in rows {
        by_district.entry(r.district).or_default().push(r);
    }
    for (district, rows) in by_district {
        let n = rows.len() as f64;
        let mean = |f: fn(&TrafficKpi) -> f64| rows.iter().map(|r| f(r)).sum::<f64>() / n;
        // Weighted by each junction's volume (equally when no vehicle passed anywhere).
        let volume: f64 = rows.iter().map(|r| r.volume_veh_h).sum();
        let weighted = |f: &dyn Fn(&TrafficKpi) -> f64| {
            if volume > 0.0 {
                rows.iter().map(|r| r.volume_veh_h * f(r)).sum::<f64>() / volume
            } else {
                rows.iter().map(|r| f(r)).sum::<f64>() / n
            }
        };
        let free_flow = |r: &TrafficKpi| r.free_flow_kmh.unwrap_or(traffic::DEFAULT_FREE_FLOW_KMH);
        let occupancy = mean(|r| r.occupancy_pct);
        let speed = weighted(&|r| r.mean_speed_kmh);
        // Each junction's speed against its own free-flow speed.
        let share_pct = weighted(&|r| {
            let ff = free_flow(r);
            if ff > 0.0 {
                r.mean_speed_kmh / ff * 100.0
            } else {
                0.0
            }
        });
        let level = traffic::congestion_of_share(share_pct, occupancy);
        let worst = rows.iter().map(|r| r.worst_level.unwrap_or(r.level)).max();
        out.push(Kpi::Traffic(TrafficKpi {
            scope: Scope::District,
            entity_id: district.slug().to_owned(),
            district,
            window_start_ms: start,
            window_size_ms: BASE_WINDOW_MS,
            junctions: rows.len() as u32,
            volume_veh_h: rows.iter().map(|r| r.volume_veh_h).sum(),
            occupancy_pct: occupancy,
            mean_speed_kmh: speed,
            queue_m: rows.iter().map(|r| r.queue_m).fold(0.0, f64::max),
            level,
            availability_pct: mean(|r| r.availability_pct),
            free_flow_kmh: Some(weighted(&free_flow)),
            worst_level: worst.map(|w| w.max(level)),
            covered_ms: rows
                .iter()
                .map(|r| r.covered_ms.unwrap_or(BASE_WINDOW_MS))
                .max(),
        }));
    }
}

/// Events of one type (or all violations) in a district, summed over its cameras.
#[derive(Default)]
struct EventCount<'a> {
    events: f64,
    /// Each camera's events per hour of the time it covered, summed: a camera that started
    /// part-way through the window counts at its own rate, not scaled down to the whole window.
    per_hour: f64,
    cameras: BTreeSet<&'a str>,
    covered_ms: u64,
}

impl<'a> EventCount<'a> {
    fn add(&mut self, camera: &'a str, events: f64, covered_ms: u64) {
        self.events += events;
        self.per_hour += events * 3_600_000.0 / covered_ms.max(1) as f64;
        self.cameras.insert(camera);
        self.covered_ms = self.covered_ms.max(covered_ms);
    }

    fn merge(&mut self, other: &EventCount<'a>) {
        self.events += other.events;
        self.per_hour += other.per_hour;
        self.cameras.extend(other.cameras.iter().copied());
        self.covered_ms = self.covered_ms.max(other.covered_ms);
    }

    fn kpi(
        &self,
        district: District,
        event_type: &str,
        start: u64,
        violations_per_100_vehicles: Option<f64>,
    ) -> Kpi {
        Kpi::Camera(CameraKpi {
            district,
            event_type: event_type.to_owned(),
            window_start_ms: start,
            window_size_ms: BASE_WINDOW_MS,
            events: self.events as u64,
            cameras: self.cameras.len() as u32,
            per_hour: self.per_hour,
            violations_per_100_vehicles,
            covered_ms: Some(self.covered_ms),
        })
    }
}

fn camera_events(windows: &[CameraWindow], start: u64, out: &mut Vec<Kpi>) {
    let mut counts: BTreeMap<(District, &str), EventCount> = BTreeMap::new();
    for CameraWindow {
        window: w,
        covered_ms,
    } in windows
    {
        counts
            .entry((w.district, w.metric.as_str()))
            .or_default()
            .add(&w.device_id, w.sum, *covered_ms);
    }
    // district → (violations, vehicles seen)
    let mut districts: BTreeMap<District, (EventCount, f64)> = BTreeMap::new();
    for ((district, event_type), count) in &counts {
        out.push(count.kpi(*district, event_type, start, None));
        let d = districts.entry(*district).or_default();
        if VIOLATIONS.contains(event_type) {
            d.0.merge(count);
        } else if VEHICLES_SEEN.contains(event_type) {
            d.1 += count.events;
        }
    }
    for (district, (violations, vehicles)) in districts {
        if violations.cameras.is_empty() {
            continue;
        }
        let per_100 = (vehicles > 0.0).then(|| violations.events * 100.0 / vehicles);
        out.push(violations.kpi(district, "violations", start, per_100));
    }
}

/// Health summed per district, per department and for the city.
fn health_rollups(rows: &[HealthKpi], start: u64, out: &mut Vec<Kpi>) {
    if rows.is_empty() {
        return;
    }
    let mut districts: BTreeMap<District, Vec<&HealthKpi>> = BTreeMap::new();
    let mut departments: BTreeMap<Department, Vec<&HealthKpi>> = BTreeMap::new();
    for r in rows {
        if let Some(d) = r.district {
            districts.entry(d).or_default().push(r);
        }
        if let Some(d) = r.department {
            departments.entry(d).or_default().push(r);
        }
    }
    let rollup = |scope, entity_id: &str, district, department, rows: &[&HealthKpi]| {
        let n = rows.len() as f64;
        Kpi::Health(HealthKpi {
            scope,
            entity_id: entity_id.to_owned(),
            district,
            department,
            window_start_ms: start,
            window_size_ms: BASE_WINDOW_MS,
            devices: rows.iter().map(|r| r.devices).sum(),
            online: rows.iter().map(|r| r.online).sum(),
            offline: rows.iter().map(|r| r.offline).sum(),
            readings: rows.iter().map(|r| r.readings).sum(),
            expected: rows.iter().map(|r| r.expected).sum(),
            // The mean of the devices' own completeness, each capped at 100 %.
            completeness_pct: rows.iter().map(|r| r.completeness_pct).sum::<f64>() / n,
            last_seen_ms: None,
            status: None,
        })
    };
    for (district, rows) in &districts {
        out.push(rollup(
            Scope::District,
            district.slug(),
            Some(*district),
            None,
            rows,
        ));
    }
    for (department, rows) in &departments {
        out.push(rollup(
            Scope::Department,
            department.slug(),
            None,
            Some(*department),
            rows,
        ));
    }
    let all: Vec<&HealthKpi> = rows.iter().collect();
    out.push(rollup(Scope::City, CITY_ID, None, None, &all));
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioc_schemas::{Congestion, DeviceStatus};

    const END: u64 = 1_795_824_000_000;

    fn junction(id: &str, district: District, volume: f64, speed: f64) -> Kpi {
        Kpi::Traffic(TrafficKpi {
            scope: Scope::Device,
            entity_id: id.into(),
            district,
            window_start_ms: END - BASE_WINDOW_MS,
            window_size_ms: BASE_WINDOW_MS,
            junctions: 1,
            volume_veh_h: volume,
            occupancy_pct: 30.0,
            mean_speed_kmh: speed,
            queue_m: volume / 100.0,
            level: traffic::congestion(speed, 30.0, 50.0),
            availability_pct: 100.0,
            free_flow_kmh: None,
            worst_level: None,
            covered_ms: Some(BASE_WINDOW_MS),
        })
    }

    /// A camera's whole window.
    fn camera(id: &str, event_type: &str, events: f64) -> CameraWindow {
        camera_covering(id, event_type, events, BASE_WINDOW_MS)
    }

    fn camera_covering(id: &str, event_type: &str, events: f64, covered_ms: u64) -> CameraWindow {
        let window = ioc_schemas::WindowResult {
            kind: Kind::CameraEvent,
            district: District::ThanhKhe,
            device_id: id.into(),
            metric: event_type.into(),
            window_start_ms: END - BASE_WINDOW_MS,
            window_size_ms: BASE_WINDOW_MS,
            count: events as u64,
            sum: events,
            min: 1.0,
            max: 1.0,
            mean: 1.0,
            emitted_at_ms: END,
            version: 1,
            is_final: true,
        };
        CameraWindow { window, covered_ms }
    }

    fn health(id: &str, district: District, department: Department, online: bool, pct: f64) -> Kpi {
        Kpi::Health(HealthKpi {
            scope: Scope::Device,
            entity_id: id.into(),
            district: Some(district),
            department: Some(department),
            window_start_ms: END - BASE_WINDOW_MS,
            window_size_ms: BASE_WINDOW_MS,
            devices: 1,
            online: u32::from(online),
            offline: u32::from(!online),
            readings: 4,
            expected: 5,
            completeness_pct: pct,
            last_seen_ms: Some(END - 1),
            status: Some(if online {
                DeviceStatus::Online
            } else {
                DeviceStatus::Offline
            }),
        })
    }

    fn close(city: &mut CityKpis) -> Vec<Kpi> {
        let mut out = Vec::new();
        city.close(END, &mut out);
        out
    }

    /// The camera row of `event_type` among `out`.
    fn camera_row(out: &[Kpi], event_type: &str) -> CameraKpi {
        out.iter()
            .find_map(|k| match k {
                Kpi::Camera(c) if c.event_type == event_type => Some(c.clone()),
                _ => None,
            })
            .expect("a camera row")
    }

    /// The district traffic row of `slug` among `out`.
    fn district_row<'a>(out: &'a [Kpi], slug: &str) -> &'a TrafficKpi {
        out.iter()
            .find_map(|k| match k {
                Kpi::Traffic(t) if t.entity_id == slug => Some(t),
                _ => None,
            })
            .expect("a district traffic row")
    }

    #[test]
    fn district_traffic_sums_volume_and_averages_speed() {
        let mut city = CityKpis::default();
        city.take(CityInput::Device(junction(
            "a",
            District::HaiChau,
            1200.0,
            30.0,
        )));
        city.take(CityInput::Device(junction(
            "b",
            District::HaiChau,
            600.0,
            10.0,
        )));
        city.take(CityInput::Device(junction(
            "c",
            District::CamLe,
            300.0,
            45.0,
        )));
        let out = close(&mut city);
        let hai_chau = district_row(&out, "hai_chau");
        assert_eq!(hai_chau.junctions, 2);
        assert_eq!(hai_chau.volume_veh_h, 1800.0);
        // Weighted by volume: (1200 × 30 + 600 × 10) / 1800 = 23.3 km/h, 46.7 % of the default
        // 50 km/h: level D.
        assert!((hai_chau.mean_speed_kmh - 23.333_333).abs() < 1e-5);
        assert_eq!(hai_chau.level, Congestion::D);
        assert_eq!(hai_chau.queue_m, 12.0);
        assert_eq!(hai_chau.covered_ms, Some(BASE_WINDOW_MS));
    }

    /// A district's window is partial only when none of its junctions covered all of it.
    #[test]
    fn a_district_window_covers_the_longest_of_its_junctions() {
        let covering = |id: &str, covered_ms: u64| {
            let mut k = junction(id, District::NguHanhSon, 600.0, 30.0);
            if let Kpi::Traffic(t) = &mut k {
                t.covered_ms = Some(covered_ms);
            }
            k
        };
        let mut city = CityKpis::default();
        city.take(CityInput::Device(covering("a", 220_000)));
        city.take(CityInput::Device(covering("b", 180_000)));
        let out = close(&mut city);
        assert_eq!(district_row(&out, "ngu_hanh_son").covered_ms, Some(220_000));
        let mut city = CityKpis::default();
        city.take(CityInput::Device(covering("a", 220_000)));
        city.take(CityInput::Device(covering("c", BASE_WINDOW_MS)));
        let out = close(&mut city);
        assert_eq!(
            district_row(&out, "ngu_hanh_son").covered_ms,
            Some(BASE_WINDOW_MS)
        );
    }

    #[test]
    fn the_district_grade_uses_each_junctions_own_free_flow_speed() {
        let with = |id: &str, volume: f64, speed: f64, free_flow: f64, worst: Congestion| {
            let mut k = junction(id, District::SonTra, volume, speed);
            if let Kpi::Traffic(t) = &mut k {
                t.free_flow_kmh = Some(free_flow);
                t.worst_level = Some(worst);
            }
            k
        };
        let mut city = CityKpis::default();
        // A boulevard at 36 of its 60 km/h (60 %) and a lane at 18 of its 30 (60 %): C. Judged
        // against 50 km/h, the mean speed (27) would be 54 %, and the lane alone 36 % (E).
        city.take(CityInput::Device(with(
            "a",
            900.0,
            36.0,
            60.0,
            Congestion::C,
        )));
        city.take(CityInput::Device(with(
            "b",
            900.0,
            18.0,
            30.0,
            Congestion::F,
        )));
        let out = close(&mut city);
        let son_tra = district_row(&out, "son_tra");
        assert_eq!(son_tra.level, Congestion::C);
        assert_eq!(son_tra.free_flow_kmh, Some(45.0));
        // The lane's jammed approach shows as the district's worst.
        assert_eq!(son_tra.worst_level, Some(Congestion::F));
    }

    #[test]
    fn camera_events_per_type_and_the_violation_rate() {
        let mut city = CityKpis::default();
        city.take(CityInput::Camera(camera("c1", "plate_read", 150.0)));
        city.take(CityInput::Camera(camera("c2", "plate_read", 50.0)));
        city.take(CityInput::Camera(camera("c1", "red_light_violation", 3.0)));
        city.take(CityInput::Camera(camera("c2", "wrong_way", 1.0)));
        let out = close(&mut city);
        let row = |t: &str| camera_row(&out, t);
        let plates = row("plate_read");
        assert_eq!((plates.events, plates.cameras), (200, 2));
        assert_eq!(plates.per_hour, 2400.0);
        // 4 violations among 200 vehicles seen: 2 per 100; 48 per hour.
        let v = row("violations");
        assert_eq!(v.events, 4);
        assert_eq!(v.per_hour, 48.0);
        assert_eq!(v.violations_per_100_vehicles, Some(2.0));
        assert_eq!(v.covered_ms, Some(BASE_WINDOW_MS));
    }

    /// A run that starts 100 s before a window ends: each camera's events count per the time
    /// it covered, and the rows say how much that was.
    #[test]
    fn a_partial_window_counts_each_camera_per_the_time_it_covered() {
        let mut city = CityKpis::default();
        // 10 plates in 100 s is 360 an hour; 30 in the whole 300 s is 360 too.
        city.take(CityInput::Camera(camera_covering(
            "c1",
            "plate_read",
            10.0,
            100_000,
        )));
        city.take(CityInput::Camera(camera("c2", "plate_read", 30.0)));
        city.take(CityInput::Camera(camera_covering(
            "c3", "accident", 1.0, 120_000,
        )));
        let out = close(&mut city);
        let row = |t: &str| camera_row(&out, t);
        let plates = row("plate_read");
        assert_eq!(plates.events, 40);
        assert!(
            (plates.per_hour - 720.0).abs() < 1e-9,
            "{}",
            plates.per_hour
        );
        assert_eq!(plates.covered_ms, Some(BASE_WINDOW_MS));
        let accidents = row("accident");
        assert!((accidents.per_hour - 30.0).abs() < 1e-9);
        assert_eq!(accidents.covered_ms, Some(120_000));
    }

    #[test]
    fn health_rolls_up_by_district_department_and_city() {
        let mut city = CityKpis::default();
        city.take(CityInput::Device(health(
            "a",
            District::HaiChau,
            Department::Transport,
            true,
            100.0,
        )));
        city.take(CityInput::Device(health(
            "b",
            District::HaiChau,
            Department::Environment,
            false,
            0.0,
        )));
        city.take(CityInput::Device(health(
            "c",
            District::SonTra,
            Department::Transport,
            true,
            80.0,
        )));
        let out = close(&mut city);
        let row = |scope: Scope, id: &str| {
            out.iter()
                .find_map(|k| match k {
                    Kpi::Health(h) if h.scope == scope && h.entity_id == id => Some(h.clone()),
                    _ => None,
                })
                .unwrap()
        };
        let hc = row(Scope::District, "hai_chau");
        assert_eq!((hc.devices, hc.online, hc.offline), (2, 1, 1));
        assert_eq!(hc.completeness_pct, 50.0);
        let transport = row(Scope::Department, "transport");
        assert_eq!((transport.devices, transport.online), (2, 2));
        assert_eq!(transport.completeness_pct, 90.0);
        let all = row(Scope::City, CITY_ID);
        assert_eq!(
            (all.devices, all.offline, all.readings, all.expected),
            (3, 1, 12, 15)
        );
    }

    #[test]
    fn device_rows_of_every_family_survive_bincode() {
        for row in crate::wire::tests::one_of_each() {
            let city = CityInput::Device(row);
            let bytes = bincode::serialize(&city).expect("serializes");
            let back: CityInput = bincode::deserialize(&bytes).expect("reads");
            assert_eq!(back, city);
        }
    }
}
