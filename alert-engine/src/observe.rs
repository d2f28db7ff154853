//! Observations: readings and KPI rows turned into the numbers the rules look at.
//!
//! A reading gives one [`Observation`] per sample ([`observations_of_reading`],
//! [`observations_of_samples_where`]); a KPI row one per field that has a value
//! ([`observations_of_kpi`]). The field catalog ([`kpi_scopes`], [`kpi_field_known`],
//! [`kpi_field_names`]) says which fields each family and scope emits, for the rule
//! validation and the engine alike.
//!
//! # Observation fields per KPI family
//!
//! Every KPI observation is stamped at its window's end (`event_ms`) and carries the window's
//! length (`window_ms`): a breach seen in a window is taken to have started at the window's
//! start, so `for_s = 600` over 5-minute windows needs two breaching windows in a row.
//!
//! | family (scopes) | entity | fields |
//! |---|---|---|
//! | `traffic` (`device`, `district`) | junction id / district slug | `level` (A = 1 … F = 6), `volume_veh_h`, `occupancy_pct`, `mean_speed_kmh`, `queue_m`, `availability_pct`, `junctions` |
//! | `camera` (`district`) | district slug | `events.<type>`, `per_hour.<type>`, `cameras.<type>` for each camera event type (`crowd_gathering`, `accident`, …) and `violations`; `violations_per_100_vehicles` |
//! | `air` (`device`) | station id | hourly (NowCast PM): `aqi` (only when the AQI exists), `pm25`, `pm10`, `o3`, `no2`, `so2`, `co` (µg/m³), `aqi_pm25`, `aqi_pm10`, `aqi_o3`, `aqi_no2`, `aqi_so2`, `aqi_co`; daily: the same names ending in `_day` (`aqi_day`, `pm25_day`, …), and `o3_8h_day` |
//! | `water` (`device`) | station id; `<station>.<parameter>` for `exceeded` | `<parameter>` (its window mean: `ph`, `do`, `cod`, …), `exceeded` (1 outside the national limits, else 0) |
//! | `hydrology` (`device`) | gauge id | `rain_mm`, `rain_1h_mm`, `rain_3h_mm`, `rain_12h_mm`, `rain_24h_mm` (rain gauges), `water_level_m`, `rise_rate_m_per_h` (flood gauges), `alarm_level` (0–3, river gauges with flood alarm levels) |
//! | `bridge` (`device`) | bridge monitor id | `wind_mean_ms`, `wind_max_ms`, `strain_mean_ue`, `strain_min_ue`, `strain_max_ue`, `temperature_c`, `humidity_pct` |
//! | `health` (`device`) | device id | `offline` (1 offline or never seen, else 0), `completeness_pct`, `readings`, `silent_s` (seconds from the last event seen to the window's end; `+∞` for a never-seen device: what `absence` rules read) |
//! | `health` (`district`, `department`, `city`) | district / department slug, `da_nang` | `offline` (devices offline), `online`, `devices`, `offline_pct`, `completeness_pct`, `readings` |
//!
//! Only fields that have a value are emitted (a rain gauge has no `water_level_m`). The
//! department of a KPI observation is the row's (health) or the family's usual owner:
//! traffic → transport; air, water → environment; hydrology → disaster prevention; bridge →
//! construction; camera events → police for `crowd_gathering`, `sidewalk_encroachment`,
//! `illegal_parking`, `accident`, `boat_in`, `boat_out`, transport for the others.

use ioc_schemas::{
    AqiKpi, AqiPeriod, BridgeKpi, CameraKpi, Congestion, Department, District, HealthKpi,
    HydrologyKpi, Kind, Kpi, KpiFamily, Reading, Scope, TrafficKpi, WaterKpi,
};
use serde::{Deserialize, Serialize};

/// Which number an observation is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A sample of a raw reading ([`Reading::samples`]).
    Reading {
        /// The sample's metric.
        metric: String,
        /// The reading's kind.
        kind: Kind,
    },
    /// A field of a KPI row.
    Kpi {
        /// The row's family.
        family: KpiFamily,
        /// The row's scope.
        scope: Scope,
        /// The field (see the module docs).
        field: String,
    },
}

