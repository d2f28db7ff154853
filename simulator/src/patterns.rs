//! Daily patterns and the bodies each kind of device reports.
//!
//! Everything follows local time in Da Nang (UTC+7): rush hours 7:00–8:30 and 16:30–18:30
//! raise traffic volume, occupancy and queues and lower speeds (the busiest junctions reach
//! level of service E/F); nights are quiet; PM2.5 rises with rush-hour traffic and with the
//! night-time inversion; ozone follows the sun; rain and water levels are mostly calm; bridge
//! wind blows with gusts. The lakes and the lower Phú Lộc river often break QCVN 08-MT:2015
//! B1 (NH4 over 0.9 mg/L, DO under 4 mg/L); Tiên Sa port's turbid water now and then breaks
//! QCVN 10-MT:2015 (TSS over 50 mg/L). Cameras detect a crowd only a few times a day over the
//! whole fleet, mostly in the evening. Scripted episodes ([`Effect`]) override the patterns.

use std::collections::BTreeMap;

use ioc_schemas::{
    Approach, Body, CameraEventBody, CameraEventType, ControlMode, EnvironmentBody, Medium,
    SensorBody, SignalState, TrafficSignalBody,
};

use crate::episodes::Effect;
use crate::fleet::{DeviceRole, RiverGauge, SimDevice, BRIDGE_METRICS};
use crate::rng::Rng;

const UTC_OFFSET_S: u64 = 7 * 3600;

/// Local hour of day in Da Nang, 0 ≤ h < 24.
pub(crate) fn local_hour(ms: u64) -> f64 {
    ((ms / 1000 + UTC_OFFSET_S) % 86_400) as f64 / 3600.0 + (ms % 1000) as f64 / 3.6e6
}

