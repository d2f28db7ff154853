//! VN_AQI, the Vietnamese air quality index, after Quyết định 1459/QĐ-TCMT (Tổng cục Môi
//! trường, 12/11/2019), "Hướng dẫn kỹ thuật tính toán và công bố chỉ số chất lượng không khí
//! Việt Nam (VN_AQI)".
//!
//! - A pollutant's sub-index interpolates linearly between the breakpoints of Table 2 of the
//!   decision: `AQI_x = (I_{i+1} − I_i) / (BP_{i+1} − BP_i) × (C_x − BP_i) + I_i`.
//! - The AQI is the largest sub-index, and exists only when PM10 or PM2.5 is measured.
//! - Hourly AQI uses 1-hour concentrations of O3, NO2, SO2 and CO, and the NowCast of the last
//!   12 hours for PM10 and PM2.5.
//! - Daily AQI (§2.2) uses 24-hour means of PM and the day's largest 1-hour value of NO2, SO2
//!   and CO. For O3 it takes the larger of the sub-index of the day's largest 1-hour value and
//!   that of its largest 8-hour mean, on the 8-hour row of Table 2; above the row's last
//!   breakpoint (400 µg/m³) the 8-hour index is not used.
//! - Completeness: a 24-hour mean needs 18 of the 24 hourly means and an 8-hour mean 6 of 8
//!   (75 %). No threshold was found in the decision's text; 75 % is the rule of Directive
//!   2008/50/EC (Annex VII and XI) and of US EPA practice, and the README lists it among the
//!   questions for the city.
//! - Bands (Table 1): 0–50 Tốt, 51–100 Trung bình, 101–150 Kém, 151–200 Xấu, 201–300 Rất xấu,
//!   301–500 Nguy hại, with the RGB colours the decision gives.
//!
//! All concentrations are in µg/m³.

use serde::{Deserialize, Serialize};

/// The index values at the breakpoints (Table 2, row I).
const INDEX: [f64; 8] = [0.0, 50.0, 100.0, 150.0, 200.0, 300.0, 400.0, 500.0];

/// A pollutant of VN_AQI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pollutant {
    /// Fine particles, PM2.5.
    Pm25,
    /// Particles, PM10.
    Pm10,
    /// Ozone, 1-hour.
    O3,
    /// Nitrogen dioxide, 1-hour.
    No2,
    /// Sulphur dioxide, 1-hour.
    So2,
    /// Carbon monoxide, 1-hour.
    Co,
}

impl Pollutant {
    /// Every pollutant.
    pub const ALL: [Pollutant; 6] = [
        Pollutant::Pm25,
        Pollutant::Pm10,
        Pollutant::O3,
        Pollutant::No2,
        Pollutant::So2,
        Pollutant::Co,
    ];

    /// The measurement name used in environment readings.
    pub fn measurement(self) -> &'static str {
        match self {
            Pollutant::Pm25 => "pm25",
            Pollutant::Pm10 => "pm10",
            Pollutant::O3 => "o3",
            Pollutant::No2 => "no2",
            Pollutant::So2 => "so2",
            Pollutant::Co => "co",
        }
    }

    /// The concentration breakpoints, µg/m³ (Table 2; PM as 24-hour, the others as 1-hour).
    pub fn breakpoints(self) -> [f64; 8] {
        match self {
            Pollutant::Pm25 => [0.0, 25.0, 50.0, 80.0, 150.0, 250.0, 350.0, 500.0],
            Pollutant::Pm10 => [0.0, 50.0, 150.0, 250.0, 350.0, 420.0, 500.0, 600.0],
            Pollutant::O3 => [0.0, 160.0, 200.0, 300.0, 400.0, 800.0, 1000.0, 1200.0],
            Pollutant::No2 => [0.0, 100.0, 200.0, 700.0, 1200.0, 2350.0, 3100.0, 3850.0],
            Pollutant::So2 => [0.0, 125.0, 350.0, 550.0, 800.0, 1600.0, 2100.0, 2630.0],
            Pollutant::Co => [
                0.0, 10_000.0, 30_000.0, 45_000.0, 60_000.0, 90_000.0, 120_000.0, 150_000.0,
            ],
        }
    }

    /// Whether its hourly value is a NowCast.
    pub fn is_particulate(self) -> bool {
        matches!(self, Pollutant::Pm25 | Pollutant::Pm10)
    }
}