/// One number the rules look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// What it is.
    pub source: Source,
    /// What it is about: a device id, a district slug, ...; alerts are per (rule, entity).
    pub entity_id: String,
    /// The device it comes from, for device-scope rows and readings.
    pub device_id: Option<String>,
    /// Its district, when it has one.
    pub district: Option<District>,
    /// The department owning the device or entity, when known (rules with `owner` use it).
    pub department: Option<Department>,
    /// Its event time, epoch ms (a KPI window's end).
    pub event_ms: u64,
    /// The span it summarises, ending at `event_ms`, in ms (a KPI window; 0 for a reading).
    pub window_ms: u64,
    /// The value.
    pub value: f64,
    /// The device's expected reporting interval, seconds (device-scope health rows; iocd may
    /// set it from the registry). Absence rules need it.
    pub expected_interval_s: Option<u32>,
}

// ---------------------------------------------------------------------------------------
// Field catalog
// ---------------------------------------------------------------------------------------

const TRAFFIC_FIELDS: [&str; 7] = [
    "level",
    "volume_veh_h",
    "occupancy_pct",
    "mean_speed_kmh",
    "queue_m",
    "availability_pct",
    "junctions",
];
const AIR_FIELDS: [&str; 14] = [
    "aqi", "pm25", "pm10", "o3", "no2", "so2", "co", "o3_8h", "aqi_pm25", "aqi_pm10", "aqi_o3",
    "aqi_no2", "aqi_so2", "aqi_co",
];
const HYDROLOGY_FIELDS: [&str; 8] = [
    "alarm_level",
    "rain_mm",
    "rain_1h_mm",
    "rain_3h_mm",
    "rain_12h_mm",
    "rain_24h_mm",
    "water_level_m",
    "rise_rate_m_per_h",
];
const BRIDGE_FIELDS: [&str; 7] = [
    "wind_mean_ms",
    "wind_max_ms",
    "strain_mean_ue",
    "strain_min_ue",
    "strain_max_ue",
    "temperature_c",
    "humidity_pct",
];
const HEALTH_DEVICE_FIELDS: [&str; 4] = ["offline", "completeness_pct", "readings", "silent_s"];
const HEALTH_ROLLUP_FIELDS: [&str; 6] = [
    "offline",
    "online",
    "devices",
    "offline_pct",
    "completeness_pct",
    "readings",
];
/// Camera event types a camera KPI field may name (`events.<type>`), `violations` included.
pub const CAMERA_EVENT_TYPES: [&str; 12] = [
    "plate_read",
    "red_light_violation",
    "lane_violation",
    "wrong_way",
    "crowd_gathering",
    "sidewalk_encroachment",
    "illegal_parking",
    "accident",
    "vehicle_count",
    "boat_in",
    "boat_out",
    "violations",
];
const CAMERA_PREFIXES: [&str; 3] = ["events.", "per_hour.", "cameras."];
/// The field of device health rows absence rules read.
pub const SILENT_FIELD: &str = "silent_s";

/// The scopes a family's rows come in; the first is the default of a rule's `source.scope`.
pub fn kpi_scopes(family: KpiFamily) -> &'static [Scope] {
    match family {
        KpiFamily::Traffic => &[Scope::Device, Scope::District],
        KpiFamily::Camera => &[Scope::District],
        KpiFamily::Air | KpiFamily::Water | KpiFamily::Hydrology | KpiFamily::Bridge => {
            &[Scope::Device]
        }
        KpiFamily::Health => &[
            Scope::Device,
            Scope::District,
            Scope::Department,
            Scope::City,
        ],
    }
}