fn smoothstep(lo: f64, hi: f64, x: f64) -> f64 {
    let t = ((x - lo) / (hi - lo)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// 0 outside [a, d], 1 on [b, c], smooth ramps between.
fn plateau(h: f64, a: f64, b: f64, c: f64, d: f64) -> f64 {
    smoothstep(a, b, h) * (1.0 - smoothstep(c, d, h))
}

/// How strongly the rush hours are on: 1 at 7:00–8:30 and 16:30–18:30.
pub(crate) fn rush(h: f64) -> f64 {
    plateau(h, 6.3, 7.0, 8.5, 9.2).max(plateau(h, 15.8, 16.5, 18.5, 19.3))
}

/// Traffic relative to the rush-hour peak: about 0.06 at 3 am, 0.55 by day, 1 in rush hours.
pub(crate) fn traffic_level(h: f64) -> f64 {
    let day = plateau(h, 5.0, 7.0, 21.0, 23.5);
    0.06 + 0.5 * day + 0.44 * rush(h)
}

/// The night-time inversion that traps pollutants near the ground: 1 from 22:00 to 5:00.
fn inversion(h: f64) -> f64 {
    smoothstep(20.0, 22.0, h).max(1.0 - smoothstep(5.0, 7.5, h))
}

/// Sunlight, 0 at night, 1 at noon.
fn sun(h: f64) -> f64 {
    ((h - 6.0) / 12.0 * std::f64::consts::PI).sin().max(0.0)
}

/// Air temperature, °C: 24–31 with the peak mid-afternoon.
fn air_temperature(h: f64) -> f64 {
    27.5 + 3.5 * ((h - 9.0) / 24.0 * std::f64::consts::TAU).sin()
}

fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The state a device carries from one reading to the next.
#[derive(Debug, Clone)]
pub(crate) struct DeviceState {
    /// A slow AR(1) noise, about unit variance.
    pub(crate) noise: f64,
    /// Rain intensity in mm/h, 0 when dry (rain gauges).
    pub(crate) rain_mm_h: f64,
    /// Wind direction in degrees (bridges).
    pub(crate) wind_dir: f64,
    /// Which metric is next (bridges) or the signal cycle position (junctions).
    pub(crate) cursor: u32,
    /// How busy or polluted this site is relative to its peers.
    pub(crate) factor: f64,
    /// A fixed phase for tides and offsets.
    pub(crate) phase: f64,
    /// When a camera last reported an episode's crowd, epoch ms.
    pub(crate) last_crowd_ms: Option<u64>,
}

impl DeviceState {
    pub(crate) fn new(rng: &mut Rng, device: &SimDevice) -> DeviceState {
        let factor = match (&device.role, device.id.as_str()) {
            (DeviceRole::AirStation, "aq-forest_office") => 0.45,
            (DeviceRole::AirStation, "aq-hoa_vang") => 0.7,
            (DeviceRole::AirStation, "aq-pham_hung_ql1a" | "aq-lien_chieu") => 1.45,
            (DeviceRole::AirStation, _) => rng.range(0.9, 1.15),
            _ => rng.range(0.7, 1.3),
        };
        // Start a gauge in a shower as often as one is in a shower on average.
        let wet_share = SHOWER_MEAN_S / (SHOWER_MEAN_S + DRY_MEAN_S);
        let rain_mm_h = if device.role == DeviceRole::RainGauge && rng.chance(wet_share) {
            rng.exp(6.0).clamp(0.5, 60.0)
        } else {
            0.0
        };
        DeviceState {
            noise: rng.normal(),
            rain_mm_h,
            wind_dir: rng.range(30.0, 90.0),
            cursor: 0,
            factor,
            phase: rng.range(0.0, std::f64::consts::TAU),
            last_crowd_ms: None,
        }
    }

    fn step_noise(&mut self, rng: &mut Rng) -> f64 {
        self.noise = 0.95 * self.noise + 0.31 * rng.normal();
        self.noise
    }
}

/// What a device reports at event time `t_ms`, `dt_s` seconds after its previous report,
/// with what the episodes do to it then.
pub(crate) fn make_body(
    rng: &mut Rng,
    device: &SimDevice,
    state: &mut DeviceState,
    t_ms: u64,
    dt_s: f64,
    message_id: &str,
    effect: &Effect,
) -> Body {
    let h = local_hour(t_ms);
    match &device.role {
        DeviceRole::Junction {
            adaptive,
            approaches,
        } => Body::TrafficSignal(junction(
            rng,
            device,
            state,
            (h, dt_s),
            *adaptive,
            *approaches,
            effect,
        )),
        DeviceRole::TrafficCamera | DeviceRole::HarbourCamera => {
            if let Some(people) = effect.crowd {
                // In a crowd the camera's analytics report it, then again once a minute.
                let due = state
                    .last_crowd_ms
                    .is_none_or(|last| t_ms >= last.saturating_add(CROWD_REPORT_EVERY_MS));
                if due {
                    state.last_crowd_ms = Some(t_ms);
                    let count = (people * rng.range(0.85, 1.15)).round().max(2.0) as u32;
                    return Body::CameraEvent(crowd(rng, device, count, message_id));
                }
            }
            Body::CameraEvent(if device.role == DeviceRole::TrafficCamera {
                traffic_camera(rng, device, state, h, dt_s, message_id)
            } else {
                harbour_camera(rng, device, h, dt_s, message_id)
            })
        }
        DeviceRole::AirStation => Body::Environment(air(rng, device, state, h, effect)),
        DeviceRole::WaterStation { medium } => {
            Body::Environment(water(rng, device, state, h, *medium))
        }
        DeviceRole::Bridge { .. } => Body::Sensor(bridge(rng, state, h)),
        DeviceRole::RainGauge => Body::Sensor(rain(rng, state, dt_s, effect)),
        DeviceRole::FloodGauge => Body::Sensor(flood(rng, state, t_ms, effect)),
        DeviceRole::RiverGauge(g) => Body::Sensor(river(rng, state, t_ms, effect, g)),
    }
}

const APPROACH_NAMES: [&str; 4] = ["north", "east", "south", "west"];
/// Vehicles per hour an approach carries at the rush-hour peak (mixed traffic, mostly
/// motorbikes).
const APPROACH_PEAK_VPH: f64 = 1500.0;

fn junction(
    rng: &mut Rng,
    device: &SimDevice,
    state: &mut DeviceState,
    (h, dt_s): (f64, f64),
    adaptive: bool,
    n: u8,
    effect: &Effect,
) -> TrafficSignalBody {
    let level = traffic_level(h) * state.factor;
    let approaches = APPROACH_NAMES
        .iter()
        .take(usize::from(n))
        .enumerate()
        .map(|(j, name)| {
            // North–south carries the main road.
            let main = if j % 2 == 0 { 1.2 } else { 0.7 };
            let (vehicles, occupancy, speed, queue) = if let Some(jam_kmh) = effect.jam_kmh {
                // Stop-and-go: little gets through, the detectors are nearly always covered.
                let vehicles = rng.poisson(0.45 * APPROACH_PEAK_VPH * dt_s / 3600.0);
                let occupancy = (88.0 + 3.0 * rng.normal()).clamp(81.0, 99.0);
                let speed = (jam_kmh * (1.0 + 0.12 * rng.normal())).clamp(2.0, 120.0);
                let queue = (250.0 + 200.0 * main + 60.0 * rng.normal()).clamp(150.0, 5000.0);
                (vehicles, occupancy, speed, queue)
            } else {
                let x = (level * main * (1.0 + 0.08 * rng.normal())).clamp(0.0, 1.5);
                let vehicles = rng.poisson(x * APPROACH_PEAK_VPH * dt_s / 3600.0);
                let occupancy = (3.0 + 55.0 * x * x + 2.0 * rng.normal()).clamp(0.0, 100.0);
                let speed =
                    (48.0 * (1.0 - 0.5 * x.powf(1.5)) + 2.5 * rng.normal()).clamp(3.0, 120.0);
                let queue = (160.0 * x * x * x + 8.0 * rng.normal().abs()).clamp(0.0, 5000.0);
                (vehicles, occupancy, speed, queue)
            };
            Approach {
                approach: (*name).to_owned(),
                vehicles,
                occupancy_pct: r2(occupancy),
                mean_speed_kmh: r2(speed),
                queue_length_m: r2(queue),
            }
        })
        .collect();
    // The cycle position moves on by a pseudo-random amount each report.
    state.cursor = state.cursor.wrapping_add(1 + rng.below(7) as u32);
    let fault = rng.chance(0.002);
    let state_now = if let Some((shown, _)) = &effect.fault {
        *shown
    } else if fault {
        SignalState::Flashing
    } else {
        match state.cursor % 20 {
            0..=8 => SignalState::Green,
            9 | 10 => SignalState::Amber,
            _ => SignalState::Red,
        }
    };
    let fault_code = match &effect.fault {
        Some((_, code)) => Some(code.clone()),
        None => fault.then(|| {
            ["detector_fault", "lamp_failure", "comm_loss"][rng.below(3) as usize].to_owned()
        }),
    };
    let mode = if adaptive {
        ControlMode::Adaptive
    } else if rush(h) > 0.5 && rng.chance(0.02) {
        // Traffic police take over a congested junction now and then.
        ControlMode::Manual
    } else {
        ControlMode::Fixed
    };
    TrafficSignalBody {
        junction_id: device.id.clone(),
        state: state_now,
        mode,
        fault_code,
        approaches,
    }
}

/// Picks an index by weight.
fn pick(rng: &mut Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.f64() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len().saturating_sub(1)
}

/// A Vietnamese number plate, mostly Da Nang's (43).
fn plate(rng: &mut Rng) -> String {
    const SERIES: &[u8] = b"ABCDEFGHKL";
    let province = ["43", "43", "43", "43", "92", "75", "76"][rng.below(7) as usize];
    let series = char::from(SERIES[rng.below(SERIES.len() as u64) as usize]);
    let n = rng.below(100_000);
    if rng.chance(0.7) {
        // Motorbike.
        format!(
            "{province}-{series}{} {:03}.{:02}",
            1 + rng.below(9),
            n / 100,
            n % 100
        )
    } else {
        format!("{province}{series}-{:03}.{:02}", n / 100, n % 100)
    }
}

fn media_url(device: &SimDevice, message_id: &str) -> String {
    format!(
        "https://media.ioc.danang.gov.vn/snap/{}/{message_id}.jpg",
        device.id
    )
}

/// Crowds a camera detects outside the episodes, per camera and day: about three a day over
/// the 200 traffic cameras (most in the evening, see [`traffic_crowd_weight`]) and one over
/// the 34 harbour cameras. The `crowd_gathering` alert rule opens an alert for each.
const TRAFFIC_CROWDS_PER_CAMERA_DAY: f64 = 0.015;
const HARBOUR_CROWDS_PER_CAMERA_DAY: f64 = 0.03;
/// A camera in an episode's crowd reports it again at its first event this long after its
/// previous report, ms (well within the alert rule's 15 minutes before it clears).
pub(crate) const CROWD_REPORT_EVERY_MS: u64 = 60_000;

/// How much likelier a traffic camera sees a crowd at local hour `h` than on average over the
/// day: 0.5 by day and night, 3.5 on evenings out (19:30–22:00).
pub(crate) fn traffic_crowd_weight(h: f64) -> f64 {
    0.5 + 3.0 * plateau(h, 18.0, 19.5, 22.0, 23.5)
}

/// The chance that a camera's event `dt_s` seconds after its previous one is a crowd
/// detection, outside the episodes, at local hour `h`.
pub(crate) fn crowd_chance(role: &DeviceRole, h: f64, dt_s: f64) -> f64 {
    let per_day = match role {
        DeviceRole::TrafficCamera => TRAFFIC_CROWDS_PER_CAMERA_DAY * traffic_crowd_weight(h),
        DeviceRole::HarbourCamera => HARBOUR_CROWDS_PER_CAMERA_DAY,
        _ => 0.0,
    };
    (per_day * dt_s / 86_400.0).clamp(0.0, 1.0)
}

/// A crowd detection of `count` people.
fn crowd(rng: &mut Rng, device: &SimDevice, count: u32, message_id: &str) -> CameraEventBody {
    CameraEventBody {
        camera_id: device.id.clone(),
        event_type: CameraEventType::CrowdGathering,
        confidence: r2(rng.range(0.75, 0.97)),
        plate: None,
        lane: None,
        count: Some(count),
        media_url: Some(media_url(device, message_id)),
    }
}

/// A crowd detection outside any episode, at the rare rate of [`crowd_chance`].
fn stray_crowd(
    rng: &mut Rng,
    device: &SimDevice,
    h: f64,
    dt_s: f64,
    message_id: &str,
) -> Option<CameraEventBody> {
    rng.chance(crowd_chance(&device.role, h, dt_s)).then(|| {
        let people = 15 + rng.poisson(25.0);
        crowd(rng, device, people, message_id)
    })
}

fn traffic_camera(
    rng: &mut Rng,
    device: &SimDevice,
    state: &DeviceState,
    h: f64,
    dt_s: f64,
    message_id: &str,
) -> CameraEventBody {
    use CameraEventType as E;
    if let Some(body) = stray_crowd(rng, device, h, dt_s, message_id) {
        return body;
    }
    let level = traffic_level(h) * state.factor;
    let day = plateau(h, 6.0, 8.0, 20.0, 22.0);
    let kinds = [
        (E::VehicleCount, 0.35),
        (E::PlateRead, 0.40),
        (E::RedLightViolation, 0.04 * (0.5 + level)),
        (E::LaneViolation, 0.05 * (0.5 + level)),
        (E::WrongWay, 0.008),
        (E::IllegalParking, 0.01 + 0.03 * day),
        (E::SidewalkEncroachment, 0.005 + 0.03 * day),
        (E::Accident, 0.0005 + 0.002 * level),
    ];
    let weights: Vec<f64> = kinds.iter().map(|k| k.1).collect();
    let event_type = kinds[pick(rng, &weights)].0;
    let mut body = CameraEventBody {
        camera_id: device.id.clone(),
        event_type,
        confidence: r2(rng.range(0.72, 0.99)),
        plate: None,
        lane: None,
        count: None,
        media_url: None,
    };
    match event_type {
        E::VehicleCount => {
            // Vehicles past the camera since its previous event.
            body.count = Some(rng.poisson(level * 2.0 * APPROACH_PEAK_VPH * dt_s / 3600.0));
            body.confidence = r2(rng.range(0.9, 0.99));
        }
        E::PlateRead => {
            body.plate = Some(plate(rng));
            body.lane = Some(1 + rng.below(4) as u8);
        }
        E::RedLightViolation | E::LaneViolation | E::WrongWay | E::IllegalParking => {
            body.plate = Some(plate(rng));
            body.lane = Some(1 + rng.below(4) as u8);
            body.media_url = Some(media_url(device, message_id));
        }
        _ => body.media_url = Some(media_url(device, message_id)),
    }
    body
}

fn harbour_camera(
    rng: &mut Rng,
    device: &SimDevice,
    h: f64,
    dt_s: f64,
    message_id: &str,
) -> CameraEventBody {
    use CameraEventType as E;
    if let Some(body) = stray_crowd(rng, device, h, dt_s, message_id) {
        return body;
    }
    // Fishing boats come home in the early morning and go out in the afternoon.
    let back = 0.2 + plateau(h, 3.0, 4.5, 8.0, 10.0);
    let out = 0.2 + plateau(h, 13.0, 14.5, 18.0, 19.5);
    let kinds = [
        (E::BoatIn, back),
        (E::BoatOut, out),
        (E::IllegalParking, 0.015),
        (E::Accident, 0.001),
    ];
    let weights: Vec<f64> = kinds.iter().map(|k| k.1).collect();
    let event_type = kinds[pick(rng, &weights)].0;
    let boats = matches!(event_type, E::BoatIn | E::BoatOut);
    CameraEventBody {
        camera_id: device.id.clone(),
        event_type,
        confidence: r2(rng.range(0.7, 0.98)),
        plate: boats.then(|| format!("ĐNa-{:05}-TS", 90_000 + rng.below(10_000))),
        lane: None,
        count: boats.then(|| 1 + u32::from(rng.chance(0.15))),
        media_url: (!boats).then(|| media_url(device, message_id)),
    }
}

fn air(
    rng: &mut Rng,
    device: &SimDevice,
    state: &mut DeviceState,
    h: f64,
    effect: &Effect,
) -> EnvironmentBody {
    let n = state.step_noise(rng);
    let site = state.factor;
    let traffic = traffic_level(h);
    let wobble = (0.22 * n).exp();
    let normal = site * (12.0 + 18.0 * rush(h) + 12.0 * inversion(h)) * wobble;
    // A pollution episode blends the normal level into its peak (about ±20 %).
    let pm25 = match effect.pollution {
        Some((on, peak)) => normal * (1.0 - on) + on * peak * (0.12 * n).exp(),
        None => normal,
    };
    let pm10 = pm25 * rng.range(1.5, 1.9);
    let no2 = site * (10.0 + 38.0 * traffic) * wobble;
    let o3 = (22.0 + 75.0 * sun(h)) * (0.12 * rng.normal()).exp();
    let so2 = site * rng.range(4.0, 11.0);
    let co = site * (350.0 + 950.0 * traffic) * wobble;
    let m = [
        ("pm25", pm25),
        ("pm10", pm10),
        ("no2", no2),
        ("o3", o3),
        ("so2", so2),
        ("co", co),
    ];
    EnvironmentBody {
        units: Default::default(),
        station_id: device.id.clone(),
        medium: Medium::Air,
        measurements: m
            .into_iter()
            .map(|(k, v)| (k.to_owned(), r2(v.max(0.0))))
            .collect(),
    }
}

fn water(
    rng: &mut Rng,
    device: &SimDevice,
    state: &mut DeviceState,
    h: f64,
    medium: Medium,
) -> EnvironmentBody {
    let n = state.step_noise(rng);
    let mut g = |mean: f64, sd: f64| mean + sd * (0.6 * n + 0.8 * rng.normal());
    let temperature = 26.5 + 0.4 * (air_temperature(h) - 27.5);
    // Photosynthesis: dissolved oxygen is highest in the afternoon, lowest at dawn.
    let do_day = 0.4 * (sun(h) - 0.4);
    // The lower Phú Lộc takes untreated sewage (against QCVN 08:2023 level C: NH4 ≤ 0.3,
    // DO ≥ 4, BOD5 ≤ 10, COD ≤ 20 mg/L); Tiên Sa port's water is stirred up by ships (the
    // coastal zone of QCVN 10:2023: TSS ≤ 50 mg/L). The Vu Gia and Túy Loan, which feed the
    // water plants, are clean enough for level A most of the time.
    let sewage = device.id == "wq-phu_loc_lower";
    let port = device.id == "wq-tien_sa";
    let intake = matches!(device.id.as_str(), "wq-vu_gia_thu_bon" | "wq-tuy_loan");
    let mut m: BTreeMap<String, f64> = BTreeMap::new();
    let mut put = |k: &str, v: f64| {
        m.insert(k.to_owned(), r2(v));
    };
    match medium {
        Medium::SeaWater => {
            put("ph", g(8.1, 0.08).clamp(0.0, 14.0));
            put("do", (g(6.4, 0.35) + do_day).max(0.1));
            if port {
                put("tss", g(36.0, 12.0).max(0.5));
                put("nh4", g(0.06, 0.015).max(0.0));
            } else {
                put("tss", g(14.0, 4.0).max(0.5));
                put("nh4", g(0.04, 0.012).max(0.0));
            }
            put("salinity", g(32.0, 0.8).max(0.0));
            put("temperature", g(temperature + 0.5, 0.3));
        }
        Medium::RiverWater if sewage => {
            put("ph", g(7.0, 0.2).clamp(0.0, 14.0));
            put("do", (g(4.3, 0.6) + do_day).max(0.1));
            put("cod", g(26.0, 6.0).max(0.5));
            put("bod5", g(12.0, 3.0).max(0.2));
            put("tss", g(40.0, 12.0).max(0.5));
            put("nh4", g(1.0, 0.3).max(0.0));
            put("turbidity", g(30.0, 8.0).max(0.5));
            put("temperature", g(temperature, 0.3));
        }
        Medium::RiverWater if intake => {
            put("ph", g(7.2, 0.15).clamp(0.0, 14.0));
            put("do", (g(7.0, 0.3) + do_day).max(0.1));
            put("cod", g(7.0, 1.2).max(0.5));
            put("bod5", g(2.8, 0.5).max(0.2));
            put("tss", g(16.0, 3.0).max(0.5));
            put("nh4", g(0.12, 0.04).max(0.0));
            put("turbidity", g(12.0, 4.0).max(0.5));
            put("temperature", g(temperature - 0.5, 0.3));
        }
        Medium::RiverWater => {
            put("ph", g(7.1, 0.2).clamp(0.0, 14.0));
            put("do", (g(6.0, 0.3) + do_day).max(0.1));
            put("cod", g(11.0, 1.5).max(0.5));
            put("bod5", g(4.5, 0.6).max(0.2));
            put("tss", g(35.0, 12.0).max(0.5));
            put("nh4", g(0.18, 0.04).max(0.0));
            put("turbidity", g(25.0, 8.0).max(0.5));
            put("temperature", g(temperature, 0.3));
        }
        Medium::SurfaceWater => {
            put("ph", g(7.3, 0.3).clamp(0.0, 14.0));
            put("do", (g(4.8, 0.7) + do_day).max(0.1));
            put("cod", g(20.0, 5.0).max(0.5));
            put("bod5", g(9.0, 3.0).max(0.2));
            put("tss", g(25.0, 8.0).max(0.5));
            put("nh4", g(0.8, 0.3).max(0.0));
            put("turbidity", g(18.0, 6.0).max(0.5));
            put("temperature", g(temperature + 1.0, 0.4));
        }
        Medium::WasteWater | Medium::Air => {
            put("ph", g(7.2, 0.3).clamp(0.0, 14.0));
            put("cod", g(70.0, 20.0).max(1.0));
            put("bod5", g(35.0, 10.0).max(1.0));
            put("tss", g(45.0, 15.0).max(1.0));
            put("nh4", g(12.0, 4.0).max(0.0));
            put("temperature", g(29.0, 1.0));
        }
    }
    EnvironmentBody {
        units: Default::default(),
        station_id: device.id.clone(),
        medium,
        measurements: m,
    }
}

fn sensor(metric: &str, value: f64, unit: &str) -> SensorBody {
    SensorBody {
        metric: metric.to_owned(),
        value: r2(value),
        unit: unit.to_owned(),
    }
}

fn bridge(rng: &mut Rng, state: &mut DeviceState, h: f64) -> SensorBody {
    let metric = state.cursor % BRIDGE_METRICS;
    state.cursor = state.cursor.wrapping_add(1);
    match metric {
        0 => {
            let strain = 70.0 + 170.0 * traffic_level(h) * state.factor + 20.0 * rng.normal();
            sensor("strain_ue", strain, "µε")
        }
        1 => {
            // Sea breeze by day; gusts now and then.
            let n = state.step_noise(rng);
            let mean = 3.5 + 2.0 * sun(h) + 1.2 * n;
            let gust = if rng.chance(0.06) {
                rng.range(1.6, 2.6)
            } else {
                1.0
            };
            sensor("wind_speed_ms", (mean * gust).max(0.0), "m/s")
        }
        2 => {
            state.wind_dir = (state.wind_dir + 8.0 * rng.normal()).rem_euclid(360.0);
            sensor("wind_direction_deg", state.wind_dir.min(359.99), "deg")
        }
        3 => sensor(
            "temperature_c",
            air_temperature(h) + 0.4 * rng.normal(),
            "°C",
        ),
        _ => {
            let humidity = 80.0 - 3.0 * (air_temperature(h) - 27.5) + 3.0 * rng.normal();
            sensor("humidity_pct", humidity.clamp(30.0, 100.0), "%")
        }
    }
}

/// Mean dry spell and shower length, seconds.
const DRY_MEAN_S: f64 = 10.0 * 3600.0;
const SHOWER_MEAN_S: f64 = 40.0 * 60.0;

fn rain(rng: &mut Rng, state: &mut DeviceState, dt_s: f64, effect: &Effect) -> SensorBody {
    if let Some(storm) = effect.storm_mm_h {
        // Each gauge catches its own share of the storm; after it the sky clears.
        let n = state.step_noise(rng);
        let mm_h = (storm * state.factor * (0.1 * n).exp()).clamp(0.5, 250.0);
        state.rain_mm_h = 0.0;
        return sensor("rainfall_mm", mm_h * dt_s / 3600.0, "mm");
    }
    if state.rain_mm_h > 0.0 {
        if rng.chance(1.0 - (-dt_s / SHOWER_MEAN_S).exp()) {
            state.rain_mm_h = 0.0;
        } else {
            state.rain_mm_h = (state.rain_mm_h * (0.25 * rng.normal()).exp()).clamp(0.5, 80.0);
        }
    } else if rng.chance(1.0 - (-dt_s / DRY_MEAN_S).exp()) {
        state.rain_mm_h = rng.exp(6.0).clamp(0.5, 60.0);
    }
    sensor("rainfall_mm", state.rain_mm_h * dt_s / 3600.0, "mm")
}

/// The semi-diurnal tide's period, seconds.
const TIDE_PERIOD_S: f64 = 12.42 * 3600.0;

fn flood(rng: &mut Rng, state: &mut DeviceState, t_ms: u64, effect: &Effect) -> SensorBody {
    let n = state.step_noise(rng);
    let t = (t_ms / 1000) as f64;
    let tide = 0.3 * (t / TIDE_PERIOD_S * std::f64::consts::TAU + state.phase).sin();
    let level = 0.6 * state.factor + 0.4 + tide + 0.03 * n + effect.flood_rise_m;
    sensor("water_level_m", level.max(0.0), "m")
}

/// A river station: its usual level, the tide where it reaches, and a flood episode's rise
/// times the river's gain.
fn river(
    rng: &mut Rng,
    state: &mut DeviceState,
    t_ms: u64,
    effect: &Effect,
    gauge: &RiverGauge,
) -> SensorBody {
    let n = state.step_noise(rng);
    let t = (t_ms / 1000) as f64;
    let tide = gauge.tide_m * (t / TIDE_PERIOD_S * std::f64::consts::TAU + state.phase).sin();
    let level = gauge.normal_m + tide + 0.03 * n + gauge.flood_gain * effect.flood_rise_m;
    sensor("water_level_m", level.max(0.0), "m")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_peaks_in_rush_hours_and_sleeps_at_night() {
        assert!(traffic_level(3.0) < 0.1);
        assert!(traffic_level(7.5) > 0.95);
        assert!(traffic_level(17.5) > 0.95);
        assert!((0.5..0.7).contains(&traffic_level(11.0)));
        assert!(rush(12.0) < 0.01);
        assert!(inversion(2.0) > 0.99 && inversion(13.0) < 0.01);
    }

    #[test]
    fn cameras_detect_a_few_crowds_a_day_mostly_in_the_evening() {
        // The detections a day of events at a mean gap `gap_s` makes over `cameras` cameras
        // (the chance scales with the time since the previous event, so the gap hardly
        // matters), between local hours `from` and `to`.
        let expected = |role: &DeviceRole, gap_s: f64, cameras: f64, from: f64, to: f64| {
            let events = (86_400.0 / gap_s) as u32;
            (0..events)
                .map(|i| f64::from(i) * gap_s / 3600.0)
                .filter(|h| (from..to).contains(h))
                .map(|h| crowd_chance(role, h, gap_s))
                .sum::<f64>()
                * cameras
        };
        let traffic = expected(&DeviceRole::TrafficCamera, 12.0, 200.0, 0.0, 24.0);
        assert!((2.9..3.1).contains(&traffic), "{traffic} a day");
        let evening = expected(&DeviceRole::TrafficCamera, 12.0, 200.0, 18.0, 23.5);
        assert!(evening > 0.5 * traffic, "{evening} of {traffic}");
        let harbour = expected(&DeviceRole::HarbourCamera, 120.0, 34.0, 0.0, 24.0);
        assert!((0.9..1.1).contains(&harbour), "{harbour} a day");
        // In the likeliest hours (19:30–22:00) about one every two hours over the fleet.
        let peak = 200.0 * crowd_chance(&DeviceRole::TrafficCamera, 20.5, 3600.0)
            + 34.0 * crowd_chance(&DeviceRole::HarbourCamera, 20.5, 3600.0);
        assert!((0.4..0.5).contains(&peak), "{peak} an hour");
        assert_eq!(crowd_chance(&DeviceRole::AirStation, 20.5, 60.0), 0.0);
    }

    #[test]
    fn local_hour_is_utc_plus_seven() {
        // 2026-11-28T01:00:00Z is 08:00 in Da Nang.
        assert!((local_hour(1_795_827_600_000) - 8.0).abs() < 1e-9);
        assert!((local_hour(1_795_827_600_000 + 17 * 3_600_000 + 1_800_000) - 1.5).abs() < 1e-9);
    }
}
