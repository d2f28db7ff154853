//! The rule engine: turns observations of readings and KPIs into breaches and clears.
//!
//! Readings and KPI rows are first turned into [`Observation`]s (one number each:
//! [`observations_of_reading`], [`observations_of_kpi`]); [`Engine::observe`] runs the rules
//! that watch that number and returns a [`Verdict`] when the state of a (rule, entity) pair
//! changes, or when a breach repeats (so the lifecycle can count it). Composite rules are
//! re-evaluated whenever one of their inputs moves.
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
//!
//! # Bounded state
//!
//! The engine keeps, per (rule, entity), a few numbers (and, for rate-of-change rules, the
//! samples of the last `over_s`, at most [`MAX_RATE_SAMPLES`]). An entity not observed for
//! [`Engine::forget_after_ms`] of event time (default 24 h) is forgotten; if its condition was
//! breached, a clear verdict is returned then (its alert resolves after its hold time). A rule
//! tracks at most [`MAX_ENTITIES_PER_RULE`] entities; observations of further entities are
//! ignored (and logged) until some are forgotten.

use std::collections::{HashMap, HashSet, VecDeque};

use ioc_schemas::{Department, District, HealthKpi, Kind, Kpi, KpiFamily, Reading, Scope};
use serde::{Deserialize, Serialize};

use crate::model::{Category, Severity};
use crate::rules::{
    CompositeOp, CompositeScope, Condition, Rule, RuleDepartment, RuleSet, SourceRef,
};

/// How long an entity may stay unobserved (event time) before the engine forgets it: 24 h.
pub const DEFAULT_FORGET_AFTER_MS: u64 = 24 * 3_600_000;
/// The most (rule, entity) states one rule keeps.
pub const MAX_ENTITIES_PER_RULE: usize = 200_000;
/// The most samples a rate-of-change state keeps; older ones are dropped first.
pub const MAX_RATE_SAMPLES: usize = 4096;
/// How often (event time) silence-based clears (`clear_after_s`) are checked.
const SWEEP_EVERY_MS: u64 = 5_000;
/// How often (event time) stale entities are looked for.
const FORGET_EVERY_MS: u64 = 60_000;
/// The department of alerts whose rule says `owner` when the observation names none: Sở
/// Thông tin và Truyền thông, which runs the IOC.
pub const FALLBACK_DEPARTMENT: Department = Department::Information;

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

/// A change of the state of one (rule, entity) pair, or a repeated breach, for the lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The rule.
    pub rule_id: String,
    /// The entity.
    pub entity_id: String,
    /// The entity's district, if any.
    pub district: Option<District>,
    /// The department owning the alert.
    pub department: Department,
    /// The rule's severity.
    pub severity: Severity,
    /// The rule's category.
    pub category: Category,
    /// True: breached (newly, or again); false: cleared.
    pub breached: bool,
    /// The value behind it: the observed value, the rate per hour for rate-of-change rules,
    /// the silence in seconds for absence rules; none for composite rules and never-seen
    /// devices.
    pub value: Option<f64>,
    /// The event time it happened at, epoch ms.
    pub event_ms: u64,
    /// The rule's message, filled in.
    pub message: String,
    /// The rule's hold time, seconds.
    pub hold_s: u64,
    /// The rule's escalation delay, seconds, if it escalates.
    pub escalate_after_s: Option<u64>,
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

fn is_snake_name(s: &str) -> bool {
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
    let family = kpi.family();
    let (scope, window_ms) = match kpi {
        Kpi::Traffic(k) => (k.scope, k.window_size_ms),
        Kpi::Camera(k) => (Scope::District, k.window_size_ms),
        Kpi::Air(k) => (Scope::Device, k.window_size_ms),
        Kpi::Water(k) => (Scope::Device, k.window_size_ms),
        Kpi::Hydrology(k) => (Scope::Device, k.window_size_ms),
        Kpi::Bridge(k) => (Scope::Device, k.window_size_ms),
        Kpi::Health(k) => (k.scope, k.window_size_ms),
    };
    let event_ms = kpi.window_start_ms().saturating_add(window_ms);
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
    let base = Observation {
        source: Source::Kpi {
            family,
            scope,
            field: String::new(),
        },
        entity_id: entity,
        device_id,
        district: kpi.district(),
        department,
        event_ms,
        window_ms,
        value: 0.0,
        expected_interval_s: None,
    };
    let mut fields: Vec<(String, f64)> = Vec::new();
    let mut push = |name: &str, value: Option<f64>| {
        if let Some(v) = value {
            fields.push((name.to_owned(), v));
        }
    };
    match kpi {
        Kpi::Traffic(k) => {
            let level = match k.level {
                ioc_schemas::Congestion::A => 1.0,
                ioc_schemas::Congestion::B => 2.0,
                ioc_schemas::Congestion::C => 3.0,
                ioc_schemas::Congestion::D => 4.0,
                ioc_schemas::Congestion::E => 5.0,
                ioc_schemas::Congestion::F => 6.0,
            };
            push("level", Some(level));
            push("volume_veh_h", Some(k.volume_veh_h));
            push("occupancy_pct", Some(k.occupancy_pct));
            push("mean_speed_kmh", Some(k.mean_speed_kmh));
            push("queue_m", Some(k.queue_m));
            push("availability_pct", Some(k.availability_pct));
            push("junctions", Some(f64::from(k.junctions)));
        }
        Kpi::Camera(k) => {
            let t = &k.event_type;
            push(&format!("events.{t}"), Some(k.events as f64));
            push(&format!("per_hour.{t}"), Some(k.per_hour));
            push(&format!("cameras.{t}"), Some(f64::from(k.cameras)));
            push("violations_per_100_vehicles", k.violations_per_100_vehicles);
        }
        Kpi::Air(k) => {
            let suffix = match k.period {
                ioc_schemas::AqiPeriod::Hour => "",
                ioc_schemas::AqiPeriod::Day => "_day",
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
                push(&format!("{name}{suffix}"), v);
            }
        }
        Kpi::Water(k) => {
            push(&k.parameter, Some(k.value));
        }
        Kpi::Hydrology(k) => {
            push("rain_mm", k.rain_mm);
            push("rain_1h_mm", k.rain_1h_mm);
            push("rain_3h_mm", k.rain_3h_mm);
            push("rain_12h_mm", k.rain_12h_mm);
            push("rain_24h_mm", k.rain_24h_mm);
            push("water_level_m", k.water_level_m);
            push("rise_rate_m_per_h", k.rise_rate_m_per_h);
            push("alarm_level", k.alarm_level.map(f64::from));
        }
        Kpi::Bridge(k) => {
            push("wind_mean_ms", k.wind_mean_ms);
            push("wind_max_ms", k.wind_max_ms);
            push("strain_mean_ue", k.strain_mean_ue);
            push("strain_min_ue", k.strain_min_ue);
            push("strain_max_ue", k.strain_max_ue);
            push("temperature_c", k.temperature_c);
            push("humidity_pct", k.humidity_pct);
        }
        Kpi::Health(k) => {
            push("offline", Some(f64::from(k.offline)));
            push("completeness_pct", Some(k.completeness_pct));
            push("readings", Some(k.readings as f64));
            if k.scope == Scope::Device {
                let silent = match k.last_seen_ms {
                    Some(t) => event_ms.saturating_sub(t) as f64 / 1000.0,
                    None => f64::INFINITY,
                };
                push(SILENT_FIELD, Some(silent));
            } else {
                push("online", Some(f64::from(k.online)));
                push("devices", Some(f64::from(k.devices)));
                let pct = if k.devices == 0 {
                    0.0
                } else {
                    f64::from(k.offline) * 100.0 / f64::from(k.devices)
                };
                push("offline_pct", Some(pct));
            }
        }
    }
    let mut out: Vec<Observation> = fields
        .into_iter()
        .map(|(field, value)| {
            let mut o = base.clone();
            o.source = Source::Kpi {
                family,
                scope,
                field,
            };
            o.value = value;
            if let Kpi::Health(h) = kpi {
                if h.scope == Scope::Device {
                    o.expected_interval_s = interval_of(h);
                }
            }
            o
        })
        .collect();
    if let Kpi::Water(k) = kpi {
        let mut o = base;
        o.source = Source::Kpi {
            family,
            scope,
            field: "exceeded".to_owned(),
        };
        o.entity_id = format!("{}.{}", k.station_id, k.parameter);
        o.value = f64::from(u8::from(k.exceeded));
        out.push(o);
    }
    out
}

