//! Water quality: the national limits a station's class holds each parameter to, and the
//! Vietnamese water quality index (VN_WQI).
//!
//! The standards, replaced in 2023 by Thông tư 01/2023/TT-BTNMT (13/03/2023):
//! - Surface water: QCVN 08:2023/BTNMT, "Quy chuẩn kỹ thuật quốc gia về chất lượng nước mặt".
//!   - Bảng 1 holds every surface water to the limits that protect human health; of what the
//!     stations measure, NH4⁺ (as N) ≤ 0.3 mg/L.
//!   - Bảng 2 classifies rivers, streams and canals into levels A (good) to D (poor), and
//!     Bảng 3 does the same for lakes, ponds and lagoons. A station is judged against the level
//!     its water body is managed for (the registry's `water_class`); D is what fails C.
//! - Sea water: QCVN 10:2023/BTNMT, "Quy chuẩn kỹ thuật quốc gia về chất lượng nước biển". The
//!   coastal zone (vùng biển ven bờ) runs 6 nautical miles out from the shore; its Bảng 1
//!   protects aquatic life and Bảng 2 human health and the marine ecosystem (NH4⁺ ≤ 0.1 mg/L).
//!   The 2023 text has no separate column for ports: Cảng Tiên Sa is held to the coastal
//!   zone's limits like the beaches.
//! - Waste water: QCVN 40:2011/BTNMT (industrial effluent), column B: pH 5.5–9, BOD5 ≤ 50,
//!   COD ≤ 150, TSS ≤ 100, NH4⁺ (as N) ≤ 10 mg/L.
//!
//! The values were read from public transcriptions, not the gazette; the README's "Questions
//! for the city" lists the ones a transcription left unclear. A parameter the class does not
//! limit is not reported.

use ioc_schemas::WaterClass;

/// The limits of one parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// The parameter's measurement name.
    pub parameter: &'static str,
    /// The lowest allowed value.
    pub min: Option<f64>,
    /// The highest allowed value.
    pub max: Option<f64>,
}

const fn range(parameter: &'static str, min: f64, max: f64) -> Limit {
    Limit {
        parameter,
        min: Some(min),
        max: Some(max),
    }
}

const fn at_most(parameter: &'static str, max: f64) -> Limit {
    Limit {
        parameter,
        min: None,
        max: Some(max),
    }
}

const fn at_least(parameter: &'static str, min: f64) -> Limit {
    Limit {
        parameter,
        min: Some(min),
        max: None,
    }
}

/// QCVN 08:2023 Bảng 1: NH4⁺ as N, for every surface water.
const HEALTH_NH4: Limit = at_most("nh4", 0.3);

// QCVN 08:2023 Bảng 2 (rivers). mg/L except pH and coliform (MPN or CFU per 100 mL).
const RIVER_A: [Limit; 10] = [
    range("ph", 6.5, 8.5),
    at_most("bod5", 4.0),
    at_most("cod", 10.0),
    at_most("toc", 4.0),
    at_most("tss", 25.0),
    // Hidden in the transcription read; level A of Bảng 3 (lakes) is 6.0 too.
    at_least("do", 6.0),
    at_most("tp", 0.1),
    at_most("tn", 0.6),
    at_most("coliform", 1000.0),
    HEALTH_NH4,
];
const RIVER_B: [Limit; 10] = [
    range("ph", 6.0, 8.5),
    at_most("bod5", 6.0),
    at_most("cod", 15.0),
    at_most("toc", 6.0),
    // Hidden in the transcription read: level C begins above 100 mg/L.
    at_most("tss", 100.0),
    at_least("do", 5.0),
    at_most("tp", 0.3),
    at_most("tn", 1.5),
    at_most("coliform", 5000.0),
    HEALTH_NH4,
];
// Level C sets no number for TSS (above 100 mg/L, without floating rubbish).
const RIVER_C: [Limit; 9] = [
    range("ph", 6.0, 8.5),
    at_most("bod5", 10.0),
    at_most("cod", 20.0),
    // Hidden in the transcription read: level D is above 8 mg/L.
    at_most("toc", 8.0),
    at_least("do", 4.0),
    at_most("tp", 0.5),
    at_most("tn", 2.0),
    at_most("coliform", 7500.0),
    HEALTH_NH4,
];