/// The 8-hour O3 breakpoints, µg/m³ (Table 2, row "O3 (8h)"): index 0 to 300; the row has no
/// value above 400.
const O3_8H_BREAKPOINTS: [f64; 6] = [0.0, 100.0, 120.0, 170.0, 210.0, 400.0];

/// Hourly means needed for an 8-hour mean (75 %).
pub const MIN_HOURS_OF_8: usize = 6;
/// Hourly means needed for a 24-hour mean (75 %).
pub const MIN_HOURS_OF_24: usize = 18;

/// The sub-index of a concentration, rounded to the nearest whole number ("làm tròn thành số
/// nguyên", as the decision publishes AQI values);
/// concentrations beyond the last breakpoint give 500. `None` for a negative or non-finite one.
pub fn sub_index(pollutant: Pollutant, concentration: f64) -> Option<u32> {
    interpolate(&pollutant.breakpoints(), concentration)
        .or_else(|| (concentration.is_finite() && concentration >= 0.0).then_some(500))
}

/// The sub-index of an 8-hour O3 mean; `None` above 400 µg/m³, where the decision does not use
/// it (the 1-hour index then applies).
pub fn o3_8h_sub_index(concentration: f64) -> Option<u32> {
    interpolate(&O3_8H_BREAKPOINTS, concentration)
}

/// The daily O3 sub-index: the larger of the 1-hour maximum's and the 8-hour maximum's.
pub fn daily_o3_sub_index(max_1h: Option<f64>, max_8h: Option<f64>) -> Option<u32> {
    let one = max_1h.and_then(|c| sub_index(Pollutant::O3, c));
    let eight = max_8h.and_then(o3_8h_sub_index);
    one.max(eight)
}

/// Linear interpolation on `bp` against the index row; `None` outside it.
fn interpolate(bp: &[f64], concentration: f64) -> Option<u32> {
    if !concentration.is_finite() || concentration < 0.0 {
        return None;
    }
    let i = bp.windows(2).position(|w| concentration <= w[1])?;
    let value =
        (INDEX[i + 1] - INDEX[i]) / (bp[i + 1] - bp[i]) * (concentration - bp[i]) + INDEX[i];
    Some(value.round() as u32)
}

/// The mean of `hours` hourly means when at least `needed` of them exist.
pub fn mean_of_hours(hours: &[Option<f64>], needed: usize) -> Option<f64> {
    let present: Vec<f64> = hours.iter().flatten().copied().collect();
    (present.len() >= needed && !present.is_empty())
        .then(|| present.iter().sum::<f64>() / present.len() as f64)
}

/// The NowCast of hourly PM concentrations, most recent first (`hourly[0]` is the last hour),
/// `None` for a missing hour. Needs at least 2 of the 3 most recent hours. With
/// `w* = c_min / c_max` over the available hours, `w = max(w*, 1/2)`, and
/// `NowCast = Σ w^(i−1) c_i / Σ w^(i−1)`, over the available hours of the last 12.
pub fn nowcast(hourly: &[Option<f64>]) -> Option<f64> {
    let recent = hourly.iter().take(3).filter(|c| c.is_some()).count();
    if recent < 2 {
        return None;
    }
    let values: Vec<(usize, f64)> = hourly
        .iter()
        .take(12)
        .enumerate()
        .filter_map(|(i, c)| c.map(|c| (i, c)))
        .collect();
    let max = values.iter().map(|(_, c)| *c).fold(f64::MIN, f64::max);
    let min = values.iter().map(|(_, c)| *c).fold(f64::MAX, f64::min);
    let w = if max <= 0.0 {
        1.0
    } else {
        (min / max).max(0.5)
    };
    let (num, den) = values.iter().fold((0.0, 0.0), |(n, d), (i, c)| {
        let weight = w.powi(*i as i32);
        (n + weight * c, d + weight)
    });
    Some(num / den)
}

/// An air quality band (Table 1), with its name and colour.
pub use ioc_schemas::AqiBand as Band;

