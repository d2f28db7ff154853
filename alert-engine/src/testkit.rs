//! KPI rows for the unit tests of the observations and the engine.

use ioc_schemas::{Congestion, District, HydrologyKpi, Kpi, Scope, TrafficKpi};

/// A time to start from: 2026-11-28 08:00 Vietnam time.
pub(crate) const T0: u64 = 1_795_827_600_000;
/// A second, ms.
pub(crate) const S: u64 = 1000;
/// A minute, ms.
pub(crate) const MIN: u64 = 60 * S;

/// A junction's 5-minute traffic row in Hải Châu at `level`.
pub(crate) fn traffic_row(entity: &str, start: u64, level: Congestion) -> Kpi {
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

/// A gauge's 5-minute hydrology row: `rain` as its 1-, 3- and 24-hour totals, `rise` as its
/// rise rate (with a water level).
pub(crate) fn hydro(
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