// ---------------------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------------------

/// The lookup key of a source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SourceKey {
    Reading(String),
    Kpi(KpiFamily, Scope, String),
}

impl SourceKey {
    fn of(source: &Source) -> SourceKey {
        match source {
            Source::Reading { metric, .. } => SourceKey::Reading(metric.clone()),
            Source::Kpi {
                family,
                scope,
                field,
            } => SourceKey::Kpi(*family, *scope, field.clone()),
        }
    }
}

/// How a rule is evaluated.
#[derive(Debug, Clone)]
enum Eval {
    Above {
        level: f64,
        clear: f64,
    },
    Below {
        level: f64,
        clear: f64,
    },
    Rate {
        over_ms: u64,
        rise: Option<f64>,
        fall: Option<f64>,
    },
    Absence {
        intervals: f64,
    },
    Composite {
        op: CompositeOp,
        inputs: Vec<usize>,
        devices: Option<(Vec<String>, String)>,
    },
}

/// A rule ready to run.
#[derive(Debug, Clone)]
struct Compiled {
    eval: Eval,
    kind: Option<Kind>,
    for_ms: u64,
    clear_after_ms: Option<u64>,
    devices: HashSet<String>,
}

/// Where a (rule, entity) pair stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not evaluated yet (new, or after a restart).
    Unknown,
    /// Not breached.
    Clear,
    /// Breached since this event time, waiting for `for_s`.
    Pending(u64),
    /// Breached long enough: reported as breached.
    Open,
}

/// The state of one (rule, entity) pair.
#[derive(Debug, Clone)]
struct EntityState {
    phase: Phase,
    last_event_ms: u64,
    last_breach_ms: u64,
    first_seen_ms: u64,
    value: Option<f64>,
    district: Option<District>,
    device_id: Option<String>,
    department: Option<Department>,
    /// Where it was counted while open: (district, device).
    counted: Option<(Option<District>, Option<String>)>,
    history: VecDeque<(u64, f64)>,
}

impl EntityState {
    fn new(first_seen_ms: u64) -> EntityState {
        EntityState {
            phase: Phase::Unknown,
            last_event_ms: 0,
            last_breach_ms: 0,
            first_seen_ms,
            value: None,
            district: None,
            device_id: None,
            department: None,
            counted: None,
            history: VecDeque::new(),
        }
    }
}

/// The states of one rule, with the number of open states per district and per device (what
/// composite rules read).
#[derive(Debug, Clone, Default)]
struct RuleState {
    entities: HashMap<String, EntityState>,
    open_by_district: HashMap<District, u32>,
    open_by_device: HashMap<String, u32>,
    warned_full: bool,
}

impl RuleState {
    fn count(&mut self, entity: &str, open: bool) {
        let Some(st) = self.entities.get_mut(entity) else {
            return;
        };
        if open {
            if st.counted.is_some() {
                return;
            }
            let key = (st.district, st.device_id.clone());
            if let Some(d) = key.0 {
                *self.open_by_district.entry(d).or_insert(0) += 1;
            }
            if let Some(dev) = &key.1 {
                *self.open_by_device.entry(dev.clone()).or_insert(0) += 1;
            }
            st.counted = Some(key);
        } else if let Some((district, device)) = st.counted.take() {
            if let Some(d) = district {
                if let Some(n) = self.open_by_district.get_mut(&d) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.open_by_district.remove(&d);
                    }
                }
            }
            if let Some(dev) = device {
                if let Some(n) = self.open_by_device.get_mut(&dev) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.open_by_device.remove(&dev);
                    }
                }
            }
        }
    }
}

/// What one evaluation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Breached long enough: newly open.
    Opened,
    /// Still breached.
    Repeat,
    /// Was open, now clear.
    Cleared,
    /// First evaluation, clear (lets the lifecycle resolve an alert left open by a restart).
    InitialClear,
}

/// A (rule, entity) pair that moved, for composite propagation.
#[derive(Debug, Clone)]
struct Moved {
    rule: usize,
    district: Option<District>,
    device: Option<String>,
    event_ms: u64,
}

/// The rule engine. See the module docs.
#[derive(Debug)]
pub struct Engine {
    rules: RuleSet,
    compiled: Vec<Option<Compiled>>,
    by_id: HashMap<String, usize>,
    by_source: HashMap<SourceKey, Vec<usize>>,
    dependents: Vec<Vec<usize>>,
    sweeping: Vec<usize>,
    states: Vec<RuleState>,
    clock_ms: u64,
    next_sweep_ms: u64,
    next_forget_ms: u64,
    forget_after_ms: u64,
}

fn ms(seconds: i64) -> u64 {
    u64::try_from(seconds).unwrap_or(0).saturating_mul(1000)
}

fn secs(seconds: i64) -> u64 {
    u64::try_from(seconds).unwrap_or(0)
}

/// Whether two versions of a rule evaluate the same way (so its state can be kept).
fn same_evaluation(a: &Rule, b: &Rule) -> bool {
    a.enabled == b.enabled
        && a.source == b.source
        && a.condition == b.condition
        && a.for_s == b.for_s
        && a.clear_after_s == b.clear_after_s
        && a.districts == b.districts
        && a.devices == b.devices
}

impl Engine {
    /// An engine running these rules.
    pub fn new(rules: RuleSet) -> Engine {
        let mut engine = Engine {
            rules: RuleSet::empty(),
            compiled: Vec::new(),
            by_id: HashMap::new(),
            by_source: HashMap::new(),
            dependents: Vec::new(),
            sweeping: Vec::new(),
            states: Vec::new(),
            clock_ms: 0,
            next_sweep_ms: 0,
            next_forget_ms: 0,
            forget_after_ms: DEFAULT_FORGET_AFTER_MS,
        };
        engine.install(rules, Vec::new());
        engine
    }

    /// Sets how long (event time, ms) an unobserved entity is kept; at least one minute.
    pub fn set_forget_after_ms(&mut self, forget_after_ms: u64) {
        self.forget_after_ms = forget_after_ms.max(FORGET_EVERY_MS);
    }

    /// How long (event time, ms) an unobserved entity is kept.
    pub fn forget_after_ms(&self) -> u64 {
        self.forget_after_ms
    }

    /// The rules running.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The newest event time seen, epoch ms.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// How many (rule, entity) states are kept.
    pub fn tracked(&self) -> usize {
        self.states.iter().map(|s| s.entities.len()).sum()
    }

    /// Swaps in a new rule set without a restart. Rules that evaluate as before (same source,
    /// condition, `for_s`, `clear_after_s` and filters; name, severity, message and the like
    /// may change) keep their state. Returns clear verdicts for the entities that were
    /// breached under a rule that was removed, disabled, changed or set not to raise alerts,
    /// so their alerts resolve (after the hold time); a changed rule starts afresh.
    pub fn set_rules(&mut self, rules: RuleSet) -> Vec<Verdict> {
        let old_rules = std::mem::take(&mut self.rules);
        let mut old_states: HashMap<String, RuleState> = old_rules
            .rules()
            .iter()
            .zip(std::mem::take(&mut self.states))
            .map(|(r, s)| (r.id.clone(), s))
            .collect();
        let mut kept: Vec<(usize, RuleState)> = Vec::new();
        let mut verdicts = Vec::new();
        for old in old_rules.rules() {
            let Some(state) = old_states.remove(&old.id) else {
                continue;
            };
            let new = rules
                .rules()
                .iter()
                .enumerate()
                .find(|(_, r)| r.id == old.id);
            if let Some((i, r)) = new {
                if same_evaluation(old, r) && old.enabled {
                    if old.raises_alerts && !r.raises_alerts {
                        verdicts.extend(clears_of(old, &state));
                    }
                    kept.push((i, state));
                    continue;
                }
            }
            if old.raises_alerts && old.enabled {
                verdicts.extend(clears_of(old, &state));
            }
        }
        self.install(rules, kept);
        verdicts
    }

