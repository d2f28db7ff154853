//! City KPI results: what the dataflow computes from windows and the registry, and what the
//! store, the WebSocket and (later) the alert rules consume. One typed struct per family; the
//! formulas live in `ioc-dataflow`'s `kpi` module.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::district::District;
use crate::event_time::EpochMs;
use crate::reading::Medium;
use crate::registry::Department;

/// The family a KPI belongs to; each is its own WebSocket channel and ClickHouse table.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum KpiFamily {
    /// Junction and district traffic.
    Traffic,
    /// Camera events per type and district.
    Camera,
    /// VN_AQI per station.
    Air,
    /// Water quality exceedances.
    Water,
    /// Rainfall accumulations and water levels.
    Hydrology,
    /// Bridge wind and strain.
    Bridge,
    /// Device health.
    Health,
}

impl KpiFamily {
    /// Whether its rows have a scope: traffic and health, the families with aggregates (of a
    /// district, a department or the city) beside the per-device rows.
    pub fn has_scope(self) -> bool {
        matches!(self, KpiFamily::Traffic | KpiFamily::Health)
    }

    /// Every family.
    pub const ALL: [KpiFamily; 7] = [
        KpiFamily::Traffic,
        KpiFamily::Camera,
        KpiFamily::Air,
        KpiFamily::Water,
        KpiFamily::Hydrology,
        KpiFamily::Bridge,
        KpiFamily::Health,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            KpiFamily::Traffic => "traffic",
            KpiFamily::Camera => "camera",
            KpiFamily::Air => "air",
            KpiFamily::Water => "water",
            KpiFamily::Hydrology => "hydrology",
            KpiFamily::Bridge => "bridge",
            KpiFamily::Health => "health",
        }
    }

    /// Parses the snake_case name.
    pub fn from_name(name: &str) -> Option<KpiFamily> {
        KpiFamily::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

/// What a KPI row is about.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One device (a junction, a station, a gauge).
    Device,
    /// A district.
    District,
    /// A department's devices.
    Department,
    /// The whole city.
    City,
}

impl Scope {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Device => "device",
            Scope::District => "district",
            Scope::Department => "department",
            Scope::City => "city",
        }
    }

    /// The scope named `name` ([`Scope::as_str`]).
    pub fn from_name(name: &str) -> Option<Scope> {
        [
            Scope::Device,
            Scope::District,
            Scope::Department,
            Scope::City,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// A traffic level of service, A (free flow) to F (forced flow).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Congestion {
    /// Free flow.
    A,
    /// Reasonably free flow.
    B,
    /// Stable flow.
    C,
    /// Approaching unstable flow.
    D,
    /// Unstable flow.
    E,
    /// Forced flow: jammed.
    F,
}

impl Congestion {
    /// The letter.
    pub fn as_str(self) -> &'static str {
        match self {
            Congestion::A => "A",
            Congestion::B => "B",
            Congestion::C => "C",
            Congestion::D => "D",
            Congestion::E => "E",
            Congestion::F => "F",
        }
    }
}

/// A VN_AQI band (Quyết định 1459/QĐ-TCMT, Table 1).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AqiBand {
    /// 0–50, Tốt.
    Good,
    /// 51–100, Trung bình.
    Moderate,
    /// 101–150, Kém.
    Poor,
    /// 151–200, Xấu.
    Bad,
    /// 201–300, Rất xấu.
    VeryBad,
    /// 301–500, Nguy hại.
    Hazardous,
}

impl AqiBand {
    /// Every band, best first.
    pub const ALL: [AqiBand; 6] = [
        AqiBand::Good,
        AqiBand::Moderate,
        AqiBand::Poor,
        AqiBand::Bad,
        AqiBand::VeryBad,
        AqiBand::Hazardous,
    ];

