//! KPI rows (one table per family, migration 3); `KpiWriter` (in the writer module) routes
//! any [`ioc_schemas::Kpi`] to its table's batched writer.
//!
//! Every KPI table holds the struct's fields in order, with `window_start DateTime`,
//! `window_start_ms UInt64`, `window_end DateTime` and `window_size_ms UInt64` after the
//! entity columns. Enums are `Enum8` (held as `i8`, numbered from 1 in declaration order, which
//! is also the order of the `ALL` lists where `ioc-schemas` has one); `Option` is `Nullable`.

use ioc_schemas::{
    AqiBand, AqiKpi, AqiPeriod, BridgeKpi, CameraKpi, Congestion, Department, DeviceStatus,
    EpochMs, HealthKpi, HydrologyKpi, Medium, Scope, TrafficKpi, WaterKpi,
};
use serde::{Deserialize, Serialize};

use crate::rows::{district_code, position_code, seconds, StoreRow};

/// `Enum8` value of a KPI scope. Exhaustive, so a new variant fails to compile here: add it
/// to the `SCOPE_ENUM` literal in a new migration.
pub(crate) fn scope_code(scope: Scope) -> i8 {
    match scope {
        Scope::Device => 1,
        Scope::District => 2,
        Scope::Department => 3,
        Scope::City => 4,
    }
}

/// `Enum8` value of a level of service.
pub(crate) fn congestion_code(level: Congestion) -> i8 {
    match level {
        Congestion::A => 1,
        Congestion::B => 2,
        Congestion::C => 3,
        Congestion::D => 4,
        Congestion::E => 5,
        Congestion::F => 6,
    }
}

/// `Enum8` value of an AQI period.
pub(crate) fn aqi_period_code(period: AqiPeriod) -> i8 {
    match period {
        AqiPeriod::Hour => 1,
        AqiPeriod::Day => 2,
    }
}

/// `Enum8` value of an environmental medium.
pub(crate) fn medium_code(medium: Medium) -> i8 {
    match medium {
        Medium::Air => 1,
        Medium::SurfaceWater => 2,
        Medium::WasteWater => 3,
        Medium::SeaWater => 4,
        Medium::RiverWater => 5,
    }
}

/// `Enum8` value of a device status.
pub(crate) fn status_code(status: DeviceStatus) -> i8 {
    match status {
        DeviceStatus::Online => 1,
        DeviceStatus::Offline => 2,
        DeviceStatus::NeverSeen => 3,
    }
}

/// `Enum8` value of an AQI band: position in `AqiBand::ALL`.
pub(crate) fn band_code(band: AqiBand) -> i8 {
    position_code(&AqiBand::ALL, &band)
}

/// `Enum8` value of a department: position in `Department::ALL`.
pub fn department_code(department: Department) -> i8 {
    position_code(&Department::ALL, &department)
}

/// `(window_start, window_end)` in whole seconds.
fn window_seconds(start_ms: EpochMs, size_ms: u64) -> (u32, u32) {
    (seconds(start_ms), seconds(start_ms.saturating_add(size_ms)))
}

/// A traffic KPI as stored in `kpi_traffic`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct TrafficKpiRow {
    /// `Enum8` scope.
    pub scope: i8,
    /// Junction device id or district slug.
    pub entity_id: String,
    /// `Enum8` district.
    pub district: i8,
    /// Window start, whole seconds.
    pub window_start: u32,
    /// Window start, epoch ms.
    pub window_start_ms: u64,
    /// Window end, whole seconds.
    pub window_end: u32,
    /// Window length, ms.
    pub window_size_ms: u64,
    /// Junctions that reported.
    pub junctions: u32,
    /// Vehicles per hour.
    pub volume_veh_h: f64,
    /// Mean occupancy, %.
    pub occupancy_pct: f64,
    /// Mean speed, km/h.
    pub mean_speed_kmh: f64,
    /// Longest queue, m.
    pub queue_m: f64,
    /// `Enum8` level of service, A = 1 … F = 6.
    pub level: i8,
    /// Signal availability, %.
    pub availability_pct: f64,
    /// The free-flow speed the level was judged against, km/h (migration 7). This and
    /// `worst_level` come last, so spool records written before them read back.
    pub free_flow_kmh: Option<f64>,
    /// `Enum8` level of the worst approach or junction (migration 7).
    pub worst_level: Option<i8>,
    /// How much of the window the data covers, ms; less than `window_size_ms` in a partial
    /// window (migration 12).
    pub covered_ms: Option<u64>,
}