    fn install(&mut self, rules: RuleSet, kept: Vec<(usize, RuleState)>) {
        let n = rules.len();
        self.by_id = rules
            .rules()
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        self.compiled = Vec::with_capacity(n);
        self.by_source = HashMap::new();
        self.dependents = vec![Vec::new(); n];
        self.sweeping = Vec::new();
        self.states = vec![RuleState::default(); n];
        for (i, state) in kept {
            if let Some(slot) = self.states.get_mut(i) {
                *slot = state;
            }
        }
        for (i, rule) in rules.rules().iter().enumerate() {
            let compiled = self.compile(rule);
            if let Some(c) = &compiled {
                if let Eval::Composite { inputs, .. } = &c.eval {
                    for j in inputs {
                        if let Some(d) = self.dependents.get_mut(*j) {
                            d.push(i);
                        }
                    }
                }
                if c.clear_after_ms.is_some() {
                    self.sweeping.push(i);
                }
                let key = match (
                    &rule.condition,
                    rule.source.as_ref().and_then(|s| s.resolve()),
                ) {
                    (Condition::Absence { .. }, _) => Some(SourceKey::Kpi(
                        KpiFamily::Health,
                        Scope::Device,
                        SILENT_FIELD.to_owned(),
                    )),
                    (_, Some(SourceRef::Reading { metric, .. })) => {
                        Some(SourceKey::Reading(metric))
                    }
                    (
                        _,
                        Some(SourceRef::Kpi {
                            family,
                            scope,
                            field,
                        }),
                    ) => Some(SourceKey::Kpi(family, scope, field)),
                    (_, None) => None,
                };
                if let Some(key) = key {
                    self.by_source.entry(key).or_default().push(i);
                }
            }
            self.compiled.push(compiled);
        }
        self.rules = rules;
    }

    fn compile(&self, rule: &Rule) -> Option<Compiled> {
        if !rule.enabled {
            return None;
        }
        let eval = match &rule.condition {
            Condition::Threshold {
                above: Some(level),
                clear,
                ..
            } => Eval::Above {
                level: *level,
                clear: clear.unwrap_or(*level),
            },
            Condition::Threshold {
                below: Some(level),
                clear,
                ..
            } => Eval::Below {
                level: *level,
                clear: clear.unwrap_or(*level),
            },
            Condition::Threshold { .. } => return None,
            Condition::RateOfChange {
                over_s,
                rise_above,
                fall_below,
            } => Eval::Rate {
                over_ms: ms(*over_s),
                rise: *rise_above,
                fall: *fall_below,
            },
            Condition::Absence { intervals } => Eval::Absence {
                intervals: *intervals,
            },
            Condition::Composite { op, of, scope } => Eval::Composite {
                op: *op,
                inputs: of
                    .iter()
                    .filter_map(|id| self.by_id.get(id).copied())
                    .collect(),
                devices: match scope {
                    CompositeScope::District => None,
                    CompositeScope::Devices(list) => Some((list.clone(), list.join("+"))),
                },
            },
        };
        let kind = match rule.source.as_ref().and_then(|s| s.resolve()) {
            Some(SourceRef::Reading { kind, .. }) => kind,
            _ => None,
        };
        Some(Compiled {
            eval,
            kind,
            for_ms: ms(rule.for_s),
            clear_after_ms: rule.clear_after_s.map(ms),
            devices: rule.devices.iter().cloned().collect(),
        })
    }

    /// Runs the rules watching this observation. Returns the verdicts of the (rule, entity)
    /// pairs whose state changed or whose breach repeats, those of composite rules that moved
    /// with them, and those of the periodic checks the observation's event time makes due
    /// (silence-based clears, forgotten entities). An observation older than the last one of
    /// the same (rule, entity) is ignored by that rule.
    pub fn observe(&mut self, obs: &Observation) -> Vec<Verdict> {
        let mut verdicts = Vec::new();
        let mut moved = Vec::new();
        let candidates = self
            .by_source
            .get(&SourceKey::of(&obs.source))
            .cloned()
            .unwrap_or_default();
        for i in candidates {
            if !self.accepts(i, obs) {
                continue;
            }
            if let Some(change) = self.step(i, obs) {
                self.report(i, &obs.entity_id, change, obs.event_ms, &mut verdicts);
                moved.push(Moved {
                    rule: i,
                    district: obs.district,
                    device: obs.device_id.clone(),
                    event_ms: obs.event_ms,
                });
            }
        }
        self.propagate(moved, &mut verdicts);
        verdicts.extend(self.advance(obs.event_ms));
        verdicts
    }

    /// Moves the engine's event-time clock to `event_ms` (if later) and runs the checks that
    /// are due: silence-based clears of rules with `clear_after_s`, and forgetting entities
    /// not observed for [`Engine::forget_after_ms`]. `observe` calls it; call it too on
    /// watermarks or heartbeats so quiet sources still clear.
    pub fn advance(&mut self, event_ms: u64) -> Vec<Verdict> {
        self.clock_ms = self.clock_ms.max(event_ms);
        let mut verdicts = Vec::new();
        if self.clock_ms >= self.next_sweep_ms {
            self.next_sweep_ms = self.clock_ms.saturating_add(SWEEP_EVERY_MS);
            self.sweep(&mut verdicts);
        }
        if self.clock_ms >= self.next_forget_ms {
            self.next_forget_ms = self.clock_ms.saturating_add(FORGET_EVERY_MS);
            self.forget(&mut verdicts);
        }
        verdicts
    }

    fn accepts(&self, i: usize, obs: &Observation) -> bool {
        let (Some(Some(c)), Some(rule)) = (self.compiled.get(i), self.rules.rules().get(i)) else {
            return false;
        };
        if let (Some(kind), Source::Reading { kind: k, .. }) = (c.kind, &obs.source) {
            if kind != *k {
                return false;
            }
        }
        if !rule.districts.is_empty() && !obs.district.is_some_and(|d| rule.districts.contains(&d))
        {
            return false;
        }
        if !c.devices.is_empty() {
            let device = obs.device_id.as_deref().unwrap_or(&obs.entity_id);
            if !c.devices.contains(device) {
                return false;
            }
        }
        true
    }

