//! Traffic KPIs of a junction: congestion level A–F and signal availability.
//!
//! The congestion level follows the urban-street level of service of the Highway Capacity
//! Manual (HCM 2010, Exhibit 16-4: through travel speed as a share of the base free-flow
//! speed): A above 85 %, B above 67 %, C above 50 %, D above 40 %, E above 30 %, F at or below
//! 30 %. A detector occupancy of 80 % or more means a standing queue over the detector and is F
//! whatever the speed (our rule: speed alone lags a jam that has just formed).

/// A base free-flow speed for signalised urban streets, km/h, to use until a junction's own
/// (measured at night, say) is known.
pub const DEFAULT_FREE_FLOW_KMH: f64 = 50.0;

/// Occupancy at or above which a junction approach counts as jammed.
pub const JAM_OCCUPANCY_PCT: f64 = 80.0;

/// A congestion level.
pub use ioc_schemas::Congestion;

/// The congestion level from a window's mean speed and mean occupancy.
pub fn congestion(mean_speed_kmh: f64, occupancy_pct: f64, free_flow_kmh: f64) -> Congestion {
    if free_flow_kmh <= 0.0 {
        return Congestion::F;
    }
    congestion_of_share(mean_speed_kmh / free_flow_kmh * 100.0, occupancy_pct)
}

/// The congestion level from speed as a % of free-flow speed, and occupancy.
pub fn congestion_of_share(share_pct: f64, occupancy_pct: f64) -> Congestion {
    if occupancy_pct >= JAM_OCCUPANCY_PCT {
        return Congestion::F;
    }
    match share_pct {
        s if s > 85.0 => Congestion::A,
        s if s > 67.0 => Congestion::B,
        s if s > 50.0 => Congestion::C,
        s if s > 40.0 => Congestion::D,
        s if s > 30.0 => Congestion::E,
        _ => Congestion::F,
    }
}

/// Vehicles per hour from a count over a window.
pub fn volume_per_hour(vehicles: f64, window_ms: u64) -> f64 {
    if window_ms == 0 {
        return 0.0;
    }
    vehicles * 3_600_000.0 / window_ms as f64
}

/// Signal availability in %: the share of reports in which the controller ran a plan, that is
/// was neither faulted, flashing nor dark. `None` without reports.
pub fn availability_pct(reports: u64, unavailable: u64) -> Option<f64> {
    (reports > 0).then(|| (reports - unavailable.min(reports)) as f64 * 100.0 / reports as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_share_of_free_flow_speed() {
        let level = |speed| congestion(speed, 20.0, 50.0);
        assert_eq!(level(45.0), Congestion::A); // 90 %
        assert_eq!(level(42.5), Congestion::B); // exactly 85 %: not above
        assert_eq!(level(30.0), Congestion::C); // 60 %
        assert_eq!(level(25.0), Congestion::D); // exactly 50 %
        assert_eq!(level(17.0), Congestion::E); // 34 %
        assert_eq!(level(15.0), Congestion::F); // exactly 30 %
                                                // A standing queue over the detector is F however fast the last cars moved.
        assert_eq!(congestion(45.0, 85.0, 50.0), Congestion::F);
    }

    #[test]
    fn volume_and_availability() {
        // 120 vehicles in 5 minutes = 1 440 veh/h.
        assert_eq!(volume_per_hour(120.0, 300_000), 1_440.0);
        // 30 reports in 15 minutes, 6 of them in fault: 80 % available.
        assert_eq!(availability_pct(30, 6), Some(80.0));
        assert_eq!(availability_pct(0, 0), None);
    }
}