impl From<&TrafficKpi> for TrafficKpiRow {
    fn from(k: &TrafficKpi) -> Self {
        let (window_start, window_end) = window_seconds(k.window_start_ms, k.window_size_ms);
        TrafficKpiRow {
            scope: scope_code(k.scope),
            entity_id: k.entity_id.clone(),
            district: district_code(k.district),
            window_start,
            window_start_ms: k.window_start_ms,
            window_end,
            window_size_ms: k.window_size_ms,
            junctions: k.junctions,
            volume_veh_h: k.volume_veh_h,
            occupancy_pct: k.occupancy_pct,
            mean_speed_kmh: k.mean_speed_kmh,
            queue_m: k.queue_m,
            level: congestion_code(k.level),
            availability_pct: k.availability_pct,
            free_flow_kmh: k.free_flow_kmh,
            worst_level: k.worst_level.map(congestion_code),
            covered_ms: k.covered_ms,
        }
    }
}

impl StoreRow for TrafficKpiRow {
    const TABLE: &'static str = "kpi_traffic";
}

/// A camera KPI as stored in `kpi_camera`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct CameraKpiRow {
    /// `Enum8` district.
    pub district: i8,
    /// The event type, or `violations`.
    pub event_type: String,
    /// Window start, whole seconds.
    pub window_start: u32,
    /// Window start, epoch ms.
    pub window_start_ms: u64,
    /// Window end, whole seconds.
    pub window_end: u32,
    /// Window length, ms.
    pub window_size_ms: u64,
    /// Events counted.
    pub events: u64,
    /// Cameras that reported this type.
    pub cameras: u32,
    /// Events per hour.
    pub per_hour: f64,
    /// Violations per 100 vehicles seen (`violations` rows).
    pub violations_per_100_vehicles: Option<f64>,
    /// How much of the window the data covers, ms (migration 12).
    pub covered_ms: Option<u64>,
}

impl From<&CameraKpi> for CameraKpiRow {
    fn from(k: &CameraKpi) -> Self {
        let (window_start, window_end) = window_seconds(k.window_start_ms, k.window_size_ms);
        CameraKpiRow {
            district: district_code(k.district),
            event_type: k.event_type.clone(),
            window_start,
            window_start_ms: k.window_start_ms,
            window_end,
            window_size_ms: k.window_size_ms,
            events: k.events,
            cameras: k.cameras,
            per_hour: k.per_hour,
            violations_per_100_vehicles: k.violations_per_100_vehicles,
            covered_ms: k.covered_ms,
        }
    }
}

impl StoreRow for CameraKpiRow {
    const TABLE: &'static str = "kpi_camera";
}

/// An AQI as stored in `kpi_aqi`; `coverage` is the replacing version.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct AqiKpiRow {
    /// The station's device id.
    pub station_id: String,
    /// `Enum8` district.
    pub district: i8,
    /// `Enum8` period: 1 hour, 2 day.
    pub period: i8,
    /// Period start, whole seconds.
    pub window_start: u32,
    /// Period start, epoch ms.
    pub window_start_ms: u64,
    /// Period end, whole seconds.
    pub window_end: u32,
    /// Period length, ms.
    pub window_size_ms: u64,
    /// PM2.5, µg/m³.
    pub pm25: Option<f64>,
    /// PM10, µg/m³.
    pub pm10: Option<f64>,
    /// O3, µg/m³.
    pub o3: Option<f64>,
    /// NO2, µg/m³.
    pub no2: Option<f64>,
    /// SO2, µg/m³.
    pub so2: Option<f64>,
    /// CO, µg/m³.
    pub co: Option<f64>,
    /// Sub-index of PM2.5.
    pub aqi_pm25: Option<u32>,
    /// Sub-index of PM10.
    pub aqi_pm10: Option<u32>,
    /// Sub-index of O3.
    pub aqi_o3: Option<u32>,
    /// Sub-index of NO2.
    pub aqi_no2: Option<u32>,
    /// Sub-index of SO2.
    pub aqi_so2: Option<u32>,
    /// Sub-index of CO.
    pub aqi_co: Option<u32>,
    /// The AQI.
    pub aqi: Option<u32>,
    /// The pollutant that set it.
    pub dominant: Option<String>,
    /// `Enum8` band, position in `AqiBand::ALL`.
    pub band: Option<i8>,
    /// The band's colour.
    pub colour: Option<String>,
    /// Base windows behind the figures; the replacing version.
    pub coverage: u32,
    /// A day's largest 8-hour O3 mean, µg/m³ (migration 6). Last, so spool records written
    /// before it read back (see `spool.rs`).
    pub o3_8h: Option<f64>,
}