    /// The band of an AQI value.
    pub fn of(aqi: u32) -> AqiBand {
        match aqi {
            0..=50 => AqiBand::Good,
            51..=100 => AqiBand::Moderate,
            101..=150 => AqiBand::Poor,
            151..=200 => AqiBand::Bad,
            201..=300 => AqiBand::VeryBad,
            _ => AqiBand::Hazardous,
        }
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AqiBand::Good => "good",
            AqiBand::Moderate => "moderate",
            AqiBand::Poor => "poor",
            AqiBand::Bad => "bad",
            AqiBand::VeryBad => "very_bad",
            AqiBand::Hazardous => "hazardous",
        }
    }

    /// The Vietnamese name the decision gives.
    pub fn name_vi(self) -> &'static str {
        match self {
            AqiBand::Good => "Tốt",
            AqiBand::Moderate => "Trung bình",
            AqiBand::Poor => "Kém",
            AqiBand::Bad => "Xấu",
            AqiBand::VeryBad => "Rất xấu",
            AqiBand::Hazardous => "Nguy hại",
        }
    }

    /// What the decision advises in this band (Quyết định 1459/QĐ-TCMT, Bảng 4, "khuyến
    /// nghị"), in its words: for everyone, and for sensitive groups (children, the elderly,
    /// people with heart or lung disease).
    pub fn advice(self) -> AqiAdvice {
        let (general, sensitive) = match self {
            AqiBand::Good => (
                "Tự do thực hiện các hoạt động ngoài trời",
                "Tự do thực hiện các hoạt động ngoài trời",
            ),
            AqiBand::Moderate => (
                "Tự do thực hiện các hoạt động ngoài trời",
                "Nên theo dõi các triệu chứng như ho hoặc khó thở, nhưng vẫn có thể hoạt động bên ngoài",
            ),
            AqiBand::Poor => (
                "Những người thấy có triệu chứng đau mắt, ho hoặc đau họng… nên cân nhắc giảm các hoạt động ngoài trời",
                "Nên giảm các hoạt động mạnh và giảm thời gian hoạt động ngoài trời. Những người mắc bệnh hen suyễn có thể cần sử dụng thuốc thường xuyên hơn",
            ),
            AqiBand::Bad => (
                "Mọi người nên giảm các hoạt động mạnh khi ở ngoài trời, tránh tập thể dục kéo dài và nghỉ ngơi nhiều hơn trong nhà",
                "Nên ở trong nhà và giảm hoạt động mạnh. Nếu cần thiết phải ra ngoài, hãy đeo khẩu trang đạt tiêu chuẩn",
            ),
            AqiBand::VeryBad => (
                "Mọi người hạn chế tối đa các hoạt động ngoài trời và chuyển tất cả các hoạt động vào trong nhà. Nếu cần thiết phải ra ngoài, hãy đeo khẩu trang đạt tiêu chuẩn",
                "Nên ở trong nhà và giảm hoạt động mạnh",
            ),
            AqiBand::Hazardous => (
                "Mọi người nên ở trong nhà, đóng cửa ra vào và cửa sổ. Nếu cần thiết phải ra ngoài, hãy đeo khẩu trang đạt tiêu chuẩn",
                "Mọi người nên ở trong nhà, đóng cửa ra vào và cửa sổ. Nếu cần thiết phải ra ngoài, hãy đeo khẩu trang đạt tiêu chuẩn",
            ),
        };
        AqiAdvice {
            general: general.to_owned(),
            sensitive: sensitive.to_owned(),
        }
    }

    /// The colour the decision gives (RGB 0,228,0 … 126,0,35), as `#rrggbb`.
    pub fn colour(self) -> &'static str {
        match self {
            AqiBand::Good => "#00e400",
            AqiBand::Moderate => "#ffff00",
            AqiBand::Poor => "#ff7e00",
            AqiBand::Bad => "#ff0000",
            AqiBand::VeryBad => "#8f3f97",
            AqiBand::Hazardous => "#7e0023",
        }
    }
}

/// The health advice of a VN_AQI band, in the decision's Vietnamese (see [`AqiBand::advice`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AqiAdvice {
    /// For everyone ("người bình thường").
    pub general: String,
    /// For sensitive groups ("người nhạy cảm").
    pub sensitive: String,
}