/// Whether `s` is a snake_case name of 1 to 64 characters (a-z, 0-9, `_`): a reading metric
/// or a water parameter.
pub(crate) fn is_snake_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether [`observations_of_kpi`] emits this field for rows of this family and scope.
pub fn kpi_field_known(family: KpiFamily, scope: Scope, field: &str) -> bool {
    if !kpi_scopes(family).contains(&scope) {
        return false;
    }
    match family {
        KpiFamily::Traffic => TRAFFIC_FIELDS.contains(&field),
        KpiFamily::Camera => {
            field == "violations_per_100_vehicles"
                || CAMERA_PREFIXES.iter().any(|p| {
                    field
                        .strip_prefix(p)
                        .is_some_and(|t| CAMERA_EVENT_TYPES.contains(&t))
                })
        }
        KpiFamily::Air => {
            AIR_FIELDS.contains(&field)
                || field
                    .strip_suffix("_day")
                    .is_some_and(|f| AIR_FIELDS.contains(&f))
        }
        KpiFamily::Water => is_snake_name(field),
        KpiFamily::Hydrology => HYDROLOGY_FIELDS.contains(&field),
        KpiFamily::Bridge => BRIDGE_FIELDS.contains(&field),
        KpiFamily::Health => {
            if scope == Scope::Device {
                HEALTH_DEVICE_FIELDS.contains(&field)
            } else {
                HEALTH_ROLLUP_FIELDS.contains(&field)
            }
        }
    }
}

/// The fields of a family and scope, for error messages.
pub fn kpi_field_names(family: KpiFamily, scope: Scope) -> String {
    let list = |fields: &[&str]| fields.join(", ");
    match family {
        KpiFamily::Traffic => list(&TRAFFIC_FIELDS),
        KpiFamily::Camera => format!(
            "events.<type>, per_hour.<type>, cameras.<type> (type: {}), violations_per_100_vehicles",
            list(&CAMERA_EVENT_TYPES)
        ),
        KpiFamily::Air => format!("{} (hourly), the same ending in _day (daily)", list(&AIR_FIELDS)),
        KpiFamily::Water => "<parameter> (ph, do, cod, ...), exceeded".to_owned(),
        KpiFamily::Hydrology => list(&HYDROLOGY_FIELDS),
        KpiFamily::Bridge => list(&BRIDGE_FIELDS),
        KpiFamily::Health if scope == Scope::Device => list(&HEALTH_DEVICE_FIELDS),
        KpiFamily::Health => list(&HEALTH_ROLLUP_FIELDS),
    }
}

// ---------------------------------------------------------------------------------------
// Observations of readings and KPIs
// ---------------------------------------------------------------------------------------

/// The observations of a raw reading: one per sample ([`Reading::samples`]), about its device.
/// `district` and `department` come from the registry (`None` for an unregistered device's
/// department).
pub fn observations_of_reading(
    reading: &Reading,
    district: District,
    department: Option<Department>,
) -> Vec<Observation> {
    observations_of_reading_where(reading, district, department, |_| true)
}

/// [`observations_of_reading`] for the metrics `keep` accepts only (the hot path: most
/// readings carry no metric any rule watches, and make no observation at all).
pub fn observations_of_reading_where(
    reading: &Reading,
    district: District,
    department: Option<Department>,
    keep: impl Fn(&str) -> bool,
) -> Vec<Observation> {
    let samples = reading.samples();
    let samples: Vec<(&str, f64)> = samples.iter().map(|(m, v)| (m.as_str(), *v)).collect();
    let sampled = ReadingSamples {
        device_id: &reading.device_id,
        kind: reading.kind(),
        district,
        event_ms: reading.event_time.0,
        samples: &samples,
    };
    observations_of_samples_where(&sampled, department, keep)
}

/// A reading as the dataflow carries it: its device, kind, district, event time and samples.
#[derive(Debug, Clone, Copy)]
pub struct ReadingSamples<'a> {
    /// The device.
    pub device_id: &'a str,
    /// The reading kind.
    pub kind: Kind,
    /// Its district.
    pub district: District,
    /// Event time, epoch ms.
    pub event_ms: u64,
    /// Its values by metric ([`Reading::samples`]).
    pub samples: &'a [(&'a str, f64)],
}

