//! Rain and flood KPIs: rainfall accumulations and the water-level rise rate.

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

#[cfg(test)]
mod tests {
    use super::*;

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