// QCVN 08:2023 Bảng 3 (lakes, ponds, lagoons): clearer water than a river of the same level.
const LAKE_A: [Limit; 10] = [
    range("ph", 6.5, 8.5),
    at_most("bod5", 4.0),
    at_most("cod", 10.0),
    at_most("toc", 4.0),
    at_most("tss", 5.0),
    at_least("do", 6.0),
    at_most("tp", 0.1),
    at_most("tn", 0.6),
    at_most("coliform", 1000.0),
    HEALTH_NH4,
];
const LAKE_B: [Limit; 10] = [
    range("ph", 6.0, 8.5),
    at_most("bod5", 6.0),
    at_most("cod", 15.0),
    at_most("toc", 6.0),
    at_most("tss", 15.0),
    at_least("do", 5.0),
    at_most("tp", 0.3),
    at_most("tn", 1.5),
    at_most("coliform", 5000.0),
    HEALTH_NH4,
];

// QCVN 10:2023, coastal zone. pH from Bảng 1; NH4⁺ from Bảng 2. DO and TSS are those of the
// 2015 text's aquatic-life column (DO ≥ 5, TSS ≤ 50 mg/L), which the 2023 Bảng 1 carries as
// far as the transcriptions read show; a question for the city.
const COASTAL: [Limit; 4] = [
    range("ph", 6.5, 8.5),
    at_least("do", 5.0),
    at_most("tss", 50.0),
    at_most("nh4", 0.1),
];

const EFFLUENT_B: [Limit; 5] = [
    range("ph", 5.5, 9.0),
    at_most("bod5", 50.0),
    at_most("cod", 150.0),
    at_most("tss", 100.0),
    at_most("nh4", 10.0),
];

/// The standard, table and level a class is held to, as rows name it, and its limits.
pub fn standard(class: WaterClass) -> (&'static str, &'static [Limit]) {
    match class {
        WaterClass::RiverA => ("QCVN 08:2023/BTNMT Bảng 2 mức A", &RIVER_A),
        WaterClass::RiverB => ("QCVN 08:2023/BTNMT Bảng 2 mức B", &RIVER_B),
        WaterClass::RiverC => ("QCVN 08:2023/BTNMT Bảng 2 mức C", &RIVER_C),
        WaterClass::LakeA => ("QCVN 08:2023/BTNMT Bảng 3 mức A", &LAKE_A),
        WaterClass::LakeB => ("QCVN 08:2023/BTNMT Bảng 3 mức B", &LAKE_B),
        WaterClass::Coastal => ("QCVN 10:2023/BTNMT vùng biển ven bờ", &COASTAL),
        WaterClass::EffluentB => ("QCVN 40:2011/BTNMT cột B", &EFFLUENT_B),
    }
}

/// The limit of `parameter` for `class`, if the standard sets one.
pub fn limit(class: WaterClass, parameter: &str) -> Option<(&'static str, Limit)> {
    let (name, limits) = standard(class);
    limits
        .iter()
        .find(|l| l.parameter == parameter)
        .map(|l| (name, *l))
}

impl Limit {
    /// Whether `value` is outside the limits (on the limit itself is within).
    pub fn exceeded_by(&self, value: f64) -> bool {
        self.min.is_some_and(|min| value < min) || self.max.is_some_and(|max| value > max)
    }
}

/// The parameter name VN_WQI rows carry in the water family.
pub const WQI_PARAMETER: &str = "vn_wqi";
/// What VN_WQI rows name as their standard.
pub const WQI_STANDARD: &str = "QĐ 1460/QĐ-TCMT VN_WQI";
/// The floor VN_WQI rows are judged against: 51, the lowest of "Trung bình" (51–75, fit for
/// irrigation); a row below it is `exceeded`.
pub const WQI_FAIR: Limit = at_least(WQI_PARAMETER, 51.0);

/// Whether the VN_WQI applies to a class: it is for surface water (rivers and lakes).
pub fn has_wqi(class: WaterClass) -> bool {
    matches!(
        class,
        WaterClass::RiverA
            | WaterClass::RiverB
            | WaterClass::RiverC
            | WaterClass::LakeA
            | WaterClass::LakeB
    )
}