    /// Evaluates a source rule on an observation and moves its state.
    fn step(&mut self, i: usize, obs: &Observation) -> Option<Change> {
        let c = self.compiled.get(i)?.as_ref()?;
        let eval = c.eval.clone();
        let for_ms = c.for_ms;
        let state = self.states.get_mut(i)?;
        if !state.entities.contains_key(&obs.entity_id) {
            if state.entities.len() >= MAX_ENTITIES_PER_RULE {
                if !state.warned_full {
                    state.warned_full = true;
                    let rule = self.rules.rules().get(i).map_or("", |r| r.id.as_str());
                    tracing::warn!(
                        rule,
                        limit = MAX_ENTITIES_PER_RULE,
                        "alert rule tracks too many entities; new ones are ignored until some are forgotten"
                    );
                }
                return None;
            }
            state.entities.insert(
                obs.entity_id.clone(),
                EntityState::new(obs.event_ms.saturating_sub(obs.window_ms)),
            );
        }
        let st = state.entities.get_mut(&obs.entity_id)?;
        if obs.event_ms < st.last_event_ms {
            return None;
        }
        st.last_event_ms = obs.event_ms;
        if obs.district.is_some() {
            st.district = obs.district;
        }
        if obs.device_id.is_some() {
            st.device_id.clone_from(&obs.device_id);
        }
        if obs.department.is_some() {
            st.department = obs.department;
        }
        let was_breached = matches!(st.phase, Phase::Pending(_) | Phase::Open);
        let v = obs.value;
        let (breached, value) = match eval {
            Eval::Above { level, clear } => {
                if v.is_nan() {
                    return None;
                }
                (if was_breached { v >= clear } else { v >= level }, Some(v))
            }
            Eval::Below { level, clear } => {
                if v.is_nan() {
                    return None;
                }
                (if was_breached { v <= clear } else { v <= level }, Some(v))
            }
            Eval::Rate {
                over_ms,
                rise,
                fall,
            } => {
                if !v.is_finite() {
                    return None;
                }
                st.history.push_back((obs.event_ms, v));
                let cutoff = obs.event_ms.saturating_sub(over_ms);
                // Keep one sample at or before the cutoff as the anchor.
                while st.history.len() > 2 && st.history.get(1).is_some_and(|s| s.0 <= cutoff) {
                    st.history.pop_front();
                }
                while st.history.len() > MAX_RATE_SAMPLES {
                    st.history.pop_front();
                }
                let (t0, v0) = *st.history.front()?;
                let dt = obs.event_ms.saturating_sub(t0);
                if dt == 0 || dt.saturating_mul(2) < over_ms {
                    return None;
                }
                let rate = (v - v0) * 3_600_000.0 / dt as f64;
                let breached = match (rise, fall) {
                    (Some(r), _) => rate >= r,
                    (None, Some(f)) => rate <= f,
                    (None, None) => false,
                };
                (breached, Some(rate))
            }
            Eval::Absence { intervals } => {
                let interval = f64::from(obs.expected_interval_s?);
                let limit = intervals * interval;
                if v.is_finite() {
                    (v >= limit, Some(v))
                } else {
                    let silent = obs.event_ms.saturating_sub(st.first_seen_ms) as f64 / 1000.0;
                    (silent >= limit, None)
                }
            }
            Eval::Composite { .. } => return None,
        };
        st.value = value;
        if breached {
            st.last_breach_ms = obs.event_ms;
        }
        let change = transition(st, breached, obs.event_ms, obs.window_ms, for_ms);
        match change {
            Some(Change::Opened) => state.count(&obs.entity_id, true),
            Some(Change::Cleared) => state.count(&obs.entity_id, false),
            _ => {}
        }
        change
    }

    /// Re-evaluates the composite rules that depend on what moved, transitively.
    fn propagate(&mut self, mut moved: Vec<Moved>, verdicts: &mut Vec<Verdict>) {
        // Composite rules form a DAG (validated), so this ends.
        while let Some(m) = moved.pop() {
            let dependents = self.dependents.get(m.rule).cloned().unwrap_or_default();
            for c in dependents {
                let Some(Some(Compiled {
                    eval: Eval::Composite { devices, .. },
                    ..
                })) = self.compiled.get(c)
                else {
                    continue;
                };
                let key = match devices {
                    None => match m.district {
                        Some(d) => d.slug().to_owned(),
                        None => continue,
                    },
                    Some((list, entity)) => {
                        if !m.device.as_ref().is_some_and(|d| list.contains(d)) {
                            continue;
                        }
                        entity.clone()
                    }
                };
                if let Some(rule) = self.rules.rules().get(c) {
                    if !rule.districts.is_empty()
                        && !m.district.is_some_and(|d| rule.districts.contains(&d))
                    {
                        continue;
                    }
                }
                if let Some(change) = self.step_composite(c, &key, m.district, m.event_ms) {
                    self.report(c, &key, change, m.event_ms, verdicts);
                    let district = self
                        .states
                        .get(c)
                        .and_then(|s| s.entities.get(&key))
                        .and_then(|s| s.district);
                    moved.push(Moved {
                        rule: c,
                        district,
                        device: None,
                        event_ms: m.event_ms,
                    });
                }
            }
        }
    }

    fn step_composite(
        &mut self,
        c: usize,
        key: &str,
        district: Option<District>,
        event_ms: u64,
    ) -> Option<Change> {
        let compiled = self.compiled.get(c)?.as_ref()?;
        let for_ms = compiled.for_ms;
        let Eval::Composite {
            op,
            inputs,
            devices,
        } = &compiled.eval
        else {
            return None;
        };
        let input_breached = |j: &usize| -> bool {
            let Some(s) = self.states.get(*j) else {
                return false;
            };
            match devices {
                None => District::from_slug(key)
                    .is_some_and(|d| s.open_by_district.get(&d).is_some_and(|n| *n > 0)),
                Some((list, _)) => list
                    .iter()
                    .any(|dev| s.open_by_device.get(dev).is_some_and(|n| *n > 0)),
            }
        };
        let breached = match op {
            CompositeOp::All => inputs.iter().all(input_breached),
            CompositeOp::Any => inputs.iter().any(input_breached),
        };
        let department = match self.rules.rules().get(c).map(|r| r.department) {
            Some(RuleDepartment::Fixed(d)) => Some(d),
            _ => None,
        };
        let state = self.states.get_mut(c)?;
        let st = state
            .entities
            .entry(key.to_owned())
            .or_insert_with(|| EntityState::new(event_ms));
        // A late input is evaluated at the newest time seen.
        let at = event_ms.max(st.last_event_ms);
        st.last_event_ms = at;
        if district.is_some() {
            st.district = district;
        }
        st.department = department;
        st.value = None;
        if breached {
            st.last_breach_ms = at;
        }
        let change = transition(st, breached, at, 0, for_ms);
        match change {
            Some(Change::Opened) => state.count(key, true),
            Some(Change::Cleared) => state.count(key, false),
            _ => {}
        }
        change
    }

    /// Clears breaches whose source went silent for `clear_after_s`.
    fn sweep(&mut self, verdicts: &mut Vec<Verdict>) {
        let mut moved = Vec::new();
        let clock = self.clock_ms;
        for i in self.sweeping.clone() {
            let Some(Some(after)) = self
                .compiled
                .get(i)
                .map(|c| c.as_ref().and_then(|c| c.clear_after_ms))
            else {
                continue;
            };
            let due: Vec<(String, u64, bool)> = match self.states.get(i) {
                Some(state) => state
                    .entities
                    .iter()
                    .filter(|(_, s)| matches!(s.phase, Phase::Pending(_) | Phase::Open))
                    .filter(|(_, s)| s.last_breach_ms.saturating_add(after) <= clock)
                    .map(|(k, s)| {
                        (
                            k.clone(),
                            s.last_breach_ms.saturating_add(after),
                            s.phase == Phase::Open,
                        )
                    })
                    .collect(),
                None => continue,
            };
            for (entity, at, was_open) in due {
                let Some(state) = self.states.get_mut(i) else {
                    continue;
                };
                let Some(st) = state.entities.get_mut(&entity) else {
                    continue;
                };
                st.phase = Phase::Clear;
                let (district, device) = (st.district, st.device_id.clone());
                if was_open {
                    state.count(&entity, false);
                    self.report(i, &entity, Change::Cleared, at, verdicts);
                    moved.push(Moved {
                        rule: i,
                        district,
                        device,
                        event_ms: at,
                    });
                }
            }
        }
        self.propagate(moved, verdicts);
    }

