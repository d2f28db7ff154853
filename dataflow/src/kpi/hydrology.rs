//! Rain and flood KPIs: rainfall accumulations, the water-level rise rate and the flood alarm
//! level.

/// Rainfall accumulated over a period, mm: the sum of the gauges' per-interval rainfall
/// readings (`rainfall_mm` is the rain since the previous report).
pub fn accumulation_mm(per_interval_mm: &[f64]) -> f64 {
    per_interval_mm.iter().filter(|v| v.is_finite()).sum()
}

/// How fast the water rises, m/h, from the first and last levels of a window: positive when
/// rising. `None` when the two readings are at the same time.
pub fn rise_rate_m_per_h(first: (u64, f64), last: (u64, f64)) -> Option<f64> {
    let (t0, l0) = first;
    let (t1, l1) = last;
    (t1 > t0).then(|| (l1 - l0) * 3_600_000.0 / (t1 - t0) as f64)
}

/// The flood alarm level a water level has reached against a river gauge's levels of báo động
/// I, II and III (Quyết định 05/2020/QĐ-TTg): 0 below I, 3 at III or above. A level on a
/// threshold has reached it, as the forecast bulletins count it ("đạt báo động").
pub fn alarm_level(level_m: f64, alarm_m: [f64; 3]) -> u8 {
    alarm_m.iter().filter(|a| level_m >= **a).count() as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_levels_at_each_step() {
        // Ái Nghĩa on the Vu Gia: báo động I 6.5 m, II 8.0 m, III 9.0 m.
        let ai_nghia = [6.5, 8.0, 9.0];
        for (level, expected) in [
            (3.86, 0),
            (6.49, 0),
            (6.5, 1),
            (7.99, 1),
            (8.0, 2),
            (8.14, 2),
            (9.0, 3),
            (10.56, 3),
        ] {
            assert_eq!(alarm_level(level, ai_nghia), expected, "{level} m");
        }
    }

    #[test]
    fn accumulations_and_rise_rates() {
        // Twelve 5-minute reports of 2.5 mm: 30 mm in the hour.
        assert_eq!(accumulation_mm(&[2.5; 12]), 30.0);
        // 1.20 m to 1.65 m in 30 minutes: rising 0.9 m/h.
        let rate = rise_rate_m_per_h((0, 1.20), (1_800_000, 1.65)).unwrap();
        assert!((rate - 0.9).abs() < 1e-9, "{rate}");
        assert_eq!(rise_rate_m_per_h((5, 1.0), (5, 2.0)), None);
    }
}