/// A group IV parameter's breakpoints (mg/L) for the sub-indices 100, 75, 50, 25 and 10 of
/// Quyết định 1460/QĐ-TCMT (12/11/2019), Bảng 1: at or below the first the sub-index is 100,
/// at or above the last 10, linear in between. NH4's first two breakpoints are both 0.3: below
/// 0.3 it is 100, at 0.3 it is 75.
const GROUP_IV: [(&str, [f64; 5]); 3] = [
    ("bod5", [4.0, 6.0, 15.0, 25.0, 50.0]),
    ("cod", [10.0, 15.0, 30.0, 50.0, 150.0]),
    ("toc", [4.0, 6.0, 15.0, 25.0, 50.0]),
];
const NH4_BREAKPOINTS: [f64; 5] = [0.3, 0.3, 0.6, 0.9, 5.0];
const Q: [f64; 5] = [100.0, 75.0, 50.0, 25.0, 10.0];

/// The sub-index of a concentration against five rising breakpoints (formula 1 of the
/// decision: the index falls as the value rises).
fn falling_index(value: f64, breakpoints: [f64; 5]) -> f64 {
    if value < breakpoints[0] || (value == breakpoints[0] && breakpoints[1] > breakpoints[0]) {
        return Q[0];
    }
    for i in 0..4 {
        let (lo, hi) = (breakpoints[i], breakpoints[i + 1]);
        if value <= hi && hi > lo {
            return (Q[i] - Q[i + 1]) / (hi - lo) * (hi - value) + Q[i + 1];
        }
    }
    Q[4]
}

/// The pH sub-index: 100 from 6 to 8.5, falling linearly to 50 at 5.5 and at 9, and 10 below
/// 5.5 or above 9.
fn ph_index(ph: f64) -> f64 {
    match ph {
        p if !(5.5..=9.0).contains(&p) => 10.0,
        p if p < 6.0 => 50.0 + (p - 5.5) / 0.5 * 50.0,
        p if p <= 8.5 => 100.0,
        p => 100.0 - (p - 8.5) / 0.5 * 50.0,
    }
}

/// Dissolved oxygen at saturation in fresh water at `t` °C, mg/L (the decision's formula).
pub fn do_saturation(t: f64) -> f64 {
    14.652 - 0.41022 * t + 0.007_991 * t * t - 0.000_077_774 * t * t * t
}

/// The DO sub-index from the percent saturation: 100 from 88 to 112 %, through 75, 50, 25 at
/// 75, 50, 20 % below and 125, 150, 200 % above, and 10 beyond 20 or 200 %.
fn do_index(percent: f64) -> f64 {
    const BP: [f64; 8] = [20.0, 50.0, 75.0, 88.0, 112.0, 125.0, 150.0, 200.0];
    const QD: [f64; 8] = [25.0, 50.0, 75.0, 100.0, 100.0, 75.0, 50.0, 25.0];
    if !(BP[0]..=BP[7]).contains(&percent) {
        return 10.0;
    }
    let i = BP.windows(2).position(|w| percent <= w[1]).unwrap_or(6);
    let (lo, hi) = (BP[i], BP[i + 1]);
    QD[i] + (QD[i + 1] - QD[i]) * (percent - lo) / (hi - lo)
}

/// VN_WQI of a surface-water station from its parameters' means (Quyết định 1460/QĐ-TCMT):
/// the pH sub-index over 100 times the mean of the organic and nutrient (group IV)
/// sub-indices, rounded. Group IV here is DO (as percent saturation, so it needs the water
/// temperature), BOD5, COD, TOC and NH4⁺; the decision asks for at least 3 of its parameters,
/// and pH. The stations measure no pesticides, metals or coliform (groups II, III, V), which
/// the index then leaves out as the decision allows. `None` when short of data.
pub fn vn_wqi(get: impl Fn(&str) -> Option<f64>) -> Option<f64> {
    let ph = ph_index(get("ph")?);
    let mut group_iv: Vec<f64> = GROUP_IV
        .iter()
        .filter_map(|(name, bp)| get(name).map(|v| falling_index(v, *bp)))
        .collect();
    if let Some(nh4) = get("nh4") {
        group_iv.push(falling_index(nh4, NH4_BREAKPOINTS));
    }
    if let (Some(d), Some(t)) = (get("do"), get("temperature")) {
        let saturation = do_saturation(t);
        if saturation > 0.0 {
            group_iv.push(do_index(d / saturation * 100.0));
        }
    }
    if group_iv.len() < 3 {
        return None;
    }
    let mean = group_iv.iter().sum::<f64>() / group_iv.len() as f64;
    Some((ph / 100.0 * mean).round())
}

