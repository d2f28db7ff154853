//! The reading envelope and the four kinds of body (DESIGN §3).
//!
//! Bodies follow public models so vendors recognise them: sensor after FIWARE
//! DeviceMeasurement / OGC SensorThings Observation; traffic signal after FIWARE
//! TrafficFlowObserved and SAE J2735 SPaT; camera event after FIWARE TrafficViolation / Alert
//! and ONVIF analytics; environment after FIWARE AirQualityObserved / WaterQualityObserved.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event_time::EventTime;
use crate::reject::{RejectCode, Rejection};

/// The kind of a reading: selects the shape of its body.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A single measured value (bridges, rain, water level, lighting, generic).
    Sensor,
    /// A signal-controlled junction's state and per-approach traffic counts.
    TrafficSignal,
    /// An analytics event from a traffic or security camera.
    CameraEvent,
    /// An environmental station's measurements of air or water.
    Environment,
}

impl Kind {
    /// Every kind, in a stable order (also the order of the ClickHouse `Enum8` values).
    pub const ALL: [Kind; 4] = [
        Kind::Sensor,
        Kind::TrafficSignal,
        Kind::CameraEvent,
        Kind::Environment,
    ];

    /// The snake_case name used in topics and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sensor => "sensor",
            Kind::TrafficSignal => "traffic_signal",
            Kind::CameraEvent => "camera_event",
            Kind::Environment => "environment",
        }
    }

    /// Parses the snake_case name.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message from a device: the common envelope plus a kind-specific body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "IOC reading")]
pub struct Reading {
    /// Unique per device; a repeat of the same id is a duplicate and is counted once.
    pub message_id: String,
    /// The reporting device's id, as in the device registry.
    pub device_id: String,
    /// When the observation was made.
    pub event_time: EventTime,
    /// The kind and its body.
    #[serde(flatten)]
    pub body: Body,
}

/// The kind-specific part of a reading: `{"kind": "...", "body": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum Body {
    /// A single measured value.
    Sensor(SensorBody),
    /// A junction's signal state and traffic counts.
    TrafficSignal(TrafficSignalBody),
    /// A camera analytics event.
    CameraEvent(CameraEventBody),
    /// An environmental station's measurements.
    Environment(EnvironmentBody),
}

impl Body {
    /// The kind this body belongs to.
    pub fn kind(&self) -> Kind {
        match self {
            Body::Sensor(_) => Kind::Sensor,
            Body::TrafficSignal(_) => Kind::TrafficSignal,
            Body::CameraEvent(_) => Kind::CameraEvent,
            Body::Environment(_) => Kind::Environment,
        }
    }
}

/// A single observation of one metric (after OGC SensorThings Observation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SensorBody {
    /// What is measured, snake_case: `rainfall_mm`, `water_level_m`, `wind_speed_ms`,
    /// `wind_direction_deg`, `strain_ue`, `temperature_c`, `humidity_pct`, `lamp_power_w`.
    pub metric: String,
    /// The measured value.
    pub value: f64,
    /// The unit of `value` (UCUM or plain: `mm`, `m`, `m/s`, `deg`, `µε`, `°C`, `%`, `W`).
    pub unit: String,
}

/// The state a signal head shows (after SAE J2735 SPaT movement phase state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignalState {
    /// Go.
    Green,
    /// Prepare to stop.
    Amber,
    /// Stop.
    Red,
    /// Flashing amber: the controller is not running a plan.
    Flashing,
    /// Dark.
    Off,
}

/// How the junction's controller is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ControlMode {
    /// A fixed-time plan.
    Fixed,
    /// Adaptive control from detector input.
    Adaptive,
    /// Manual control by an officer.
    Manual,
}

/// Traffic counted on one approach of a junction over the reporting interval
/// (after FIWARE TrafficFlowObserved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approach {
    /// The approach's name, such as `north` or `bach_dang_sb`.
    pub approach: String,
    /// Vehicles counted in the interval.
    pub vehicles: u32,
    /// Detector occupancy in percent, 0–100.
    pub occupancy_pct: f64,
    /// Mean speed in km/h, 0–250.
    pub mean_speed_kmh: f64,
    /// Queue length in metres, 0–5000.
    pub queue_length_m: f64,
}