/// Traffic over a window at a junction (scope `device`) or a district (scope `district`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrafficKpi {
    /// Junction or district.
    pub scope: Scope,
    /// The junction's device id, or the district slug.
    pub entity_id: String,
    /// The district.
    pub district: District,
    /// Window start, epoch ms.
    pub window_start_ms: EpochMs,
    /// Window length, ms.
    pub window_size_ms: u64,
    /// Junctions that reported in the window.
    pub junctions: u32,
    /// Vehicles per hour over every approach (summed over the district's junctions).
    pub volume_veh_h: f64,
    /// Mean detector occupancy, %.
    pub occupancy_pct: f64,
    /// Mean speed, km/h, weighted by the vehicles of each approach (of each junction, for a
    /// district), so a quiet approach does not count as much as a busy one.
    pub mean_speed_kmh: f64,
    /// The longest queue, m.
    pub queue_m: f64,
    /// The level of service: of the mean speed against the free-flow speed. For a district,
    /// of the volume-weighted mean of each junction's speed as a share of its own free-flow
    /// speed.
    pub level: Congestion,
    /// Signal availability: % of reports not in fault, flashing or off.
    pub availability_pct: f64,
    /// The free-flow speed the level is judged against, km/h: the junction's from the
    /// registry (`free_flow_kmh`, 50 when unset); for a district, the volume-weighted mean of
    /// its junctions'. None in rows written before it existed.
    #[serde(default)]
    pub free_flow_kmh: Option<f64>,
    /// The worst level beside it: of the junction's slowest (or most occupied) approach, or
    /// of the district's worst junction, so one jammed approach shows. None in rows written
    /// before it existed.
    #[serde(default)]
    pub worst_level: Option<Congestion>,
    /// How much of the window the data covers, ms. Less than `window_size_ms` marks a partial
    /// window: a junction's first window after it (or the service) started reporting part-way
    /// through, whose volume is per the time covered, not scaled as if it had taken the whole
    /// window. For a district, the longest of its junctions'. None in rows written before it
    /// existed.
    #[serde(default)]
    pub covered_ms: Option<u64>,
}

/// Camera events of one type in a district over a window. `event_type` `violations` sums
/// the red-light, lane and wrong-way violations and carries their share of observed vehicles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CameraKpi {
    /// The district.
    pub district: District,
    /// The event type (`plate_read`, `red_light_violation`, ...), or `violations`.
    pub event_type: String,
    /// Window start, epoch ms.
    pub window_start_ms: EpochMs,
    /// Window length, ms.
    pub window_size_ms: u64,
    /// Events counted (a `count` field counts as that many).
    pub events: u64,
    /// Cameras that reported this type.
    pub cameras: u32,
    /// Events per hour.
    pub per_hour: f64,
    /// For `violations`: violations per 100 vehicles seen (plate reads and vehicle counts).
    pub violations_per_100_vehicles: Option<f64>,
    /// How much of the window the data covers, ms: the longest of the cameras' (see
    /// [`TrafficKpi::covered_ms`]). Less than `window_size_ms` marks a partial window, whose
    /// `per_hour` sums each camera's events per the time it covered. None in rows written
    /// before it existed.
    #[serde(default)]
    pub covered_ms: Option<u64>,
}

/// Hourly or daily VN_AQI of a station.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AqiKpi {
    /// The station's device id.
    pub station_id: String,
    /// Its district.
    pub district: District,
    /// `hour` or `day` (a day of city time, UTC+7).
    pub period: AqiPeriod,
    /// Period start, epoch ms.
    pub window_start_ms: EpochMs,
    /// Period length, ms.
    pub window_size_ms: u64,
    /// Concentrations used, µg/m³: for an hour, the NowCast of PM and the hourly means of the
    /// gases; for a day, the mean of the day's hourly PM means (none when fewer than 18 of
    /// the 24 hours have one) and the largest hourly mean of the gases.
    pub pm25: Option<f64>,
    /// See `pm25`.
    pub pm10: Option<f64>,
    /// See `pm25`.
    pub o3: Option<f64>,
    /// See `pm25`.
    pub no2: Option<f64>,
    /// See `pm25`.
    pub so2: Option<f64>,
    /// See `pm25`.
    pub co: Option<f64>,
    /// For a day: the largest 8-hour mean of O3 of the 8-hour periods ending in the day (each
    /// from at least 6 hourly means), µg/m³. `aqi_o3` is then the larger of the sub-indices of
    /// `o3` (1-hour) and of this (8-hour; not used above 400 µg/m³). None for an hour.
    pub o3_8h: Option<f64>,
    /// Sub-index of each pollutant measured.
    pub aqi_pm25: Option<u32>,
    /// See `aqi_pm25`.
    pub aqi_pm10: Option<u32>,
    /// See `aqi_pm25`.
    pub aqi_o3: Option<u32>,
    /// See `aqi_pm25`.
    pub aqi_no2: Option<u32>,
    /// See `aqi_pm25`.
    pub aqi_so2: Option<u32>,
    /// See `aqi_pm25`.
    pub aqi_co: Option<u32>,
    /// The AQI: the largest sub-index; none without PM10 or PM2.5.
    pub aqi: Option<u32>,
    /// The pollutant that set it.
    pub dominant: Option<String>,
    /// Its band.
    pub band: Option<AqiBand>,
    /// The band's colour, `#rrggbb`.
    pub colour: Option<String>,
    /// What the decision advises in the band. Not stored: derived from `band`.
    #[serde(default)]
    pub advice: Option<AqiAdvice>,
    /// Base windows (5 min) behind the figures: a rebuilt partial period never replaces a
    /// complete one.
    pub coverage: u32,
}