/// The observations of a reading's samples that `keep` accepts.
pub fn observations_of_samples_where(
    reading: &ReadingSamples<'_>,
    department: Option<Department>,
    keep: impl Fn(&str) -> bool,
) -> Vec<Observation> {
    reading
        .samples
        .iter()
        .filter(|(metric, _)| keep(metric))
        .map(|(metric, value)| Observation {
            source: Source::Reading {
                metric: (*metric).to_owned(),
                kind: reading.kind,
            },
            entity_id: reading.device_id.to_owned(),
            device_id: Some(reading.device_id.to_owned()),
            district: Some(reading.district),
            department,
            event_ms: reading.event_ms,
            window_ms: 0,
            value: *value,
            expected_interval_s: None,
        })
        .collect()
}

/// The department that owns camera events of a type (security cameras are the police's).
fn camera_owner(event_type: &str) -> Department {
    match event_type {
        "crowd_gathering"
        | "sidewalk_encroachment"
        | "illegal_parking"
        | "accident"
        | "boat_in"
        | "boat_out" => Department::Police,
        _ => Department::Transport,
    }
}

/// The expected reporting interval of a device, from its health row: the window divided by
/// the readings expected in it. A device reporting once a window or less often gets the
/// window's length, a lower bound (iocd may set the registered interval instead).
fn interval_of(h: &HealthKpi) -> Option<u32> {
    let window_s = h.window_size_ms / 1000;
    let interval = if h.expected > 1 {
        window_s / h.expected
    } else {
        window_s
    };
    u32::try_from(interval).ok().filter(|s| *s > 0)
}

/// The observations of a KPI row: one per field that has a value (see the module docs for
/// the field names of each family).
pub fn observations_of_kpi(kpi: &Kpi) -> Vec<Observation> {
    let base = base_of_kpi(kpi);
    let Source::Kpi { family, scope, .. } = base.source else {
        return Vec::new();
    };
    let expected_interval_s = match kpi {
        Kpi::Health(h) if h.scope == Scope::Device => interval_of(h),
        _ => None,
    };
    let mut out: Vec<Observation> = fields_of_kpi(kpi, base.event_ms)
        .0
        .into_iter()
        .map(|(field, value)| Observation {
            source: Source::Kpi {
                family,
                scope,
                field,
            },
            value,
            expected_interval_s,
            ..base.clone()
        })
        .collect();
    if let Kpi::Water(k) = kpi {
        out.push(water_exceeded(k, base));
    }
    out
}

/// What every observation of a KPI row shares: its family and scope (the field left empty),
/// entity, device, district, owner and window; the value left at 0.
fn base_of_kpi(kpi: &Kpi) -> Observation {
    let (scope, window_ms) = match kpi {
        Kpi::Traffic(k) => (k.scope, k.window_size_ms),
        Kpi::Camera(k) => (Scope::District, k.window_size_ms),
        Kpi::Air(k) => (Scope::Device, k.window_size_ms),
        Kpi::Water(k) => (Scope::Device, k.window_size_ms),
        Kpi::Hydrology(k) => (Scope::Device, k.window_size_ms),
        Kpi::Bridge(k) => (Scope::Device, k.window_size_ms),
        Kpi::Health(k) => (k.scope, k.window_size_ms),
    };
    let entity = kpi.entity_id().to_owned();
    let device_id = (scope == Scope::Device).then(|| entity.clone());
    let department = match kpi {
        Kpi::Traffic(_) => Some(Department::Transport),
        Kpi::Camera(k) => Some(camera_owner(&k.event_type)),
        Kpi::Air(_) | Kpi::Water(_) => Some(Department::Environment),
        Kpi::Hydrology(_) => Some(Department::DisasterPrevention),
        Kpi::Bridge(_) => Some(Department::Construction),
        Kpi::Health(k) => k.department,
    };
    Observation {
        source: Source::Kpi {
            family: kpi.family(),
            scope,
            field: String::new(),
        },
        entity_id: entity,
        device_id,
        district: kpi.district(),
        department,
        event_ms: kpi.window_start_ms().saturating_add(window_ms),
        window_ms,
        value: 0.0,
        expected_interval_s: None,
    }
}