/// A signal-controlled junction's report (after FIWARE TrafficFlowObserved and SAE J2735 SPaT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficSignalBody {
    /// The junction's id.
    pub junction_id: String,
    /// The current signal state of the main phase.
    pub state: SignalState,
    /// The controller's mode.
    pub mode: ControlMode,
    /// The controller's fault code, absent when healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_code: Option<String>,
    /// Per-approach counts; at most 16.
    #[serde(default)]
    pub approaches: Vec<Approach>,
}

/// What a camera's analytics detected (after ONVIF analytics and FIWARE TrafficViolation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CameraEventType {
    /// A number plate was read.
    PlateRead,
    /// A vehicle crossed on red.
    RedLightViolation,
    /// A vehicle used a forbidden lane.
    LaneViolation,
    /// A vehicle drove against the traffic.
    WrongWay,
    /// People gathered in a crowd.
    CrowdGathering,
    /// Goods or vehicles occupied a sidewalk.
    SidewalkEncroachment,
    /// A vehicle parked where it may not.
    IllegalParking,
    /// A collision or incident.
    Accident,
    /// A periodic vehicle count.
    VehicleCount,
    /// A boat entered the harbour.
    BoatIn,
    /// A boat left the harbour.
    BoatOut,
    /// No detection: the camera is alive. A camera sends one when it has sent nothing for
    /// twice its registered `expected_interval_s`, so a healthy camera is never silent for
    /// the three intervals that make a device offline. It counts for health only: it has no
    /// sample, window or camera KPI.
    Heartbeat,
}

impl CameraEventType {
    /// The snake_case name, used as the metric name of camera windows.
    pub fn as_str(self) -> &'static str {
        match self {
            CameraEventType::PlateRead => "plate_read",
            CameraEventType::RedLightViolation => "red_light_violation",
            CameraEventType::LaneViolation => "lane_violation",
            CameraEventType::WrongWay => "wrong_way",
            CameraEventType::CrowdGathering => "crowd_gathering",
            CameraEventType::SidewalkEncroachment => "sidewalk_encroachment",
            CameraEventType::IllegalParking => "illegal_parking",
            CameraEventType::Accident => "accident",
            CameraEventType::VehicleCount => "vehicle_count",
            CameraEventType::BoatIn => "boat_in",
            CameraEventType::BoatOut => "boat_out",
            CameraEventType::Heartbeat => "heartbeat",
        }
    }
}

/// One detection by a camera's analytics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CameraEventBody {
    /// The camera's id.
    pub camera_id: String,
    /// What was detected.
    pub event_type: CameraEventType,
    /// The analytics' confidence, 0–1.
    pub confidence: f64,
    /// The number plate read, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plate: Option<String>,
    /// The lane number, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<u8>,
    /// How many objects the event stands for (vehicles, people, boats); 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// A link to the snapshot or clip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_url: Option<String>,
}

/// What an environmental station samples.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Medium {
    /// Ambient air.
    Air,
    /// Rivers and lakes.
    SurfaceWater,
    /// Treated or untreated waste water.
    WasteWater,
    /// Coastal sea water.
    SeaWater,
    /// River water at a river station.
    RiverWater,
}

/// An environmental station's measurements (after FIWARE AirQualityObserved and
/// WaterQualityObserved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentBody {
    /// The station's id.
    pub station_id: String,
    /// What the station samples.
    pub medium: Medium,
    /// Measured values by name. Air in µg/m³: `pm25`, `pm10`, `o3`, `no2`, `so2`, `co`.
    /// Water: `ph`, `do` (mg/L), `cod`, `bod5`, `toc`, `tss`, `nh4` (as N), `tp` (total
    /// phosphorus), `tn` (total nitrogen) (mg/L), `coliform` (MPN/100 mL), `turbidity` (NTU),
    /// `temperature` (°C, which the VN_WQI needs for dissolved oxygen). Other snake_case names
    /// are accepted. At least 1, at most 64.
    pub measurements: BTreeMap<String, f64>,
    /// The unit of a measurement sent in another unit than the one above, by name: the air
    /// pollutants in `µg/m³` or `mg/m³` (also written `ug/m3`, `mg/m3`), the water ones in
    /// `mg/L` or `µg/L`. Values are converted when received and stored in the units above;
    /// a unit that is not one of these, or a unit for a measurement the body does not carry
    /// or whose unit is not known here, is refused (`out_of_range`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub units: BTreeMap<String, String>,
}