/// A station's AQI with its sub-indices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aqi {
    /// The AQI: the largest sub-index.
    pub aqi: u32,
    /// The pollutant that gave it.
    pub dominant: Pollutant,
    /// Every sub-index computed.
    pub sub_indices: Vec<(Pollutant, u32)>,
    /// The band.
    pub band: Band,
}

/// The AQI of a set of concentrations (already NowCast or averaged as the period requires).
/// `None` when neither PM10 nor PM2.5 is among them, as the decision requires.
pub fn aqi(concentrations: &[(Pollutant, f64)]) -> Option<Aqi> {
    aqi_of(
        concentrations
            .iter()
            .filter_map(|(p, c)| sub_index(*p, *c).map(|i| (*p, i)))
            .collect(),
    )
}

/// The AQI of the sub-indices computed: the largest, when PM10 or PM2.5 is among them.
pub fn aqi_of(sub_indices: Vec<(Pollutant, u32)>) -> Option<Aqi> {
    if !sub_indices.iter().any(|(p, _)| p.is_particulate()) {
        return None;
    }
    let (dominant, value) = sub_indices.iter().copied().max_by_key(|(_, i)| *i)?;
    Some(Aqi {
        aqi: value,
        dominant,
        sub_indices,
        band: Band::of(value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_indices_interpolate_between_breakpoints() {
        // PM2.5 37.5 µg/m³: between 25 (50) and 50 (100): 50 + 50/25 × 12.5 = 75.
        assert_eq!(sub_index(Pollutant::Pm25, 37.5), Some(75));
        // PM10 200: between 150 (100) and 250 (150): 100 + 50/100 × 50 = 125.
        assert_eq!(sub_index(Pollutant::Pm10, 200.0), Some(125));
        // NO2 450: between 200 (100) and 700 (150): 100 + 50/500 × 250 = 125.
        assert_eq!(sub_index(Pollutant::No2, 450.0), Some(125));
        // CO 20 000: between 10 000 (50) and 30 000 (100): 50 + 50/20 000 × 10 000 = 75.
        assert_eq!(sub_index(Pollutant::Co, 20_000.0), Some(75));
        // Exactly on a breakpoint: the band's top.
        assert_eq!(sub_index(Pollutant::Pm25, 50.0), Some(100));
        // Just above it: 100 + 50/30 × 0.1 = 100.17 rounds to 100; × 0.7 = 101.17 to 101.
        assert_eq!(sub_index(Pollutant::Pm25, 50.1), Some(100));
        assert_eq!(sub_index(Pollutant::Pm25, 50.7), Some(101));
        // Beyond the table.
        assert_eq!(sub_index(Pollutant::Pm25, 900.0), Some(500));
        assert_eq!(sub_index(Pollutant::Pm25, -1.0), None);
    }

    #[test]
    fn the_daily_o3_index_takes_the_larger_of_1_hour_and_8_hour() {
        // 8-hour row: 130 µg/m³ lies between 120 (100) and 170 (150): 100 + 50/50 × 10 = 110.
        assert_eq!(o3_8h_sub_index(130.0), Some(110));
        assert_eq!(o3_8h_sub_index(100.0), Some(50));
        assert_eq!(o3_8h_sub_index(400.0), Some(300));
        // Above 400 the 8-hour index is not used.
        assert_eq!(o3_8h_sub_index(400.5), None);
        // A sunny day: 1-hour peak 150 (index 50/160 × 150 = 46.9, 47, Tốt), 8-hour 130 (110,
        // Kém): the day's O3 index is 110.
        assert_eq!(sub_index(Pollutant::O3, 150.0), Some(47));
        assert_eq!(daily_o3_sub_index(Some(150.0), Some(130.0)), Some(110));
        // A sharp 1-hour peak: 1-hour 420 (200 + 100/400 × 20 = 205) beats the 8-hour 200
        // (150 + 50/40 × 30 = 187.5, 188).
        assert_eq!(o3_8h_sub_index(200.0), Some(188));
        assert_eq!(daily_o3_sub_index(Some(420.0), Some(200.0)), Some(205));
        // 8-hour above 400: only the 1-hour counts (500: 200 + 100/400 × 100 = 225).
        assert_eq!(daily_o3_sub_index(Some(500.0), Some(450.0)), Some(225));
        assert_eq!(daily_o3_sub_index(None, Some(90.0)), Some(45));
        assert_eq!(daily_o3_sub_index(None, None), None);
    }

    #[test]
    fn means_need_three_quarters_of_their_hours() {
        let mut day = vec![Some(40.0); 18];
        day.extend([None; 6]);
        assert_eq!(mean_of_hours(&day, MIN_HOURS_OF_24), Some(40.0));
        day[0] = None;
        assert_eq!(mean_of_hours(&day, MIN_HOURS_OF_24), None, "17 of 24");
        let eight = [
            Some(120.0),
            Some(140.0),
            None,
            Some(130.0),
            Some(130.0),
            None,
            Some(110.0),
            Some(150.0),
        ];
        assert_eq!(mean_of_hours(&eight, MIN_HOURS_OF_8), Some(130.0));
    }

    #[test]
    fn nowcast_weights_recent_hours() {
        // Steady air: the NowCast is the level itself.
        assert_eq!(nowcast(&[Some(40.0); 12]), Some(40.0));
        // Rising fast: c_min/c_max = 10/80 < 1/2, so w = 1/2. Hours (recent first) 80, 40, 20,
        // 10: (80 + 20 + 5 + 1.25) / (1 + 0.5 + 0.25 + 0.125) = 106.25 / 1.875 = 56.67.
        let n = nowcast(&[Some(80.0), Some(40.0), Some(20.0), Some(10.0)]).unwrap();
        assert!((n - 56.666_666).abs() < 1e-3, "{n}");
        // Gently varying: w* = 30/40 = 0.75. Hours 40, 30: (40 + 0.75 × 30) / 1.75 = 35.71.
        let n = nowcast(&[Some(40.0), Some(30.0)]).unwrap();
        assert!((n - 35.714_285).abs() < 1e-3, "{n}");
        // Missing hours are left out of both sums.
        let n = nowcast(&[Some(40.0), None, Some(30.0)]).unwrap();
        assert!((n - (40.0 + 0.75 * 0.75 * 30.0) / (1.0 + 0.5625)).abs() < 1e-9);
        // Fewer than 2 of the last 3 hours: no NowCast.
        assert_eq!(nowcast(&[Some(40.0), None, None, Some(30.0)]), None);
    }

    #[test]
    fn the_aqi_is_the_largest_sub_index_and_needs_pm() {
        let a = aqi(&[
            (Pollutant::Pm25, 37.5),
            (Pollutant::No2, 450.0),
            (Pollutant::Co, 20_000.0),
        ])
        .unwrap();
        assert_eq!(a.aqi, 125);
        assert_eq!(a.dominant, Pollutant::No2);
        assert_eq!(a.band, Band::Poor);
        assert_eq!(a.band.name_vi(), "Kém");
        assert_eq!(a.band.colour(), "#ff7e00");
        assert_eq!(a.sub_indices.len(), 3);
        // Without PM10 or PM2.5 a station gets no AQI.
        assert_eq!(aqi(&[(Pollutant::O3, 250.0), (Pollutant::No2, 90.0)]), None);
    }

    #[test]
    fn a_pollution_episode_crosses_two_bands() {
        // PM2.5 NowCast rising through Trung bình into Kém and Xấu.
        let bands: Vec<Band> = [30.0, 60.0, 100.0]
            .iter()
            .map(|c| aqi(&[(Pollutant::Pm25, *c)]).unwrap().band)
            .collect();
        assert_eq!(bands, vec![Band::Moderate, Band::Poor, Band::Bad]);
    }

    #[test]
    fn bands_follow_table_1() {
        assert_eq!(Band::of(0), Band::Good);
        assert_eq!(Band::of(50), Band::Good);
        assert_eq!(Band::of(51), Band::Moderate);
        assert_eq!(Band::of(150), Band::Poor);
        assert_eq!(Band::of(151), Band::Bad);
        assert_eq!(Band::of(300), Band::VeryBad);
        assert_eq!(Band::of(301), Band::Hazardous);
        assert_eq!(Band::Hazardous.name_vi(), "Nguy hại");
    }
}