/// The fields of a KPI row that have a value, by name, in the order they are observed.
#[derive(Debug, Default)]
struct Fields(Vec<(String, f64)>);

impl Fields {
    fn push(&mut self, name: &str, value: Option<f64>) {
        if let Some(v) = value {
            self.0.push((name.to_owned(), v));
        }
    }
}

/// The fields of a row (see the module docs); `event_ms` is the window's end.
fn fields_of_kpi(kpi: &Kpi, event_ms: u64) -> Fields {
    let mut fields = Fields::default();
    match kpi {
        Kpi::Traffic(k) => traffic_fields(k, &mut fields),
        Kpi::Camera(k) => camera_fields(k, &mut fields),
        Kpi::Air(k) => air_fields(k, &mut fields),
        Kpi::Water(k) => fields.push(&k.parameter, Some(k.value)),
        Kpi::Hydrology(k) => hydrology_fields(k, &mut fields),
        Kpi::Bridge(k) => bridge_fields(k, &mut fields),
        Kpi::Health(k) => health_fields(k, event_ms, &mut fields),
    }
    fields
}

fn traffic_fields(k: &TrafficKpi, fields: &mut Fields) {
    let level = match k.level {
        Congestion::A => 1.0,
        Congestion::B => 2.0,
        Congestion::C => 3.0,
        Congestion::D => 4.0,
        Congestion::E => 5.0,
        Congestion::F => 6.0,
    };
    fields.push("level", Some(level));
    fields.push("volume_veh_h", Some(k.volume_veh_h));
    fields.push("occupancy_pct", Some(k.occupancy_pct));
    fields.push("mean_speed_kmh", Some(k.mean_speed_kmh));
    fields.push("queue_m", Some(k.queue_m));
    fields.push("availability_pct", Some(k.availability_pct));
    fields.push("junctions", Some(f64::from(k.junctions)));
}

fn camera_fields(k: &CameraKpi, fields: &mut Fields) {
    let t = &k.event_type;
    fields.push(&format!("events.{t}"), Some(k.events as f64));
    fields.push(&format!("per_hour.{t}"), Some(k.per_hour));
    fields.push(&format!("cameras.{t}"), Some(f64::from(k.cameras)));
    fields.push("violations_per_100_vehicles", k.violations_per_100_vehicles);
}

fn air_fields(k: &AqiKpi, fields: &mut Fields) {
    let suffix = match k.period {
        AqiPeriod::Hour => "",
        AqiPeriod::Day => "_day",
    };
    let index = |v: Option<u32>| v.map(f64::from);
    let values = [
        ("aqi", index(k.aqi)),
        ("pm25", k.pm25),
        ("pm10", k.pm10),
        ("o3", k.o3),
        ("no2", k.no2),
        ("so2", k.so2),
        ("co", k.co),
        ("o3_8h", k.o3_8h),
        ("aqi_pm25", index(k.aqi_pm25)),
        ("aqi_pm10", index(k.aqi_pm10)),
        ("aqi_o3", index(k.aqi_o3)),
        ("aqi_no2", index(k.aqi_no2)),
        ("aqi_so2", index(k.aqi_so2)),
        ("aqi_co", index(k.aqi_co)),
    ];
    for (name, v) in values {
        fields.push(&format!("{name}{suffix}"), v);
    }
}

fn hydrology_fields(k: &HydrologyKpi, fields: &mut Fields) {
    fields.push("rain_mm", k.rain_mm);
    fields.push("rain_1h_mm", k.rain_1h_mm);
    fields.push("rain_3h_mm", k.rain_3h_mm);
    fields.push("rain_12h_mm", k.rain_12h_mm);
    fields.push("rain_24h_mm", k.rain_24h_mm);
    fields.push("water_level_m", k.water_level_m);
    fields.push("rise_rate_m_per_h", k.rise_rate_m_per_h);
    fields.push("alarm_level", k.alarm_level.map(f64::from));
}