/// What a measurement's value is multiplied by to be in its canonical unit, given the unit it
/// was sent in; `None` for a unit not accepted for it.
fn unit_factor(measurement: &str, unit: &str) -> Option<f64> {
    const AIR: [&str; 6] = ["pm25", "pm10", "o3", "no2", "so2", "co"];
    const WATER_MG_L: [&str; 8] = ["do", "cod", "bod5", "toc", "tss", "nh4", "tp", "tn"];
    if AIR.contains(&measurement) {
        match unit {
            "µg/m³" | "µg/m3" | "ug/m3" | "ug/m³" => Some(1.0),
            "mg/m³" | "mg/m3" => Some(1000.0),
            _ => None,
        }
    } else if WATER_MG_L.contains(&measurement) {
        match unit {
            "mg/L" | "mg/l" => Some(1.0),
            "µg/L" | "µg/l" | "ug/L" | "ug/l" => Some(0.001),
            _ => None,
        }
    } else {
        None
    }
}

/// Limits the validator applies; the defaults suit the city's fleet.
#[derive(Debug, Clone, Copy)]
pub struct ValidationLimits {
    /// How far into the future (ms, against the receiver's clock) an event time may be.
    pub max_future_ms: u64,
    /// The earliest accepted event time (ms since the epoch).
    pub min_event_time_ms: u64,
}

impl Default for ValidationLimits {
    fn default() -> Self {
        ValidationLimits {
            max_future_ms: 5 * 60 * 1000,
            // 2000-01-01T00:00:00Z: anything older is a device with an unset clock.
            min_event_time_ms: 946_684_800_000,
        }
    }
}

const MAX_ID_LEN: usize = 128;
const MAX_APPROACHES: usize = 16;
const MAX_MEASUREMENTS: usize = 64;

fn out_of_range(detail: String) -> Rejection {
    Rejection::new(RejectCode::OutOfRange, detail)
}

pub(crate) fn check_id(field: &str, id: &str) -> Result<(), Rejection> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(out_of_range(format!(
            "{field} must be 1 to {MAX_ID_LEN} bytes long, got {}",
            id.len()
        )));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(out_of_range(format!(
            "{field} `{id}` has the character {c:?}; use ASCII letters, digits, `_`, `-`, `.` or `:`"
        )));
    }
    Ok(())
}

fn check_name(field: &str, name: &str) -> Result<(), Rejection> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(out_of_range(format!(
            "{field} `{name}` must be 1 to 64 characters of a-z, 0-9 and `_`"
        )))
    }
}

fn check_range(field: &str, value: f64, lo: f64, hi: f64) -> Result<(), Rejection> {
    if value.is_finite() && (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(out_of_range(format!(
            "{field} is {value}, outside {lo} to {hi}"
        )))
    }
}

/// The physically plausible range of a sensor metric: the fleet's own metrics by name, then by
/// unit suffix; other metrics only have to be finite and below 10^12 in size.
pub fn sensor_range(metric: &str) -> (f64, f64) {
    match metric {
        // Per reporting interval; the world's 1-hour record is about 305 mm.
        "rainfall_mm" => (0.0, 500.0),
        // Against the gauge's datum, which may sit above the water.
        "water_level_m" => (-50.0, 200.0),
        // The strongest gust ever measured is 113 m/s.
        "wind_speed_ms" => (0.0, 120.0),
        "temperature_c" => (-50.0, 80.0),
        "lamp_power_w" => (0.0, 100_000.0),
        // Microstrain: steel yields near ±2,000; gauges saturate long before ±100,000.
        "strain_ue" => (-100_000.0, 100_000.0),
        _ if metric.ends_with("_pct") => (0.0, 100.0),
        _ if metric.ends_with("_deg") => (0.0, 360.0),
        _ => (-1e12, 1e12),
    }
}