    /// Forgets entities not observed for `forget_after_ms`; an open one is cleared first.
    fn forget(&mut self, verdicts: &mut Vec<Verdict>) {
        let horizon = self.clock_ms.saturating_sub(self.forget_after_ms);
        if horizon == 0 {
            return;
        }
        let mut moved = Vec::new();
        for i in 0..self.states.len() {
            let stale: Vec<(String, bool)> = match self.states.get(i) {
                Some(s) => s
                    .entities
                    .iter()
                    .filter(|(_, st)| st.last_event_ms < horizon)
                    .map(|(k, st)| (k.clone(), st.phase == Phase::Open))
                    .collect(),
                None => continue,
            };
            for (entity, was_open) in stale {
                if was_open {
                    let clock = self.clock_ms;
                    if let Some(state) = self.states.get_mut(i) {
                        state.count(&entity, false);
                    }
                    self.report(i, &entity, Change::Cleared, clock, verdicts);
                    let (district, device) = self
                        .states
                        .get(i)
                        .and_then(|s| s.entities.get(&entity))
                        .map_or((None, None), |st| (st.district, st.device_id.clone()));
                    moved.push(Moved {
                        rule: i,
                        district,
                        device,
                        event_ms: clock,
                    });
                }
                if let Some(state) = self.states.get_mut(i) {
                    state.entities.remove(&entity);
                }
            }
        }
        self.propagate(moved, verdicts);
    }

    /// Turns a change into a verdict, if the rule raises alerts.
    fn report(
        &self,
        i: usize,
        entity: &str,
        change: Change,
        event_ms: u64,
        verdicts: &mut Vec<Verdict>,
    ) {
        let Some(rule) = self.rules.rules().get(i) else {
            return;
        };
        if !rule.raises_alerts {
            return;
        }
        let Some(st) = self.states.get(i).and_then(|s| s.entities.get(entity)) else {
            return;
        };
        verdicts.push(verdict_of(
            rule,
            entity,
            st,
            matches!(change, Change::Opened | Change::Repeat),
            event_ms,
        ));
    }
}

/// Moves a state with a fresh evaluation.
fn transition(
    st: &mut EntityState,
    breached: bool,
    event_ms: u64,
    window_ms: u64,
    for_ms: u64,
) -> Option<Change> {
    if breached {
        match st.phase {
            Phase::Open => Some(Change::Repeat),
            phase => {
                let since = match phase {
                    Phase::Pending(s) => s,
                    _ => event_ms.saturating_sub(window_ms),
                };
                if event_ms.saturating_sub(since) >= for_ms {
                    st.phase = Phase::Open;
                    Some(Change::Opened)
                } else {
                    st.phase = Phase::Pending(since);
                    None
                }
            }
        }
    } else {
        let before = st.phase;
        st.phase = Phase::Clear;
        match before {
            Phase::Open => Some(Change::Cleared),
            Phase::Unknown => Some(Change::InitialClear),
            Phase::Clear | Phase::Pending(_) => None,
        }
    }
}

/// The clear verdicts of every open entity of a rule (when the rule goes away).
fn clears_of(rule: &Rule, state: &RuleState) -> Vec<Verdict> {
    state
        .entities
        .iter()
        .filter(|(_, st)| st.phase == Phase::Open)
        .map(|(entity, st)| verdict_of(rule, entity, st, false, st.last_event_ms))
        .collect()
}

fn verdict_of(
    rule: &Rule,
    entity: &str,
    st: &EntityState,
    breached: bool,
    event_ms: u64,
) -> Verdict {
    let department = match rule.department {
        RuleDepartment::Fixed(d) => d,
        RuleDepartment::Owner => st.department.unwrap_or(FALLBACK_DEPARTMENT),
    };
    Verdict {
        rule_id: rule.id.clone(),
        entity_id: entity.to_owned(),
        district: st.district,
        department,
        severity: rule.severity,
        category: rule.category,
        breached,
        value: st.value,
        event_ms,
        message: render_message(
            &rule.message,
            st.value,
            entity,
            st.district,
            department,
            &rule.name,
        ),
        hold_s: secs(rule.hold_s),
        escalate_after_s: rule.escalate_after_s.map(secs),
    }
}