/// The VN_WQI band (Quyết định 1460/QĐ-TCMT, Bảng 4): its Vietnamese name and what the water
/// is fit for.
pub fn wqi_band(wqi: f64) -> (&'static str, &'static str) {
    match wqi {
        w if w >= 91.0 => ("Rất tốt", "good for domestic water supply"),
        w if w >= 76.0 => ("Tốt", "domestic water supply with suitable treatment"),
        w if w >= 51.0 => ("Trung bình", "irrigation and similar uses"),
        w if w >= 26.0 => ("Xấu", "waterway transport and similar uses"),
        w if w >= 10.0 => ("Kém", "heavily polluted; needs treatment"),
        _ => ("Ô nhiễm rất nặng", "toxic; needs remediation"),
    }
}

/// The window means of the worked VN_WQI (82, "Tốt"), for the tests here and in `device.rs`.
#[cfg(test)]
pub(crate) const WORKED_WQI: [(&str, f64); 6] = [
    ("ph", 7.0),
    ("do", 6.5),
    ("temperature", 27.0),
    ("bod5", 5.0),
    ("cod", 12.0),
    ("nh4", 0.45),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Each limit of a class: the value on the limit passes, a step past it fails.
    fn check_each_limit(class: WaterClass) {
        let (_, limits) = standard(class);
        for l in limits {
            if let Some(max) = l.max {
                assert!(!l.exceeded_by(max), "{class:?} {} at {max}", l.parameter);
                assert!(
                    l.exceeded_by(max + 0.01),
                    "{class:?} {} over {max}",
                    l.parameter
                );
            }
            if let Some(min) = l.min {
                assert!(!l.exceeded_by(min), "{class:?} {} at {min}", l.parameter);
                assert!(
                    l.exceeded_by(min - 0.01),
                    "{class:?} {} under {min}",
                    l.parameter
                );
            }
        }
    }

    #[test]
    fn every_limit_of_every_class_holds_at_its_value() {
        for class in WaterClass::ALL {
            check_each_limit(class);
        }
    }

    #[test]
    fn the_river_levels_step_from_a_to_c() {
        let max = |class, p| limit(class, p).unwrap().1.max.unwrap();
        let min = |class, p| limit(class, p).unwrap().1.min.unwrap();
        use WaterClass::*;
        assert_eq!(
            [
                max(RiverA, "bod5"),
                max(RiverB, "bod5"),
                max(RiverC, "bod5")
            ],
            [4.0, 6.0, 10.0]
        );
        assert_eq!(
            [max(RiverA, "cod"), max(RiverB, "cod"), max(RiverC, "cod")],
            [10.0, 15.0, 20.0]
        );
        assert_eq!(
            [min(RiverA, "do"), min(RiverB, "do"), min(RiverC, "do")],
            [6.0, 5.0, 4.0]
        );
        assert_eq!([min(RiverA, "ph"), min(RiverB, "ph")], [6.5, 6.0]);
        // Level C sets no TSS number; lakes are held to clearer water than rivers.
        assert!(limit(RiverC, "tss").is_none());
        assert_eq!([max(LakeA, "tss"), max(LakeB, "tss")], [5.0, 15.0]);
        // Bảng 1's NH4 applies at every level.
        for class in [RiverA, RiverB, RiverC, LakeA, LakeB] {
            assert_eq!(max(class, "nh4"), 0.3);
        }
        let (name, _) = limit(RiverA, "nh4").unwrap();
        assert_eq!(name, "QCVN 08:2023/BTNMT Bảng 2 mức A");
    }

    #[test]
    fn the_coastal_zone_has_dissolved_oxygen_and_bang_2_ammonium() {
        let (name, d) = limit(WaterClass::Coastal, "do").unwrap();
        assert_eq!(name, "QCVN 10:2023/BTNMT vùng biển ven bờ");
        assert!(d.exceeded_by(4.9));
        assert!(!d.exceeded_by(5.0));
        let (_, nh4) = limit(WaterClass::Coastal, "nh4").unwrap();
        assert!(nh4.exceeded_by(0.12));
        assert!(!nh4.exceeded_by(0.1));
        assert!(limit(WaterClass::Coastal, "cod").is_none());
        let (_, cod) = limit(WaterClass::EffluentB, "cod").unwrap();
        assert!(cod.exceeded_by(160.0));
        assert!(limit(WaterClass::RiverB, "temperature").is_none());
    }

    #[test]
    fn sub_indices_at_the_breakpoints() {
        let bod = GROUP_IV[0].1;
        for (value, q) in [
            (2.0, 100.0),
            (4.0, 100.0),
            (5.0, 87.5),
            (6.0, 75.0),
            (15.0, 50.0),
            (25.0, 25.0),
            (50.0, 10.0),
            (80.0, 10.0),
        ] {
            assert!((falling_index(value, bod) - q).abs() < 1e-9, "BOD5 {value}");
        }
        // NH4: 100 below 0.3, 75 at it.
        assert_eq!(falling_index(0.29, NH4_BREAKPOINTS), 100.0);
        assert_eq!(falling_index(0.3, NH4_BREAKPOINTS), 75.0);
        assert!((falling_index(0.45, NH4_BREAKPOINTS) - 62.5).abs() < 1e-9);
        assert_eq!(falling_index(6.0, NH4_BREAKPOINTS), 10.0);
        for (ph, q) in [
            (5.0, 10.0),
            (5.75, 75.0),
            (7.0, 100.0),
            (8.75, 75.0),
            (9.5, 10.0),
        ] {
            assert!((ph_index(ph) - q).abs() < 1e-9, "pH {ph}");
        }
        for (percent, q) in [
            (10.0, 10.0),
            (35.0, 37.5),
            (88.0, 100.0),
            (100.0, 100.0),
            (137.5, 62.5),
            (250.0, 10.0),
        ] {
            assert!((do_index(percent) - q).abs() < 1e-9, "DO {percent} %");
        }
    }

    #[test]
    fn a_worked_vn_wqi() {
        // At 27 °C saturation is 7.8707 mg/L, so DO 6.5 mg/L is 82.58 %: sub-index 89.58.
        // BOD5 5 → 87.5, COD 12 → 90, NH4 0.45 → 62.5; pH 7 → 100.
        // VN_WQI = 100/100 × (89.58 + 87.5 + 90 + 62.5) / 4 = 82.4 → 82, "Tốt".
        assert!((do_saturation(27.0) - 7.8707).abs() < 1e-4);
        let get = |name: &str| WORKED_WQI.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let wqi = vn_wqi(get).unwrap();
        assert_eq!(wqi, 82.0);
        assert_eq!(wqi_band(wqi).0, "Tốt");
        // Acid water scales the whole index: pH 5.75 is a factor of 0.75 (82.4 × 0.75 = 61.8).
        let acid = |name: &str| if name == "ph" { Some(5.75) } else { get(name) };
        assert_eq!(vn_wqi(acid), Some(62.0));
        // Without DO's temperature and COD, two group IV parameters are too few.
        let short = |name: &str| match name {
            "ph" | "bod5" | "nh4" | "do" => get(name),
            _ => None,
        };
        assert_eq!(vn_wqi(short), None);
        // No pH, no index.
        assert_eq!(vn_wqi(|n| if n == "ph" { None } else { get(n) }), None);
    }

    #[test]
    fn bands_at_their_edges() {
        let names: Vec<&str> = [
            100.0, 91.0, 90.0, 76.0, 75.0, 51.0, 50.0, 26.0, 25.0, 10.0, 9.0,
        ]
        .into_iter()
        .map(|w| wqi_band(w).0)
        .collect();
        assert_eq!(
            names,
            [
                "Rất tốt",
                "Rất tốt",
                "Tốt",
                "Tốt",
                "Trung bình",
                "Trung bình",
                "Xấu",
                "Xấu",
                "Kém",
                "Kém",
                "Ô nhiễm rất nặng"
            ]
        );
        assert!(has_wqi(WaterClass::LakeB) && !has_wqi(WaterClass::Coastal));
    }
}