/// The physically plausible range of an environmental measurement.
fn measurement_range(name: &str) -> (f64, f64) {
    match name {
        "ph" => (0.0, 14.0),
        "temperature" => (-50.0, 80.0),
        // CO in µg/m³ reaches far higher than the other pollutants.
        "co" => (0.0, 1_000_000.0),
        _ => (0.0, 100_000.0),
    }
}

impl Reading {
    /// The kind of this reading.
    pub fn kind(&self) -> Kind {
        self.body.kind()
    }

    /// Brings environment measurements sent in another unit (`body.units`) to their canonical
    /// unit, and empties `units`. Refuses a unit it does not know for the measurement.
    pub fn convert_units(&mut self) -> Result<(), Rejection> {
        let Body::Environment(b) = &mut self.body else {
            return Ok(());
        };
        for (name, unit) in std::mem::take(&mut b.units) {
            let Some(value) = b.measurements.get_mut(&name) else {
                return Err(out_of_range(format!(
                    "body.units.{name}: no measurement `{name}` in body.measurements"
                )));
            };
            let Some(factor) = unit_factor(&name, &unit) else {
                return Err(out_of_range(format!(
                    "body.units.{name}: unit `{unit}` is not accepted for `{name}` (air \
                     pollutants: µg/m³ or mg/m³; do, cod, bod5, tss, nh4: mg/L or µg/L; others: \
                     send the unit in the measurement list's documentation and no units entry)"
                )));
            };
            *value *= factor;
        }
        Ok(())
    }

    /// Checks every field against its range. `now_ms` is the receiver's clock.
    pub fn validate(&self, now_ms: u64, limits: &ValidationLimits) -> Result<(), Rejection> {
        check_id("message_id", &self.message_id)?;
        check_id("device_id", &self.device_id)?;
        let t = self.event_time.0;
        if t > now_ms.saturating_add(limits.max_future_ms) {
            return Err(Rejection::new(
                RejectCode::FutureEventTime,
                format!(
                    "event_time {} is {} s ahead of the receiver's clock (limit {} s)",
                    self.event_time.to_rfc3339(),
                    (t - now_ms) / 1000,
                    limits.max_future_ms / 1000
                ),
            ));
        }
        if t < limits.min_event_time_ms {
            return Err(out_of_range(format!(
                "event_time {} is before {}",
                self.event_time.to_rfc3339(),
                EventTime(limits.min_event_time_ms).to_rfc3339()
            )));
        }
        match &self.body {
            Body::Sensor(b) => {
                check_name("body.metric", &b.metric)?;
                if b.unit.len() > 16 {
                    return Err(out_of_range(format!(
                        "body.unit `{}` is longer than 16 bytes",
                        b.unit
                    )));
                }
                let (lo, hi) = sensor_range(&b.metric);
                check_range("body.value", b.value, lo, hi)
            }
            Body::TrafficSignal(b) => {
                check_id("body.junction_id", &b.junction_id)?;
                if b.approaches.len() > MAX_APPROACHES {
                    return Err(out_of_range(format!(
                        "body.approaches has {} entries, at most {MAX_APPROACHES} allowed",
                        b.approaches.len()
                    )));
                }
                for (i, a) in b.approaches.iter().enumerate() {
                    check_name(&format!("body.approaches[{i}].approach"), &a.approach)?;
                    check_range(
                        &format!("body.approaches[{i}].occupancy_pct"),
                        a.occupancy_pct,
                        0.0,
                        100.0,
                    )?;
                    check_range(
                        &format!("body.approaches[{i}].mean_speed_kmh"),
                        a.mean_speed_kmh,
                        0.0,
                        250.0,
                    )?;
                    check_range(
                        &format!("body.approaches[{i}].queue_length_m"),
                        a.queue_length_m,
                        0.0,
                        5000.0,
                    )?;
                }
                Ok(())
            }
            Body::CameraEvent(b) => {
                check_id("body.camera_id", &b.camera_id)?;
                check_range("body.confidence", b.confidence, 0.0, 1.0)
            }
            Body::Environment(b) => {
                check_id("body.station_id", &b.station_id)?;
                if b.measurements.is_empty() || b.measurements.len() > MAX_MEASUREMENTS {
                    return Err(out_of_range(format!(
                        "body.measurements has {} entries, 1 to {MAX_MEASUREMENTS} allowed",
                        b.measurements.len()
                    )));
                }
                for (name, value) in &b.measurements {
                    check_name("body.measurements key", name)?;
                    let (lo, hi) = measurement_range(name);
                    check_range(&format!("body.measurements.{name}"), *value, lo, hi)?;
                }
                Ok(())
            }
        }
    }