/// The period of an AQI.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AqiPeriod {
    /// One hour, NowCast for PM.
    Hour,
    /// One day of city time.
    Day,
}

/// One water-quality parameter of a station over a window, against its national limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WaterKpi {
    /// The station's device id.
    pub station_id: String,
    /// Its district.
    pub district: District,
    /// What it samples.
    pub medium: Medium,
    /// Window start, epoch ms.
    pub window_start_ms: EpochMs,
    /// Window length, ms.
    pub window_size_ms: u64,
    /// The parameter (`ph`, `do`, `cod`, ...).
    pub parameter: String,
    /// Its mean over the window.
    pub value: f64,
    /// The lowest allowed value, if the standard sets one.
    pub limit_min: Option<f64>,
    /// The highest allowed value, if the standard sets one.
    pub limit_max: Option<f64>,
    /// The standard and column the limits come from.
    pub standard: String,
    /// Whether the value is outside the limits.
    pub exceeded: bool,
}

/// Rainfall at a gauge, or the level at a flood gauge, at the end of a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HydrologyKpi {
    /// The gauge's device id.
    pub gauge_id: String,
    /// Its district.
    pub district: District,
    /// Window start, epoch ms (the accumulations end where the window ends).
    pub window_start_ms: EpochMs,
    /// Window length, ms.
    pub window_size_ms: u64,
    /// Rain in the window, mm (rain gauges).
    pub rain_mm: Option<f64>,
    /// Rain over the hour ending with the window, mm.
    pub rain_1h_mm: Option<f64>,
    /// Over 3 hours, mm.
    pub rain_3h_mm: Option<f64>,
    /// Over 24 hours, mm.
    pub rain_24h_mm: Option<f64>,
    /// Over 12 hours, mm: with the 24-hour total, the span the heavy-rain warnings and risk
    /// levels of Quyết định 18/2021/QĐ-TTg are stated in. None in rows written before it.
    #[serde(default)]
    pub rain_12h_mm: Option<f64>,
    /// Mean water level in the window, m (flood gauges).
    pub water_level_m: Option<f64>,
    /// Rise of the mean level over the last 15 minutes, in m/h (negative when falling).
    pub rise_rate_m_per_h: Option<f64>,
    /// Base windows behind the longest figure: a rebuilt partial sum never replaces a
    /// complete one.
    pub coverage: u32,
    /// At a river gauge with flood alarm levels in the registry: the highest level the window's
    /// mean water level has reached, 0 (below báo động I) to 3 (báo động III or above,
    /// Quyết định 05/2020/QĐ-TTg). None at other gauges and in rows written before it.
    #[serde(default)]
    pub alarm_level: Option<u8>,
}

/// Wind and strain at a bridge over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BridgeKpi {
    /// The bridge monitor's device id.
    pub device_id: String,
    /// Its district.
    pub district: District,
    /// Window start, epoch ms.
    pub window_start_ms: EpochMs,
    /// Window length, ms.
    pub window_size_ms: u64,
    /// Mean wind speed, m/s.
    pub wind_mean_ms: Option<f64>,
    /// Strongest gust reported, m/s.
    pub wind_max_ms: Option<f64>,
    /// Mean strain, µε.
    pub strain_mean_ue: Option<f64>,
    /// Smallest strain, µε.
    pub strain_min_ue: Option<f64>,
    /// Largest strain, µε.
    pub strain_max_ue: Option<f64>,
    /// Mean deck temperature, °C.
    pub temperature_c: Option<f64>,
    /// Mean humidity, %.
    pub humidity_pct: Option<f64>,
}

/// The state of a device.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Reported within three times its expected interval.
    Online,
    /// Silent for longer.
    Offline,
    /// Not heard from since the pipeline started.
    NeverSeen,
}

impl DeviceStatus {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Online => "online",
            DeviceStatus::Offline => "offline",
            DeviceStatus::NeverSeen => "never_seen",
        }
    }
}

