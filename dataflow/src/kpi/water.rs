//! Water quality limits: which value of a parameter breaks the national standard for the
//! station's medium.
//!
//! - Surface and river water: QCVN 08-MT:2015/BTNMT, "Quy chuẩn kỹ thuật quốc gia về chất
//!   lượng nước mặt", Table 1, column **B1** (irrigation, navigation and other uses of similar
//!   quality: the class Da Nang's lower Hàn, Cu Đê and Phú Lộc stations are held to):
//!   pH 5.5–9, BOD5 ≤ 15 mg/L, COD ≤ 30 mg/L, DO ≥ 4 mg/L, TSS ≤ 50 mg/L, NH4⁺ (as N)
//!   ≤ 0.9 mg/L.
//! - Sea water: QCVN 10-MT:2015/BTNMT, "Quy chuẩn kỹ thuật quốc gia về chất lượng nước biển",
//!   Table 1 (coastal water), column for **beaches and water sports** (Non Nước, Phạm Văn Đồng):
//!   pH 6.5–8.5, TSS ≤ 50 mg/L, NH4⁺ (as N) ≤ 0.5 mg/L.
//! - Waste water: QCVN 40:2011/BTNMT (industrial waste water), Table 1, column **B**
//!   (discharge into water not used for domestic supply): pH 5.5–9, BOD5 ≤ 50 mg/L,
//!   COD ≤ 150 mg/L, TSS ≤ 100 mg/L, NH4⁺ (as N) ≤ 10 mg/L.
//!
//! Check these against the texts before relying on them for enforcement; a parameter the
//! standard does not limit is not reported.

use ioc_schemas::Medium;

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

const SURFACE_B1: [Limit; 6] = [
    range("ph", 5.5, 9.0),
    at_most("bod5", 15.0),
    at_most("cod", 30.0),
    at_least("do", 4.0),
    at_most("tss", 50.0),
    at_most("nh4", 0.9),
];

const SEA_BEACH: [Limit; 3] = [
    range("ph", 6.5, 8.5),
    at_most("tss", 50.0),
    at_most("nh4", 0.5),
];

const WASTE_B: [Limit; 5] = [
    range("ph", 5.5, 9.0),
    at_most("bod5", 50.0),
    at_most("cod", 150.0),
    at_most("tss", 100.0),
    at_most("nh4", 10.0),
];

/// The standard (and column) a medium is held to, and its limits. Air has none here.
pub fn standard(medium: Medium) -> Option<(&'static str, &'static [Limit])> {
    match medium {
        Medium::SurfaceWater | Medium::RiverWater => {
            Some(("QCVN 08-MT:2015/BTNMT B1", &SURFACE_B1))
        }
        Medium::SeaWater => Some(("QCVN 10-MT:2015/BTNMT beaches", &SEA_BEACH)),
        Medium::WasteWater => Some(("QCVN 40:2011/BTNMT B", &WASTE_B)),
        Medium::Air => None,
    }
}

/// The limit of `parameter` for `medium`, if the standard sets one.
pub fn limit(medium: Medium, parameter: &str) -> Option<(&'static str, Limit)> {
    let (name, limits) = standard(medium)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn river_water_is_held_to_column_b1() {
        let (standard, nh4) = limit(Medium::RiverWater, "nh4").unwrap();
        assert_eq!(standard, "QCVN 08-MT:2015/BTNMT B1");
        // 0.8 mg/L NH4+ is within B1's 0.9; 1.2 is over.
        assert!(!nh4.exceeded_by(0.8));
        assert!(nh4.exceeded_by(1.2));
        // Dissolved oxygen is a floor: 3.5 mg/L is too little, 4.0 is just enough.
        let (_, d) = limit(Medium::SurfaceWater, "do").unwrap();
        assert!(d.exceeded_by(3.5));
        assert!(!d.exceeded_by(4.0));
    }

    #[test]
    fn sea_water_ph_has_both_bounds() {
        let (_, ph) = limit(Medium::SeaWater, "ph").unwrap();
        assert!(ph.exceeded_by(6.4));
        assert!(!ph.exceeded_by(8.1));
        assert!(ph.exceeded_by(8.6));
        // The beach column sets no COD limit, so COD is not judged there.
        assert!(limit(Medium::SeaWater, "cod").is_none());
    }

    #[test]
    fn waste_water_and_air() {
        let (_, cod) = limit(Medium::WasteWater, "cod").unwrap();
        assert!(cod.exceeded_by(160.0));
        assert!(standard(Medium::Air).is_none());
        // Temperature has no limit in these tables.
        assert!(limit(Medium::RiverWater, "temperature").is_none());
    }
}