impl From<&AqiKpi> for AqiKpiRow {
    fn from(k: &AqiKpi) -> Self {
        let (window_start, window_end) = window_seconds(k.window_start_ms, k.window_size_ms);
        AqiKpiRow {
            station_id: k.station_id.clone(),
            district: district_code(k.district),
            period: aqi_period_code(k.period),
            window_start,
            window_start_ms: k.window_start_ms,
            window_end,
            window_size_ms: k.window_size_ms,
            pm25: k.pm25,
            pm10: k.pm10,
            o3: k.o3,
            no2: k.no2,
            so2: k.so2,
            co: k.co,
            aqi_pm25: k.aqi_pm25,
            aqi_pm10: k.aqi_pm10,
            aqi_o3: k.aqi_o3,
            aqi_no2: k.aqi_no2,
            aqi_so2: k.aqi_so2,
            aqi_co: k.aqi_co,
            aqi: k.aqi,
            dominant: k.dominant.clone(),
            band: k.band.map(band_code),
            colour: k.colour.clone(),
            coverage: k.coverage,
            o3_8h: k.o3_8h,
        }
    }
}

impl StoreRow for AqiKpiRow {
    const TABLE: &'static str = "kpi_aqi";
}

/// A water-quality KPI as stored in `kpi_water`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct WaterKpiRow {
    /// The station's device id.
    pub station_id: String,
    /// `Enum8` district.
    pub district: i8,
    /// `Enum8` medium.
    pub medium: i8,
    /// Window start, whole seconds.
    pub window_start: u32,
    /// Window start, epoch ms.
    pub window_start_ms: u64,
    /// Window end, whole seconds.
    pub window_end: u32,
    /// Window length, ms.
    pub window_size_ms: u64,
    /// The parameter.
    pub parameter: String,
    /// Its mean over the window.
    pub value: f64,
    /// Lowest allowed value.
    pub limit_min: Option<f64>,
    /// Highest allowed value.
    pub limit_max: Option<f64>,
    /// The standard and column of the limits.
    pub standard: String,
    /// 1 when outside the limits.
    pub exceeded: u8,
}

impl From<&WaterKpi> for WaterKpiRow {
    fn from(k: &WaterKpi) -> Self {
        let (window_start, window_end) = window_seconds(k.window_start_ms, k.window_size_ms);
        WaterKpiRow {
            station_id: k.station_id.clone(),
            district: district_code(k.district),
            medium: medium_code(k.medium),
            window_start,
            window_start_ms: k.window_start_ms,
            window_end,
            window_size_ms: k.window_size_ms,
            parameter: k.parameter.clone(),
            value: k.value,
            limit_min: k.limit_min,
            limit_max: k.limit_max,
            standard: k.standard.clone(),
            exceeded: u8::from(k.exceeded),
        }
    }
}

impl StoreRow for WaterKpiRow {
    const TABLE: &'static str = "kpi_water";
}

/// A rainfall or water-level KPI as stored in `kpi_hydrology`; `coverage` is the replacing
/// version.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct HydrologyKpiRow {
    /// The gauge's device id.
    pub gauge_id: String,
    /// `Enum8` district.
    pub district: i8,
    /// Window start, whole seconds.
    pub window_start: u32,
    /// Window start, epoch ms.
    pub window_start_ms: u64,
    /// Window end, whole seconds.
    pub window_end: u32,
    /// Window length, ms.
    pub window_size_ms: u64,
    /// Rain in the window, mm.
    pub rain_mm: Option<f64>,
    /// Rain over the last hour, mm.
    pub rain_1h_mm: Option<f64>,
    /// Over 3 hours, mm.
    pub rain_3h_mm: Option<f64>,
    /// Over 24 hours, mm.
    pub rain_24h_mm: Option<f64>,
    /// Mean water level, m.
    pub water_level_m: Option<f64>,
    /// Rise of the level, m/h.
    pub rise_rate_m_per_h: Option<f64>,
    /// Base windows behind the longest figure; the replacing version.
    pub coverage: u32,
    /// Rain over 12 hours, mm (migration 8). Last, so spool records written before it read
    /// back.
    pub rain_12h_mm: Option<f64>,
    /// Flood alarm level reached, 0 to 3 (migration 9). Last, for the spool.
    pub alarm_level: Option<u8>,
}