fn bridge_fields(k: &BridgeKpi, fields: &mut Fields) {
    fields.push("wind_mean_ms", k.wind_mean_ms);
    fields.push("wind_max_ms", k.wind_max_ms);
    fields.push("strain_mean_ue", k.strain_mean_ue);
    fields.push("strain_min_ue", k.strain_min_ue);
    fields.push("strain_max_ue", k.strain_max_ue);
    fields.push("temperature_c", k.temperature_c);
    fields.push("humidity_pct", k.humidity_pct);
}

/// Device rows: their own silence (`silent_s`, what absence rules read); rollups: the share
/// of their devices offline.
fn health_fields(k: &HealthKpi, event_ms: u64, fields: &mut Fields) {
    fields.push("offline", Some(f64::from(k.offline)));
    fields.push("completeness_pct", Some(k.completeness_pct));
    fields.push("readings", Some(k.readings as f64));
    if k.scope == Scope::Device {
        let silent = match k.last_seen_ms {
            Some(t) => event_ms.saturating_sub(t) as f64 / 1000.0,
            None => f64::INFINITY,
        };
        fields.push(SILENT_FIELD, Some(silent));
    } else {
        fields.push("online", Some(f64::from(k.online)));
        fields.push("devices", Some(f64::from(k.devices)));
        let pct = if k.devices == 0 {
            0.0
        } else {
            f64::from(k.offline) * 100.0 / f64::from(k.devices)
        };
        fields.push("offline_pct", Some(pct));
    }
}

/// A water row's `exceeded` observation (1 outside the national limits, else 0), about the
/// station's parameter (`<station>.<parameter>`).
fn water_exceeded(k: &WaterKpi, base: Observation) -> Observation {
    let Source::Kpi { family, scope, .. } = base.source else {
        return base;
    };
    Observation {
        source: Source::Kpi {
            family,
            scope,
            field: "exceeded".to_owned(),
        },
        entity_id: format!("{}.{}", k.station_id, k.parameter),
        value: f64::from(u8::from(k.exceeded)),
        ..base
    }
}

#[cfg(test)]
mod tests {
    use ioc_schemas::{Body, Congestion, EventTime, SensorBody};

    use super::*;
    use crate::testkit::{hydro, traffic_row, MIN, T0};

    #[test]
    fn reading_and_kpi_observations() {
        let reading = Reading {
            message_id: "m".into(),
            device_id: "b-1".into(),
            event_time: EventTime(T0),
            body: Body::Sensor(SensorBody {
                metric: "wind_speed_ms".into(),
                value: 12.5,
                unit: "m/s".into(),
            }),
        };
        let o = observations_of_reading(&reading, District::SonTra, Some(Department::Construction));
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].entity_id, "b-1");
        assert_eq!(o[0].value, 12.5);
        assert_eq!(o[0].event_ms, T0);
        let o = observations_of_kpi(&traffic_row("tl-1", T0, Congestion::F));
        assert!(o.iter().any(
            |o| matches!(&o.source, Source::Kpi { field, .. } if field == "level")
                && o.value == 6.0
        ));
        for o in &o {
            let Source::Kpi {
                family,
                scope,
                field,
            } = &o.source
            else {
                panic!()
            };
            assert!(kpi_field_known(*family, *scope, field), "{field}");
            assert_eq!(o.event_ms, T0 + 5 * MIN);
            assert_eq!(o.device_id.as_deref(), Some("tl-1"));
        }
        let rain = observations_of_kpi(&hydro("rg-1", District::HoaVang, T0, Some(12.0), None));
        let fields: Vec<String> = rain
            .iter()
            .filter_map(|o| match &o.source {
                Source::Kpi { field, .. } => Some(field.clone()),
                Source::Reading { .. } => None,
            })
            .collect();
        assert_eq!(
            fields,
            ["rain_mm", "rain_1h_mm", "rain_3h_mm", "rain_24h_mm"]
        );
        assert!(rain
            .iter()
            .all(|o| o.department == Some(Department::DisasterPrevention)));
    }
}