    /// The numeric samples a reading contributes to windows, as `(metric, value)`.
    ///
    /// Traffic: `vehicles` is the sum over approaches, `occupancy_pct` the mean over
    /// approaches, `mean_speed_kmh` the mean weighted by each approach's vehicles,
    /// `queue_length_m` the longest queue, `worst_speed_kmh` the slowest approach's speed and
    /// `worst_occupancy_pct` the most occupied approach's occupancy. Camera: one sample named
    /// after the event type whose value is the event's count (1 when absent); none for a
    /// heartbeat. Sensor and
    /// environment: their metrics as they are.
    pub fn samples(&self) -> Vec<(String, f64)> {
        let mut samples = Vec::new();
        self.for_each_sample(|metric, value| samples.push((metric.to_owned(), value)));
        samples
    }

    /// Calls `each` with every sample of [`Reading::samples`], in the same order, without
    /// allocating their names.
    pub fn for_each_sample(&self, mut each: impl FnMut(&str, f64)) {
        match &self.body {
            Body::Sensor(b) => each(&b.metric, b.value),
            Body::TrafficSignal(b) => {
                // 1 while the controller runs a plan: not faulted, flashing or dark. Its window
                // mean is the signal availability.
                let running = b.fault_code.is_none()
                    && !matches!(b.state, SignalState::Flashing | SignalState::Off);
                if !b.approaches.is_empty() {
                    let approaches = &b.approaches;
                    let n = approaches.len() as f64;
                    let vehicles: f64 = approaches.iter().map(|a| f64::from(a.vehicles)).sum();
                    let occupancy = approaches.iter().map(|a| a.occupancy_pct).sum::<f64>() / n;
                    // Weighted by each approach's vehicles; the plain mean when none passed.
                    let speed = if vehicles > 0.0 {
                        approaches
                            .iter()
                            .map(|a| f64::from(a.vehicles) * a.mean_speed_kmh)
                            .sum::<f64>()
                            / vehicles
                    } else {
                        approaches.iter().map(|a| a.mean_speed_kmh).sum::<f64>() / n
                    };
                    let worst = |f: fn(&Approach) -> f64, pick: fn(f64, f64) -> f64, from| {
                        approaches.iter().map(f).fold(from, pick)
                    };
                    each("vehicles", vehicles);
                    each("occupancy_pct", occupancy);
                    each("mean_speed_kmh", speed);
                    each("queue_length_m", worst(|a| a.queue_length_m, f64::max, 0.0));
                    // The worst approach: the slowest, and the most occupied.
                    each(
                        "worst_speed_kmh",
                        worst(|a| a.mean_speed_kmh, f64::min, f64::MAX),
                    );
                    each(
                        "worst_occupancy_pct",
                        worst(|a| a.occupancy_pct, f64::max, 0.0),
                    );
                }
                each("signal_available", f64::from(u8::from(running)));
            }
            // A heartbeat only says the camera is alive: health counts the reading itself.
            Body::CameraEvent(b) if b.event_type == CameraEventType::Heartbeat => {}
            Body::CameraEvent(b) => each(b.event_type.as_str(), f64::from(b.count.unwrap_or(1))),
            Body::Environment(b) => {
                for (k, v) in &b.measurements {
                    each(k, *v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_827_600_000;

    fn traffic() -> Reading {
        Reading {
            message_id: "m1".into(),
            device_id: "tl-hai_chau-001".into(),
            event_time: EventTime(NOW),
            body: Body::TrafficSignal(TrafficSignalBody {
                junction_id: "hai_chau-001".into(),
                state: SignalState::Green,
                mode: ControlMode::Adaptive,
                fault_code: None,
                approaches: vec![
                    Approach {
                        approach: "north".into(),
                        vehicles: 10,
                        occupancy_pct: 20.0,
                        mean_speed_kmh: 30.0,
                        queue_length_m: 15.0,
                    },
                    Approach {
                        approach: "south".into(),
                        vehicles: 6,
                        occupancy_pct: 40.0,
                        mean_speed_kmh: 20.0,
                        queue_length_m: 45.0,
                    },
                ],
            }),
        }
    }

    #[test]
    fn units_convert_to_the_canonical_ones_or_are_refused() {
        let env = |measurements: &[(&str, f64)], units: &[(&str, &str)]| Reading {
            message_id: "m".into(),
            device_id: "aq-1".into(),
            event_time: EventTime(NOW),
            body: Body::Environment(EnvironmentBody {
                station_id: "aq-1".into(),
                medium: Medium::Air,
                measurements: measurements
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), *v))
                    .collect(),
                units: units
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            }),
        };
        let measurements = |r: &Reading| match &r.body {
            Body::Environment(b) => (b.measurements.clone(), b.units.len()),
            _ => unreachable!(),
        };
        // CO in mg/m³ (5 mg/m³ = 5 000 µg/m³); PM left as sent.
        let mut r = env(&[("co", 5.0), ("pm25", 30.0)], &[("co", "mg/m³")]);
        r.convert_units().unwrap();
        let (m, units) = measurements(&r);
        assert_eq!((m["co"], m["pm25"], units), (5000.0, 30.0, 0));
        assert!(r.validate(NOW, &ValidationLimits::default()).is_ok());
        let mut r = env(&[("no2", 40.0)], &[("no2", "ug/m3")]);
        r.convert_units().unwrap();
        assert_eq!(measurements(&r).0["no2"], 40.0);
        let mut r = env(&[("nh4", 450.0)], &[("nh4", "µg/L")]);
        r.convert_units().unwrap();
        assert!((measurements(&r).0["nh4"] - 0.45).abs() < 1e-12);
        // Refused: a unit not accepted, a unit without its measurement, an unknown name's unit.
        for (m, u) in [
            (&[("co", 5.0)][..], &[("co", "ppm")][..]),
            (&[("co", 5.0)][..], &[("so2", "mg/m³")][..]),
            (&[("turbidity", 5.0)][..], &[("turbidity", "FTU")][..]),
        ] {
            let e = env(m, u).convert_units().unwrap_err();
            assert_eq!(e.code, RejectCode::OutOfRange);
            assert!(e.detail.starts_with("body.units."), "{}", e.detail);
        }
    }

    #[test]
    fn envelope_serialises_kind_and_body_side_by_side() {
        let json = serde_json::to_value(traffic()).unwrap();
        assert_eq!(json["kind"], "traffic_signal");
        assert_eq!(json["body"]["junction_id"], "hai_chau-001");
        assert_eq!(json["event_time"], NOW);
        let back: Reading = serde_json::from_value(json).unwrap();
        assert_eq!(back, traffic());
    }

    #[test]
    fn traffic_samples_aggregate_approaches() {
        let s = traffic().samples();
        assert_eq!(
            s,
            vec![
                ("vehicles".to_owned(), 16.0),
                ("occupancy_pct".to_owned(), 30.0),
                // Weighted by vehicles: (10 × 30 + 6 × 20) / 16.
                ("mean_speed_kmh".to_owned(), 26.25),
                ("queue_length_m".to_owned(), 45.0),
                // The slowest approach, and the most occupied.
                ("worst_speed_kmh".to_owned(), 20.0),
                ("worst_occupancy_pct".to_owned(), 40.0),
                ("signal_available".to_owned(), 1.0),
            ]
        );
        let mut flashing = traffic();
        if let Body::TrafficSignal(b) = &mut flashing.body {
            b.state = SignalState::Flashing;
            b.approaches.clear();
        }
        assert_eq!(
            flashing.samples(),
            vec![("signal_available".to_owned(), 0.0)]
        );
    }

    #[test]
    fn validation_names_the_field_and_the_range() {
        let limits = ValidationLimits::default();
        assert!(traffic().validate(NOW, &limits).is_ok());

        let mut r = traffic();
        if let Body::TrafficSignal(b) = &mut r.body {
            b.approaches[1].occupancy_pct = 140.0;
        }
        let e = r.validate(NOW, &limits).unwrap_err();
        assert_eq!(e.code, RejectCode::OutOfRange);
        assert_eq!(
            e.detail,
            "body.approaches[1].occupancy_pct is 140, outside 0 to 100"
        );

        let mut r = traffic();
        r.event_time = EventTime(NOW + 3_600_000);
        let e = r.validate(NOW, &limits).unwrap_err();
        assert_eq!(e.code, RejectCode::FutureEventTime);
        assert!(e.detail.contains("3600 s ahead"), "{}", e.detail);

        let mut r = traffic();
        r.device_id = "bad id/with slash".into();
        let e = r.validate(NOW, &limits).unwrap_err();
        assert!(
            e.detail.starts_with("device_id `bad id/with slash`"),
            "{}",
            e.detail
        );

        let mut r = traffic();
        r.message_id = "id with spaces/and!".into();
        let e = r.validate(NOW, &limits).unwrap_err();
        assert_eq!(e.code, RejectCode::OutOfRange);
        assert!(
            e.detail
                .starts_with("message_id `id with spaces/and!` has the character ' '"),
            "{}",
            e.detail
        );
    }

    #[test]
    fn sensor_ranges_depend_on_the_metric() {
        let limits = ValidationLimits::default();
        let sensor = |metric: &str, value: f64| Reading {
            message_id: "m".into(),
            device_id: "rain-1".into(),
            event_time: EventTime(NOW),
            body: Body::Sensor(SensorBody {
                metric: metric.into(),
                value,
                unit: String::new(),
            }),
        };
        for (metric, bad, good) in [
            ("rainfall_mm", -0.5, 0.0),
            ("rainfall_mm", 600.0, 500.0),
            ("wind_speed_ms", -1.0, 120.0),
            ("humidity_pct", 101.0, 100.0),
            ("wind_direction_deg", 361.0, 0.0),
            ("strain_ue", -200_000.0, -1500.0),
            ("water_level_m", 250.0, -2.0),
            ("lamp_power_w", -3.0, 150.0),
            ("pressure_hpa", f64::INFINITY, -3.0),
        ] {
            let e = sensor(metric, bad).validate(NOW, &limits).unwrap_err();
            assert_eq!(e.code, RejectCode::OutOfRange, "{metric} {bad}");
            assert!(e.detail.starts_with("body.value is "), "{}", e.detail);
            assert!(
                sensor(metric, good).validate(NOW, &limits).is_ok(),
                "{metric} {good}"
            );
        }
    }

    #[test]
    fn environment_ranges_depend_on_the_measurement() {
        let limits = ValidationLimits::default();
        let mut m = BTreeMap::new();
        m.insert("ph".to_owned(), 15.0);
        let r = Reading {
            message_id: "m".into(),
            device_id: "env-1".into(),
            event_time: EventTime(NOW),
            body: Body::Environment(EnvironmentBody {
                units: Default::default(),
                station_id: "env-1".into(),
                medium: Medium::RiverWater,
                measurements: m,
            }),
        };
        let e = r.validate(NOW, &limits).unwrap_err();
        assert_eq!(e.detail, "body.measurements.ph is 15, outside 0 to 14");
    }
}