impl From<&HydrologyKpi> for HydrologyKpiRow {
    fn from(k: &HydrologyKpi) -> Self {
        let (window_start, window_end) = window_seconds(k.window_start_ms, k.window_size_ms);
        HydrologyKpiRow {
            gauge_id: k.gauge_id.clone(),
            district: district_code(k.district),
            window_start,
            window_start_ms: k.window_start_ms,
            window_end,
            window_size_ms: k.window_size_ms,
            rain_mm: k.rain_mm,
            rain_1h_mm: k.rain_1h_mm,
            rain_3h_mm: k.rain_3h_mm,
            rain_24h_mm: k.rain_24h_mm,
            water_level_m: k.water_level_m,
            rise_rate_m_per_h: k.rise_rate_m_per_h,
            coverage: k.coverage,
            rain_12h_mm: k.rain_12h_mm,
            alarm_level: k.alarm_level,
        }
    }
}

impl StoreRow for HydrologyKpiRow {
    const TABLE: &'static str = "kpi_hydrology";
}

/// A bridge KPI as stored in `kpi_bridge`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct BridgeKpiRow {
    /// The monitor's device id.
    pub device_id: String,
    /// `Enum8` district.
    pub district: i8,
    /// Window start, whole seconds.
    pub window_start: u32,
    /// Window start, epoch ms.
    pub window_start_ms: u64,
    /// Window end, whole seconds.
    pub window_end: u32,
    /// Window length, ms.
    pub window_size_ms: u64,
    /// Mean wind speed, m/s.
    pub wind_mean_ms: Option<f64>,
    /// Strongest gust, m/s.
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

impl From<&BridgeKpi> for BridgeKpiRow {
    fn from(k: &BridgeKpi) -> Self {
        let (window_start, window_end) = window_seconds(k.window_start_ms, k.window_size_ms);
        BridgeKpiRow {
            device_id: k.device_id.clone(),
            district: district_code(k.district),
            window_start,
            window_start_ms: k.window_start_ms,
            window_end,
            window_size_ms: k.window_size_ms,
            wind_mean_ms: k.wind_mean_ms,
            wind_max_ms: k.wind_max_ms,
            strain_mean_ue: k.strain_mean_ue,
            strain_min_ue: k.strain_min_ue,
            strain_max_ue: k.strain_max_ue,
            temperature_c: k.temperature_c,
            humidity_pct: k.humidity_pct,
        }
    }
}

impl StoreRow for BridgeKpiRow {
    const TABLE: &'static str = "kpi_bridge";
}

/// A device-health KPI as stored in `kpi_health`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct HealthKpiRow {
    /// `Enum8` scope.
    pub scope: i8,
    /// Device id, district or department slug, or `da_nang`.
    pub entity_id: String,
    /// `Enum8` district (device and district scopes).
    pub district: Option<i8>,
    /// `Enum8` department (device and department scopes).
    pub department: Option<i8>,
    /// Window start, whole seconds.
    pub window_start: u32,
    /// Window start, epoch ms.
    pub window_start_ms: u64,
    /// Window end, whole seconds.
    pub window_end: u32,
    /// Window length, ms.
    pub window_size_ms: u64,
    /// Registered devices counted.
    pub devices: u32,
    /// Online at the window's end.
    pub online: u32,
    /// Offline or never seen.
    pub offline: u32,
    /// Readings received.
    pub readings: u64,
    /// Readings expected.
    pub expected: u64,
    /// `readings / expected`, %.
    pub completeness_pct: f64,
    /// Device scope: newest event time seen, whole seconds.
    pub last_seen: Option<u32>,
    /// Device scope: newest event time seen, epoch ms.
    pub last_seen_ms: Option<u64>,
    /// Device scope: `Enum8` status at the window's end.
    pub status: Option<i8>,
}

impl From<&HealthKpi> for HealthKpiRow {
    fn from(k: &HealthKpi) -> Self {
        let (window_start, window_end) = window_seconds(k.window_start_ms, k.window_size_ms);
        HealthKpiRow {
            scope: scope_code(k.scope),
            entity_id: k.entity_id.clone(),
            district: k.district.map(district_code),
            department: k.department.map(department_code),
            window_start,
            window_start_ms: k.window_start_ms,
            window_end,
            window_size_ms: k.window_size_ms,
            devices: k.devices,
            online: k.online,
            offline: k.offline,
            readings: k.readings,
            expected: k.expected,
            completeness_pct: k.completeness_pct,
            last_seen: k.last_seen_ms.map(seconds),
            last_seen_ms: k.last_seen_ms,
            status: k.status.map(status_code),
        }
    }
}