/// Device health over a window: of one device, or summed over a district, a department or
/// the city.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HealthKpi {
    /// Device, district, department or city.
    pub scope: Scope,
    /// The device id, district slug, department slug, or `da_nang`.
    pub entity_id: String,
    /// The district (device and district scopes).
    pub district: Option<District>,
    /// The department (device and department scopes).
    pub department: Option<Department>,
    /// Window start, epoch ms.
    pub window_start_ms: EpochMs,
    /// Window length, ms.
    pub window_size_ms: u64,
    /// Registered devices counted.
    pub devices: u32,
    /// Of them, online at the window's end.
    pub online: u32,
    /// Offline or never seen.
    pub offline: u32,
    /// Readings received in the window.
    pub readings: u64,
    /// Readings expected in the window from the registered intervals.
    pub expected: u64,
    /// `readings / expected` in %, at most 100 per device.
    pub completeness_pct: f64,
    /// Device scope: its newest event time seen, epoch ms.
    pub last_seen_ms: Option<EpochMs>,
    /// Device scope: its state at the window's end.
    pub status: Option<DeviceStatus>,
}

/// A KPI result of any family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum Kpi {
    /// Traffic.
    Traffic(TrafficKpi),
    /// Camera events.
    Camera(CameraKpi),
    /// VN_AQI.
    Air(AqiKpi),
    /// Water quality.
    Water(WaterKpi),
    /// Rain and water level.
    Hydrology(HydrologyKpi),
    /// Bridges.
    Bridge(BridgeKpi),
    /// Device health.
    Health(HealthKpi),
}

impl Kpi {
    /// Its family.
    pub fn family(&self) -> KpiFamily {
        match self {
            Kpi::Traffic(_) => KpiFamily::Traffic,
            Kpi::Camera(_) => KpiFamily::Camera,
            Kpi::Air(_) => KpiFamily::Air,
            Kpi::Water(_) => KpiFamily::Water,
            Kpi::Hydrology(_) => KpiFamily::Hydrology,
            Kpi::Bridge(_) => KpiFamily::Bridge,
            Kpi::Health(_) => KpiFamily::Health,
        }
    }

    /// The district it concerns, if one.
    pub fn district(&self) -> Option<District> {
        match self {
            Kpi::Traffic(k) => Some(k.district),
            Kpi::Camera(k) => Some(k.district),
            Kpi::Air(k) => Some(k.district),
            Kpi::Water(k) => Some(k.district),
            Kpi::Hydrology(k) => Some(k.district),
            Kpi::Bridge(k) => Some(k.district),
            Kpi::Health(k) => k.district,
        }
    }

    /// The entity it is about: a device id, a district or department slug, or `da_nang`.
    pub fn entity_id(&self) -> &str {
        match self {
            Kpi::Traffic(k) => &k.entity_id,
            Kpi::Camera(k) => k.district.slug(),
            Kpi::Air(k) => &k.station_id,
            Kpi::Water(k) => &k.station_id,
            Kpi::Hydrology(k) => &k.gauge_id,
            Kpi::Bridge(k) => &k.device_id,
            Kpi::Health(k) => &k.entity_id,
        }
    }

    /// Where its window starts, epoch ms.
    pub fn window_start_ms(&self) -> EpochMs {
        match self {
            Kpi::Traffic(k) => k.window_start_ms,
            Kpi::Camera(k) => k.window_start_ms,
            Kpi::Air(k) => k.window_start_ms,
            Kpi::Water(k) => k.window_start_ms,
            Kpi::Hydrology(k) => k.window_start_ms,
            Kpi::Bridge(k) => k.window_start_ms,
            Kpi::Health(k) => k.window_start_ms,
        }
    }

    /// How long its window is, ms.
    pub fn window_size_ms(&self) -> u64 {
        match self {
            Kpi::Traffic(k) => k.window_size_ms,
            Kpi::Camera(k) => k.window_size_ms,
            Kpi::Air(k) => k.window_size_ms,
            Kpi::Water(k) => k.window_size_ms,
            Kpi::Hydrology(k) => k.window_size_ms,
            Kpi::Bridge(k) => k.window_size_ms,
            Kpi::Health(k) => k.window_size_ms,
        }
    }

    /// What, besides its family, entity and window, makes it one row: a camera row's event
    /// type, a water row's parameter; empty for the other families.
    pub fn row_part(&self) -> &str {
        match self {
            Kpi::Camera(k) => &k.event_type,
            Kpi::Water(k) => &k.parameter,
            _ => "",
        }
    }

    /// Its scope, for the families with aggregate rows (traffic and health).
    pub fn scope(&self) -> Option<Scope> {
        match self {
            Kpi::Traffic(k) => Some(k.scope),
            Kpi::Health(k) => Some(k.scope),
            _ => None,
        }
    }
}