/// A value as a message shows it: whole numbers without decimals, others with at most two.
pub fn format_value(value: Option<f64>) -> String {
    match value {
        None => "–".to_owned(),
        Some(v) if !v.is_finite() => "–".to_owned(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => {
            let text = format!("{v:.2}");
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
    }
}

/// Fills a rule's message template.
pub fn render_message(
    template: &str,
    value: Option<f64>,
    entity: &str,
    district: Option<District>,
    department: Department,
    rule_name: &str,
) -> String {
    template
        .replace("{value}", &format_value(value))
        .replace("{entity}", entity)
        .replace("{district}", district.map_or("", |d| d.name_vi()))
        .replace("{department}", department.name_vi())
        .replace("{rule}", rule_name)
}

#[cfg(test)]
mod tests {
    use ioc_schemas::{
        Body, Congestion, DeviceStatus, EventTime, HydrologyKpi, SensorBody, TrafficKpi,
    };

    use std::collections::BTreeSet;

    use super::*;
    use crate::rules::RuleSource;

    const T0: u64 = 1_795_827_600_000;
    const S: u64 = 1000;
    const MIN: u64 = 60 * S;

    fn base_rule(id: &str, source: RuleSource, condition: Condition) -> Rule {
        Rule {
            id: id.to_owned(),
            name: id.to_owned(),
            enabled: true,
            raises_alerts: true,
            severity: Severity::Warning,
            category: Category::Structure,
            department: RuleDepartment::Owner,
            source: Some(source),
            condition,
            for_s: 0,
            hold_s: 300,
            escalate_after_s: None,
            clear_after_s: None,
            districts: vec![],
            devices: vec![],
            message: "{rule}: {value} at {entity}".to_owned(),
        }
    }

    fn reading_source(metric: &str) -> RuleSource {
        RuleSource {
            reading: Some(metric.to_owned()),
            ..RuleSource::default()
        }
    }

    fn kpi_source(family: KpiFamily, field: &str) -> RuleSource {
        RuleSource {
            kpi: Some(family),
            field: Some(field.to_owned()),
            ..RuleSource::default()
        }
    }

    fn above(level: f64, clear: Option<f64>) -> Condition {
        Condition::Threshold {
            above: Some(level),
            below: None,
            clear,
        }
    }

    fn obs(metric: &str, device: &str, district: District, t: u64, value: f64) -> Observation {
        Observation {
            source: Source::Reading {
                metric: metric.to_owned(),
                kind: Kind::Sensor,
            },
            entity_id: device.to_owned(),
            device_id: Some(device.to_owned()),
            district: Some(district),
            department: Some(Department::Construction),
            event_ms: t,
            window_ms: 0,
            value,
            expected_interval_s: None,
        }
    }

    fn engine(rules: Vec<Rule>) -> Engine {
        Engine::new(RuleSet::from_rules(rules).unwrap())
    }

    /// Feeds values one per `step` ms and returns (time, breached) of each verdict.
    fn feed(e: &mut Engine, metric: &str, values: &[f64], step: u64) -> Vec<(u64, bool)> {
        values
            .iter()
            .enumerate()
            .flat_map(|(i, v)| {
                let t = T0 + i as u64 * step;
                e.observe(&obs(metric, "dev-1", District::HaiChau, t, *v))
                    .into_iter()
                    .map(|v| (v.event_ms - T0, v.breached))
            })
            .collect()
    }

    #[test]
    fn threshold_with_hysteresis_opens_repeats_and_clears_once() {
        let mut e = engine(vec![base_rule(
            "wind",
            reading_source("wind_speed_ms"),
            above(25.0, Some(20.0)),
        )]);
        // 10 clear (initial verdict), 26 breach, 22 still breached (above clear), 19 clears,
        // 24 does not re-breach (below 25).
        let v = feed(
            &mut e,
            "wind_speed_ms",
            &[10.0, 26.0, 22.0, 19.0, 24.0, 25.0],
            S,
        );
        assert_eq!(
            v,
            vec![
                (0, false),
                (S, true),
                (2 * S, true),
                (3 * S, false),
                (5 * S, true)
            ]
        );
        let mut e = engine(vec![base_rule(
            "wind",
            reading_source("wind_speed_ms"),
            above(25.0, Some(20.0)),
        )]);
        let verdicts = e.observe(&obs("wind_speed_ms", "b-1", District::SonTra, T0, 30.0));
        assert_eq!(verdicts.len(), 1);
        let v = &verdicts[0];
        assert_eq!(v.rule_id, "wind");
        assert_eq!(v.entity_id, "b-1");
        assert_eq!(v.district, Some(District::SonTra));
        assert_eq!(
            v.department,
            Department::Construction,
            "owner of the device"
        );
        assert_eq!(v.value, Some(30.0));
        assert_eq!(v.message, "wind: 30 at b-1");
        assert_eq!(v.hold_s, 300);
    }

    #[test]
    fn below_threshold_for_a_while() {
        let mut rule = base_rule(
            "signal",
            reading_source("signal_available"),
            Condition::Threshold {
                above: None,
                below: Some(0.0),
                clear: None,
            },
        );
        rule.for_s = 120;
        let mut e = engine(vec![rule]);
        // Readings every 30 s: faulted from 30 s; 120 s later (at 150 s) it opens.
        let values = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        let v = feed(&mut e, "signal_available", &values, 30 * S);
        assert_eq!(
            v,
            vec![
                (0, false),
                (150 * S, true),
                (180 * S, true),
                (210 * S, false)
            ]
        );
        // A fault shorter than for_s raises nothing.
        let mut rule = base_rule(
            "signal",
            reading_source("signal_available"),
            Condition::Threshold {
                above: None,
                below: Some(0.0),
                clear: None,
            },
        );
        rule.for_s = 120;
        let mut e = engine(vec![rule]);
        let v = feed(
            &mut e,
            "signal_available",
            &[1.0, 0.0, 0.0, 1.0, 0.0, 1.0],
            30 * S,
        );
        assert_eq!(v, vec![(0, false)]);
    }

    fn traffic_row(entity: &str, start: u64, level: Congestion) -> Kpi {
        Kpi::Traffic(TrafficKpi {
            scope: Scope::Device,
            entity_id: entity.to_owned(),
            district: District::HaiChau,
            window_start_ms: start,
            window_size_ms: 5 * MIN,
            junctions: 1,
            volume_veh_h: 1200.0,
            occupancy_pct: 40.0,
            mean_speed_kmh: 12.0,
            queue_m: 150.0,
            level,
            availability_pct: 100.0,
            free_flow_kmh: None,
            worst_level: None,
            covered_ms: None,
        })
    }

    /// Feeds one KPI row per step through the default rules and lists, after each, the open
    /// rules whose id starts with `prefix` (without it, sorted, comma-joined).
    fn open_default_rules(rows: impl IntoIterator<Item = Kpi>, prefix: &str) -> Vec<String> {
        let mut e = Engine::new(RuleSet::da_nang().unwrap());
        let mut open = BTreeSet::new();
        rows.into_iter()
            .map(|row| {
                for o in observations_of_kpi(&row) {
                    for v in e.observe(&o) {
                        if v.rule_id.starts_with(prefix) {
                            if v.breached {
                                open.insert(v.rule_id);
                            } else {
                                open.remove(&v.rule_id);
                            }
                        }
                    }
                }
                open.iter()
                    .map(|r| r.trim_start_matches(prefix))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    }

    #[test]
    fn bridge_wind_steps_by_beaufort_force_on_the_5_minute_mean() {
        let bridge = |i: u64, mean: f64| {
            Kpi::Bridge(ioc_schemas::BridgeKpi {
                device_id: "bridge-thuan_phuoc".into(),
                district: District::SonTra,
                window_start_ms: T0 + i * 5 * MIN,
                window_size_ms: 5 * MIN,
                wind_mean_ms: Some(mean),
                wind_max_ms: Some(mean * 1.4),
                strain_mean_ue: None,
                strain_min_ue: None,
                strain_max_ue: None,
                temperature_c: None,
                humidity_pct: None,
            })
        };
        // Each step at the force's lower bound (WMO): 10.7 is force 5, 10.8 force 6, 13.9
        // force 7, 24.5 force 10; then back down, each clearing below its margin.
        let means = [10.7, 10.8, 13.8, 13.9, 24.4, 24.5, 22.9, 12.9, 9.9];
        let rows = (0..).zip(means).map(|(i, mean)| bridge(i, mean));
        assert_eq!(
            open_default_rules(rows, "bridge_wind_"),
            [
                "",
                "force6",
                "force6",
                "force6,force7",
                "force6,force7",
                "force10,force6,force7",
                "force6,force7",
                "force6",
                "",
            ]
        );
    }

    fn hydrology_row(i: u64, gauge: &str, f: impl FnOnce(&mut HydrologyKpi)) -> Kpi {
        let mut row = HydrologyKpi {
            gauge_id: gauge.into(),
            district: District::HoaVang,
            window_start_ms: T0 + i * 5 * MIN,
            window_size_ms: 5 * MIN,
            rain_mm: None,
            rain_1h_mm: None,
            rain_3h_mm: None,
            rain_24h_mm: None,
            rain_12h_mm: None,
            water_level_m: None,
            rise_rate_m_per_h: None,
            coverage: 288,
            alarm_level: None,
        };
        f(&mut row);
        Kpi::Hydrology(row)
    }

    #[test]
    fn rain_totals_step_through_the_bands_of_decision_18_2021() {
        // (12-hour, 24-hour) totals, mm: each band's edge, then back down past each clear.
        let totals = [
            (49.9, 60.0),
            (50.0, 99.9),
            (60.0, 100.0),
            (60.0, 199.9),
            (60.0, 200.0),
            (60.0, 399.9),
            (60.0, 400.0),
            (45.0, 360.0),
            (45.0, 340.0),
            (45.0, 160.0),
            (39.9, 79.9),
        ];
        let rows = (0..).zip(totals).map(|(i, (h12, h24))| {
            hydrology_row(i, "rain-hoa_vang-01", |r| {
                r.rain_12h_mm = Some(h12);
                r.rain_24h_mm = Some(h24);
            })
        });
        assert_eq!(
            open_default_rules(rows, "rain_"),
            [
                "",
                "12h_50mm",
                "12h_50mm,24h_100mm",
                "12h_50mm,24h_100mm",
                "12h_50mm,24h_100mm,24h_200mm",
                "12h_50mm,24h_100mm,24h_200mm",
                "12h_50mm,24h_100mm,24h_200mm,24h_400mm",
                "12h_50mm,24h_100mm,24h_200mm,24h_400mm",
                "12h_50mm,24h_100mm,24h_200mm",
                "12h_50mm,24h_100mm",
                "",
            ]
        );
    }

    #[test]
    fn flood_alarm_rules_follow_the_level_reached() {
        let levels = [0, 1, 2, 3, 2, 1, 0];
        let rows = (0..).zip(levels).map(|(i, level)| {
            hydrology_row(i, "hydro-ai_nghia", |r| {
                r.water_level_m = Some(5.0 + f64::from(level));
                r.alarm_level = Some(level);
            })
        });
        assert_eq!(
            open_default_rules(rows, "flood_alarm_"),
            ["", "1", "1,2", "1,2,3", "1,2", "1", ""]
        );
    }

    #[test]
    fn for_s_over_kpi_windows_counts_from_the_window_start() {
        let mut rule = base_rule(
            "congestion",
            kpi_source(KpiFamily::Traffic, "level"),
            above(5.0, None),
        );
        rule.for_s = 600;
        let mut e = engine(vec![rule]);
        let mut out = Vec::new();
        for (i, level) in [
            Congestion::C,
            Congestion::E,
            Congestion::F,
            Congestion::E,
            Congestion::D,
        ]
        .into_iter()
        .enumerate()
        {
            let row = traffic_row("tl-1", T0 + i as u64 * 5 * MIN, level);
            for o in observations_of_kpi(&row) {
                out.extend(
                    e.observe(&o)
                        .into_iter()
                        .map(|v| (v.event_ms, v.breached, v.value)),
                );
            }
        }
        // Windows end at T0+5,10,15,20,25 min; E from the window starting at T0+5 min: after
        // two such windows (10 minutes), at T0+15 min, it opens.
        assert_eq!(
            out,
            vec![
                (T0 + 5 * MIN, false, Some(3.0)),
                (T0 + 15 * MIN, true, Some(6.0)),
                (T0 + 20 * MIN, true, Some(5.0)),
                (T0 + 25 * MIN, false, Some(4.0)),
            ]
        );
    }

    #[test]
    fn rate_of_change_per_hour() {
        let rule = base_rule(
            "level_rising",
            reading_source("water_level_m"),
            Condition::RateOfChange {
                over_s: 900,
                rise_above: Some(0.3),
                fall_below: None,
            },
        );
        let mut e = engine(vec![rule]);
        // Every 5 minutes: flat, then rising 0.05 m per 5 min (0.6 m/h), then flat.
        let levels = [1.0, 1.0, 1.0, 1.0, 1.05, 1.10, 1.15, 1.20, 1.20, 1.20, 1.20];
        let v: Vec<(u64, bool, Option<f64>)> = levels
            .iter()
            .enumerate()
            .flat_map(|(i, l)| {
                e.observe(&obs(
                    "water_level_m",
                    "fl-1",
                    District::CamLe,
                    T0 + i as u64 * 5 * MIN,
                    *l,
                ))
            })
            .map(|v| {
                (
                    (v.event_ms - T0) / MIN,
                    v.breached,
                    v.value.map(|r| (r * 100.0).round() / 100.0),
                )
            })
            .collect();
        // Nothing until the samples span half of 15 minutes (at 10 min); the rate over 15 min
        // reaches 0.4 m/h at 25 min (1.05 - 1.0 over 15 min = 0.2 m/h at 20 min).
        assert_eq!(
            v,
            vec![
                (10, false, Some(0.0)),
                (25, true, Some(0.4)),
                (30, true, Some(0.6)),
                (35, true, Some(0.6)),
                (40, true, Some(0.4)),
                (45, false, Some(0.2)),
            ]
        );
    }

    fn health_row(device: &str, end: u64, last_seen: Option<u64>) -> Kpi {
        Kpi::Health(HealthKpi {
            scope: Scope::Device,
            entity_id: device.to_owned(),
            district: Some(District::LienChieu),
            department: Some(Department::DisasterPrevention),
            window_start_ms: end - 5 * MIN,
            window_size_ms: 5 * MIN,
            devices: 1,
            online: 1,
            offline: 0,
            readings: 5,
            expected: 5,
            completeness_pct: 100.0,
            last_seen_ms: last_seen,
            status: Some(if last_seen.is_some() {
                DeviceStatus::Online
            } else {
                DeviceStatus::NeverSeen
            }),
        })
    }

    fn absence_rule() -> Rule {
        let mut r = base_rule(
            "offline",
            RuleSource::default(),
            Condition::Absence { intervals: 3.0 },
        );
        r.source = None;
        r.category = Category::DeviceHealth;
        r.message = "{entity} silent {value} s".to_owned();
        r
    }

    #[test]
    fn absence_uses_the_expected_interval_and_counts_never_seen() {
        let mut e = engine(vec![absence_rule()]);
        let run = |e: &mut Engine, row: &Kpi| -> Vec<Verdict> {
            observations_of_kpi(row)
                .iter()
                .flat_map(|o| e.observe(o))
                .collect()
        };
        // A 60 s gauge (5 expected per 5 min): absent after 180 s of silence.
        let row = health_row("rg-1", T0, Some(T0 - 30 * S));
        let o: Vec<_> = observations_of_kpi(&row)
            .into_iter()
            .filter(|o| matches!(&o.source, Source::Kpi { field, .. } if field == SILENT_FIELD))
            .collect();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].expected_interval_s, Some(60));
        assert_eq!(o[0].value, 30.0);
        let v = run(&mut e, &row);
        assert_eq!(v.len(), 1);
        assert!(!v[0].breached);
        let v = run(&mut e, &health_row("rg-1", T0 + 5 * MIN, Some(T0 - 30 * S)));
        assert_eq!(v.len(), 1);
        assert!(v[0].breached);
        assert_eq!(v[0].department, Department::DisasterPrevention);
        assert_eq!(v[0].value, Some(330.0));
        assert_eq!(v[0].message, "rg-1 silent 330 s");
        let v = run(
            &mut e,
            &health_row("rg-1", T0 + 10 * MIN, Some(T0 + 9 * MIN)),
        );
        assert!(!v[0].breached);

        // Never seen: silent since the start of the first window the engine saw. A 300 s
        // station (one reading expected per window) is absent after 900 s.
        let never = |end: u64| {
            let mut row = health_row("env-2", end, None);
            if let Kpi::Health(h) = &mut row {
                h.expected = 1;
            }
            row
        };
        let v = run(&mut e, &never(T0));
        assert_eq!(v.len(), 1);
        assert!(!v[0].breached);
        assert!(run(&mut e, &never(T0 + 5 * MIN)).is_empty());
        let v = run(&mut e, &never(T0 + 10 * MIN));
        assert_eq!(v.len(), 1);
        assert!(v[0].breached);
        assert_eq!(v[0].value, None);
        assert_eq!(v[0].message, "env-2 silent – s");
        // A 60 s gauge silent through its whole first window is absent at once.
        let v = run(&mut e, &health_row("rg-2", T0, None));
        assert!(v[0].breached);
    }

    fn hydro(
        gauge: &str,
        district: District,
        start: u64,
        rain: Option<f64>,
        rise: Option<f64>,
    ) -> Kpi {
        Kpi::Hydrology(HydrologyKpi {
            gauge_id: gauge.to_owned(),
            district,
            window_start_ms: start,
            window_size_ms: 5 * MIN,
            rain_mm: rain.map(|r| r / 12.0),
            rain_1h_mm: rain,
            rain_3h_mm: rain,
            rain_24h_mm: rain,
            rain_12h_mm: None,
            water_level_m: rise.map(|_| 2.0),
            rise_rate_m_per_h: rise,
            coverage: 12,
            alarm_level: None,
        })
    }

    fn flood_rules(scope: CompositeScope) -> Vec<Rule> {
        let mut rain = base_rule(
            "rain",
            kpi_source(KpiFamily::Hydrology, "rain_1h_mm"),
            above(30.0, None),
        );
        rain.raises_alerts = false;
        let mut rise = base_rule(
            "rise",
            kpi_source(KpiFamily::Hydrology, "rise_rate_m_per_h"),
            above(0.3, None),
        );
        rise.raises_alerts = false;
        let mut flood = base_rule(
            "flood",
            RuleSource::default(),
            Condition::Composite {
                op: CompositeOp::All,
                of: vec!["rain".into(), "rise".into()],
                scope,
            },
        );
        flood.source = None;
        flood.department = RuleDepartment::Fixed(Department::DisasterPrevention);
        flood.category = Category::Flood;
        flood.message = "Cảnh báo ngập: {district}".into();
        vec![rain, rise, flood]
    }

    fn run_kpi(e: &mut Engine, row: &Kpi) -> Vec<Verdict> {
        observations_of_kpi(row)
            .iter()
            .flat_map(|o| e.observe(o))
            .collect()
    }

    #[test]
    fn composite_in_a_district() {
        let mut e = engine(flood_rules(CompositeScope::District));
        let hc = District::HaiChau;
        // Heavy rain alone: the inputs raise nothing; the composite starts clear.
        let v = run_kpi(&mut e, &hydro("rg-1", hc, T0, Some(40.0), None));
        assert!(
            v.iter().all(|v| v.rule_id == "flood" && !v.breached),
            "{v:?}"
        );
        // Rising water in another district: no flood warning in Hải Châu.
        let v = run_kpi(&mut e, &hydro("fl-9", District::CamLe, T0, None, Some(0.5)));
        assert!(v.iter().all(|v| !v.breached), "{v:?}");
        // Rising water in Hải Châu too: the warning opens for the district.
        let v = run_kpi(&mut e, &hydro("fl-1", hc, T0, None, Some(0.5)));
        let opened: Vec<_> = v.iter().filter(|v| v.breached).collect();
        assert_eq!(opened.len(), 1, "{v:?}");
        assert_eq!(opened[0].rule_id, "flood");
        assert_eq!(opened[0].entity_id, "hai_chau");
        assert_eq!(opened[0].district, Some(hc));
        assert_eq!(opened[0].department, Department::DisasterPrevention);
        assert_eq!(opened[0].message, "Cảnh báo ngập: Hải Châu");
        // The rain stops: the warning clears.
        let v = run_kpi(&mut e, &hydro("rg-1", hc, T0 + 5 * MIN, Some(10.0), None));
        assert_eq!(
            v.iter()
                .map(|v| (v.entity_id.as_str(), v.breached))
                .collect::<Vec<_>>(),
            vec![("hai_chau", false)]
        );
    }

    #[test]
    fn composite_on_linked_devices() {
        let scope = CompositeScope::Devices(vec!["rg-1".into(), "fl-1".into()]);
        let mut e = engine(flood_rules(scope));
        let hc = District::HaiChau;
        // A gauge outside the group does not count.
        run_kpi(&mut e, &hydro("rg-1", hc, T0, Some(40.0), None));
        let v = run_kpi(&mut e, &hydro("fl-2", hc, T0, None, Some(0.5)));
        assert!(v.iter().all(|v| !v.breached), "{v:?}");
        let v = run_kpi(&mut e, &hydro("fl-1", hc, T0, None, Some(0.5)));
        let opened: Vec<_> = v.iter().filter(|v| v.breached).collect();
        assert_eq!(opened.len(), 1, "{v:?}");
        assert_eq!(opened[0].entity_id, "rg-1+fl-1");
        // A repeat breach of an input repeats the composite's breach.
        let v = run_kpi(&mut e, &hydro("fl-1", hc, T0 + 5 * MIN, None, Some(0.6)));
        assert_eq!(v.iter().filter(|v| v.breached).count(), 1, "{v:?}");
        let v = run_kpi(&mut e, &hydro("fl-1", hc, T0 + 10 * MIN, None, Some(0.0)));
        assert_eq!(
            v.iter()
                .map(|v| (v.entity_id.as_str(), v.breached))
                .collect::<Vec<_>>(),
            vec![("rg-1+fl-1", false)]
        );
    }

    #[test]
    fn any_composite_and_nesting() {
        let mut rules = flood_rules(CompositeScope::District);
        if let Condition::Composite { op, .. } = &mut rules[2].condition {
            *op = CompositeOp::Any;
        }
        let mut outer = rules[2].clone();
        outer.id = "outer".into();
        outer.condition = Condition::Composite {
            op: CompositeOp::All,
            of: vec!["flood".into()],
            scope: CompositeScope::District,
        };
        rules.push(outer);
        let mut e = engine(rules);
        let v = run_kpi(
            &mut e,
            &hydro("rg-1", District::HoaVang, T0, Some(40.0), None),
        );
        let breached: Vec<&str> = v
            .iter()
            .filter(|v| v.breached)
            .map(|v| v.rule_id.as_str())
            .collect();
        assert_eq!(breached, vec!["flood", "outer"]);
    }

    #[test]
    fn clear_after_silence_for_event_sources() {
        let mut rule = base_rule("crowd", reading_source("crowd_gathering"), above(1.0, None));
        rule.clear_after_s = Some(600);
        let mut e = engine(vec![rule]);
        let v = e.observe(&obs("crowd_gathering", "cam-1", District::HaiChau, T0, 1.0));
        assert_eq!(v.len(), 1);
        assert!(v[0].breached);
        // Other traffic moves event time on; 10 minutes after the last detection it clears.
        assert!(e.advance(T0 + 9 * MIN).is_empty());
        let v = e.advance(T0 + 11 * MIN);
        assert_eq!(v.len(), 1);
        assert!(!v[0].breached);
        assert_eq!(v[0].event_ms, T0 + 10 * MIN);
    }

    #[test]
    fn filters_kind_district_and_device() {
        let mut rule = base_rule("wind", reading_source("wind_speed_ms"), above(25.0, None));
        rule.districts = vec![District::SonTra];
        rule.devices = vec!["b-1".into()];
        rule.source = Some(RuleSource {
            reading: Some("wind_speed_ms".into()),
            kind: Some(Kind::Sensor),
            ..RuleSource::default()
        });
        let mut e = engine(vec![rule]);
        assert!(e
            .observe(&obs("wind_speed_ms", "b-1", District::HaiChau, T0, 30.0))
            .is_empty());
        assert!(e
            .observe(&obs("wind_speed_ms", "b-2", District::SonTra, T0, 30.0))
            .is_empty());
        let mut o = obs("wind_speed_ms", "b-1", District::SonTra, T0, 30.0);
        o.source = Source::Reading {
            metric: "wind_speed_ms".into(),
            kind: Kind::Environment,
        };
        assert!(e.observe(&o).is_empty());
        assert_eq!(
            e.observe(&obs("wind_speed_ms", "b-1", District::SonTra, T0, 30.0))
                .len(),
            1
        );
    }

    #[test]
    fn late_observations_are_ignored_and_state_is_forgotten() {
        let mut e = engine(vec![base_rule(
            "wind",
            reading_source("wind_speed_ms"),
            above(25.0, None),
        )]);
        e.observe(&obs("wind_speed_ms", "b-1", District::SonTra, T0, 30.0));
        assert!(e
            .observe(&obs("wind_speed_ms", "b-1", District::SonTra, T0 - S, 5.0))
            .is_empty());
        e.observe(&obs("wind_speed_ms", "b-2", District::SonTra, T0, 5.0));
        assert_eq!(e.tracked(), 2);
        // A day later, another device reports: both old ones are forgotten; the open one is
        // cleared.
        let v = e.observe(&obs(
            "wind_speed_ms",
            "b-3",
            District::SonTra,
            T0 + 25 * 60 * MIN,
            5.0,
        ));
        let cleared: Vec<_> = v
            .iter()
            .filter(|v| !v.breached && v.entity_id == "b-1")
            .collect();
        assert_eq!(cleared.len(), 1, "{v:?}");
        assert_eq!(e.tracked(), 1);
    }

    #[test]
    fn hot_swap_keeps_unchanged_rules_and_clears_removed_ones() {
        let wind = base_rule("wind", reading_source("wind_speed_ms"), above(25.0, None));
        let rain = base_rule("rain", reading_source("rainfall_mm"), above(10.0, None));
        let mut e = engine(vec![wind.clone(), rain.clone()]);
        e.observe(&obs("wind_speed_ms", "b-1", District::SonTra, T0, 30.0));
        e.observe(&obs("rainfall_mm", "rg-1", District::SonTra, T0, 30.0));
        // The wind rule only changes its severity; the rain rule is removed.
        let mut wind2 = wind.clone();
        wind2.severity = Severity::Critical;
        let v = e.set_rules(RuleSet::from_rules(vec![wind2]).unwrap());
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].rule_id.as_str(), v[0].breached), ("rain", false));
        // The wind state was kept: the next breach is a repeat, with the new severity.
        let v = e.observe(&obs("wind_speed_ms", "b-1", District::SonTra, T0 + S, 31.0));
        assert_eq!(v.len(), 1);
        assert!(v[0].breached);
        assert_eq!(v[0].severity, Severity::Critical);
        // A changed threshold starts afresh: the open entity is cleared.
        let mut wind3 = wind;
        wind3.condition = above(40.0, None);
        let v = e.set_rules(RuleSet::from_rules(vec![wind3]).unwrap());
        assert_eq!(v.len(), 1);
        assert!(!v[0].breached);
    }

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

    #[test]
    fn values_format_for_messages() {
        assert_eq!(format_value(Some(151.0)), "151");
        assert_eq!(format_value(Some(0.35)), "0.35");
        assert_eq!(format_value(Some(25.499)), "25.5");
        assert_eq!(format_value(None), "–");
    }
}