impl StoreRow for HealthKpiRow {
    const TABLE: &'static str = "kpi_health";
}

/// The enums without an `ALL` list in `ioc-schemas`, in declaration order (for the tests that
/// check the migration's literals).
#[cfg(test)]
pub(crate) mod lists {
    use super::*;

    pub(crate) const SCOPES: [Scope; 4] = [
        Scope::Device,
        Scope::District,
        Scope::Department,
        Scope::City,
    ];
    pub(crate) const CONGESTIONS: [Congestion; 6] = [
        Congestion::A,
        Congestion::B,
        Congestion::C,
        Congestion::D,
        Congestion::E,
        Congestion::F,
    ];
    pub(crate) const PERIODS: [AqiPeriod; 2] = [AqiPeriod::Hour, AqiPeriod::Day];
    pub(crate) const MEDIA: [Medium; 5] = [
        Medium::Air,
        Medium::SurfaceWater,
        Medium::WasteWater,
        Medium::SeaWater,
        Medium::RiverWater,
    ];
    pub(crate) const STATUSES: [DeviceStatus; 3] = [
        DeviceStatus::Online,
        DeviceStatus::Offline,
        DeviceStatus::NeverSeen,
    ];
}

#[cfg(test)]
mod tests {
    use super::lists::*;
    use super::*;
    use ioc_schemas::District;

    #[test]
    fn codes_follow_declaration_order_from_one() {
        for (i, s) in SCOPES.into_iter().enumerate() {
            assert_eq!(scope_code(s) as usize, i + 1);
        }
        for (i, c) in CONGESTIONS.into_iter().enumerate() {
            assert_eq!(congestion_code(c) as usize, i + 1);
        }
        for (i, p) in PERIODS.into_iter().enumerate() {
            assert_eq!(aqi_period_code(p) as usize, i + 1);
        }
        for (i, m) in MEDIA.into_iter().enumerate() {
            assert_eq!(medium_code(m) as usize, i + 1);
        }
        for (i, s) in STATUSES.into_iter().enumerate() {
            assert_eq!(status_code(s) as usize, i + 1);
        }
        assert_eq!(band_code(AqiBand::Good), 1);
        assert_eq!(band_code(AqiBand::Hazardous), 6);
        assert_eq!(department_code(Department::Transport), 1);
        assert_eq!(department_code(Department::Information), 7);
    }

    #[test]
    fn health_rows_keep_nulls_and_both_time_columns() {
        let k = HealthKpi {
            scope: Scope::City,
            entity_id: "da_nang".into(),
            district: None,
            department: None,
            window_start_ms: 1_795_827_600_000,
            window_size_ms: 300_000,
            devices: 10,
            online: 9,
            offline: 1,
            readings: 95,
            expected: 100,
            completeness_pct: 95.0,
            last_seen_ms: None,
            status: None,
        };
        let row = HealthKpiRow::from(&k);
        assert_eq!(
            (row.window_start, row.window_end),
            (1_795_827_600, 1_795_827_900)
        );
        assert_eq!((row.scope, row.district, row.status), (4, None, None));
        let device = HealthKpi {
            scope: Scope::Device,
            entity_id: "aq-hai_chau-1".into(),
            district: Some(District::HaiChau),
            department: Some(Department::Environment),
            last_seen_ms: Some(1_795_827_612_345),
            status: Some(DeviceStatus::NeverSeen),
            ..k
        };
        let row = HealthKpiRow::from(&device);
        assert_eq!(row.last_seen, Some(1_795_827_612));
        assert_eq!(
            (row.district, row.department, row.status),
            (Some(1), Some(2), Some(3))
        );
    }

    #[test]
    fn every_family_has_its_table() {
        let tables: Vec<&str> = [
            TrafficKpiRow::TABLE,
            CameraKpiRow::TABLE,
            AqiKpiRow::TABLE,
            WaterKpiRow::TABLE,
            HydrologyKpiRow::TABLE,
            BridgeKpiRow::TABLE,
            HealthKpiRow::TABLE,
        ]
        .to_vec();
        let mut distinct = tables.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 7);
        for t in tables {
            assert!(t.starts_with("kpi_"), "{t}");
        }
    }
}
