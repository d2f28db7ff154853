//! The device registry: what each device is, where it stands and who owns it.
//!
//! A fleet is a JSON array of devices ([`parse_fleet`], [`fleet_json`]); the city's ships with
//! the simulator, which generates it (`simulator/registry/da_nang.json`), and operators change
//! it at run time through the API. Readings are enriched from it inside the dataflow.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::district::District;
use crate::reading::{check_id, Kind, Medium};

/// A city department that owns devices and receives their alerts.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Department {
    /// Sở Giao thông Vận tải: junctions, traffic cameras.
    Transport,
    /// Sở Tài nguyên và Môi trường: air and water stations.
    Environment,
    /// Công an thành phố: security and harbour cameras.
    Police,
    /// Sở Xây dựng: bridges, street lighting.
    Construction,
    /// Sở Công Thương.
    IndustryTrade,
    /// Ban chỉ huy Phòng chống thiên tai và Tìm kiếm cứu nạn: rain and flood gauges.
    DisasterPrevention,
    /// Sở Thông tin và Truyền thông.
    Information,
}

impl Department {
    /// Every department, in a stable order (also the order of the ClickHouse `Enum8` values).
    pub const ALL: [Department; 7] = [
        Department::Transport,
        Department::Environment,
        Department::Police,
        Department::Construction,
        Department::IndustryTrade,
        Department::DisasterPrevention,
        Department::Information,
    ];

    /// The ASCII id used in storage and the API.
    pub fn slug(self) -> &'static str {
        match self {
            Department::Transport => "transport",
            Department::Environment => "environment",
            Department::Police => "police",
            Department::Construction => "construction",
            Department::IndustryTrade => "industry_trade",
            Department::DisasterPrevention => "disaster_prevention",
            Department::Information => "information",
        }
    }

    /// The Vietnamese name.
    pub fn name_vi(self) -> &'static str {
        match self {
            Department::Transport => "Sở Giao thông Vận tải",
            Department::Environment => "Sở Tài nguyên và Môi trường",
            Department::Police => "Công an thành phố",
            Department::Construction => "Sở Xây dựng",
            Department::IndustryTrade => "Sở Công Thương",
            Department::DisasterPrevention => "Ban chỉ huy Phòng chống thiên tai và TKCN",
            Department::Information => "Sở Thông tin và Truyền thông",
        }
    }

    /// Parses the slug.
    pub fn from_slug(slug: &str) -> Option<Department> {
        Department::ALL.into_iter().find(|d| d.slug() == slug)
    }
}

/// One registered device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// The device id readings carry: 1 to 128 ASCII letters, digits, `_`, `-`, `.` or `:`.
    #[schemars(pattern(r"^[A-Za-z0-9_.:-]{1,128}$"))]
    pub id: String,
    /// The kind of readings it sends.
    pub kind: Kind,
    /// Its Vietnamese name (UTF-8, at most 200 bytes, not blank).
    #[schemars(pattern(r"\S"))]
    pub name: String,
    /// The district it stands in.
    pub district: District,
    /// Latitude, degrees north (WGS 84).
    #[schemars(range(min = -90.0, max = 90.0))]
    pub lat: f64,
    /// Longitude, degrees east (WGS 84).
    #[schemars(range(min = -180.0, max = 180.0))]
    pub lon: f64,
    /// The department that owns it.
    pub department: Department,
    /// How often it reports, in seconds (for event-driven cameras: the mean gap). Silent for
    /// three times this, it counts as offline.
    #[schemars(range(min = 1, max = 86_400))]
    pub expected_interval_s: u32,
    /// For a junction: the free-flow speed of its approaches in km/h (over 0, at most 200),
    /// which the congestion level is measured against; 50 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 200.0))]
    pub free_flow_kmh: Option<f64>,
    /// For a water-quality station: the class it is judged against. When absent, the class
    /// follows the medium its readings name (see [`WaterClass::default_for`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub water_class: Option<WaterClass>,
    /// For a river gauge: the water levels of flood alarm levels I, II and III (mực nước báo
    /// động 1, 2, 3 of Quyết định 05/2020/QĐ-TTg) in metres, on the datum its readings use;
    /// rising.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flood_alarm_m: Option<[f64; 3]>,
}

/// The water-quality class a station is judged against: the national technical regulation,
/// its table and, for surface water, the quality level the water body is managed for. The
/// limits are in `ioc_dataflow::kpi::water`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum WaterClass {
    /// QCVN 08:2023/BTNMT, rivers, streams and canals (Bảng 2), level A: good water, for
    /// domestic supply after treatment. For rivers that feed a water plant's intake.
    RiverA,
    /// Bảng 2, level B: for industry and agriculture after treatment.
    RiverB,
    /// Bảng 2, level C.
    RiverC,
    /// QCVN 08:2023/BTNMT, lakes, ponds and lagoons (Bảng 3), level A.
    LakeA,
    /// Bảng 3, level B.
    LakeB,
    /// QCVN 10:2023/BTNMT, the coastal zone (vùng biển ven bờ, within 6 nautical miles of the
    /// shore): beaches and ports alike.
    Coastal,
    /// QCVN 40:2011/BTNMT, industrial effluent, column B (discharge into water not used for
    /// domestic supply).
    EffluentB,
}

impl WaterClass {
    /// Every class, in a stable order.
    pub const ALL: [WaterClass; 7] = [
        WaterClass::RiverA,
        WaterClass::RiverB,
        WaterClass::RiverC,
        WaterClass::LakeA,
        WaterClass::LakeB,
        WaterClass::Coastal,
        WaterClass::EffluentB,
    ];

    /// The ASCII id used in the registry and storage.
    pub fn slug(self) -> &'static str {
        match self {
            WaterClass::RiverA => "river_a",
            WaterClass::RiverB => "river_b",
            WaterClass::RiverC => "river_c",
            WaterClass::LakeA => "lake_a",
            WaterClass::LakeB => "lake_b",
            WaterClass::Coastal => "coastal",
            WaterClass::EffluentB => "effluent_b",
        }
    }

    /// Parses the slug.
    pub fn from_slug(slug: &str) -> Option<WaterClass> {
        WaterClass::ALL.into_iter().find(|c| c.slug() == slug)
    }

    /// The class of a station the registry gives none: river water at level B, other
    /// surface water (lakes) at level B, sea water in the coastal zone, waste water at
    /// column B; air has none.
    pub fn default_for(medium: Medium) -> Option<WaterClass> {
        match medium {
            Medium::RiverWater => Some(WaterClass::RiverB),
            Medium::SurfaceWater => Some(WaterClass::LakeB),
            Medium::SeaWater => Some(WaterClass::Coastal),
            Medium::WasteWater => Some(WaterClass::EffluentB),
            Medium::Air => None,
        }
    }
}

/// Longest accepted device name, in bytes.
const MAX_NAME_BYTES: usize = 200;
/// Longest accepted reporting interval: one day.
const MAX_INTERVAL_S: u32 = 86_400;

/// Why a device description was refused. Permanent: the description must be fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidDevice {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl Device {
    /// Checks every field, naming the first that is wrong.
    pub fn validate(&self) -> Result<(), InvalidDevice> {
        let bad = |field, reason: String| Err(InvalidDevice { field, reason });
        if let Err(r) = check_id("id", &self.id) {
            return bad("id", r.detail);
        }
        let name = self.name.trim();
        if name.is_empty() || self.name.len() > MAX_NAME_BYTES {
            return bad(
                "name",
                format!("must be 1 to {MAX_NAME_BYTES} bytes and not blank"),
            );
        }
        if !(self.lat.is_finite() && (-90.0..=90.0).contains(&self.lat)) {
            return bad("lat", format!("{} is not a latitude", self.lat));
        }
        if !(self.lon.is_finite() && (-180.0..=180.0).contains(&self.lon)) {
            return bad("lon", format!("{} is not a longitude", self.lon));
        }
        if self.expected_interval_s == 0 || self.expected_interval_s > MAX_INTERVAL_S {
            return bad(
                "expected_interval_s",
                format!("must be 1 to {MAX_INTERVAL_S} seconds"),
            );
        }
        if let Some(v) = self.free_flow_kmh {
            if !(v.is_finite() && v > 0.0 && v <= 200.0) {
                return bad("free_flow_kmh", format!("{v} is not a speed in km/h"));
            }
        }
        if let Some(levels) = self.flood_alarm_m {
            let rising = levels.windows(2).all(|w| w[0] < w[1]);
            if !(levels.iter().all(|v| v.is_finite() && v.abs() <= 200.0) && rising) {
                return bad(
                    "flood_alarm_m",
                    format!("{levels:?} must be three rising levels in metres"),
                );
            }
        }
        Ok(())
    }
}

/// A change to the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum DeviceChange {
    /// Adds a device, or replaces the one with its id.
    Upsert(Device),
    /// Removes a device; its readings then count as from an unknown device.
    Remove {
        /// The device id.
        id: String,
    },
}

impl DeviceChange {
    /// The device it concerns.
    pub fn device_id(&self) -> &str {
        match self {
            DeviceChange::Upsert(d) => &d.id,
            DeviceChange::Remove { id } => id,
        }
    }
}

/// Why a fleet file was refused. Permanent.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Not a JSON array of devices.
    #[error("fleet file is not a json array of devices: {0}")]
    Json(#[from] serde_json::Error),
    /// A device is invalid.
    #[error("fleet file: device `{id}`: {error}")]
    Invalid {
        /// The device's id.
        id: String,
        /// What is wrong.
        error: InvalidDevice,
    },
    /// Two devices share an id.
    #[error("fleet file: device id `{0}` appears twice")]
    Duplicate(String),
}

/// Parses and validates a fleet file: a JSON array of [`Device`]s with distinct ids.
pub fn parse_fleet(json: &str) -> Result<BTreeMap<String, Device>, FleetError> {
    let devices: Vec<Device> = serde_json::from_str(json)?;
    let mut by_id = BTreeMap::new();
    for device in devices {
        device.validate().map_err(|error| FleetError::Invalid {
            id: device.id.clone(),
            error,
        })?;
        let id = device.id.clone();
        if by_id.insert(id.clone(), device).is_some() {
            return Err(FleetError::Duplicate(id));
        }
    }
    Ok(by_id)
}

/// Writes a fleet file: one device per line, so a diff shows one line per changed device.
pub fn fleet_json<'a>(devices: impl IntoIterator<Item = &'a Device>) -> String {
    let lines: Vec<String> = devices
        .into_iter()
        .map(|d| format!("  {}", serde_json::to_string(d).unwrap_or_default()))
        .collect();
    format!("[\n{}\n]\n", lines.join(",\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device {
            id: "tl-hai_chau-001".into(),
            kind: Kind::TrafficSignal,
            name: "Nút giao Hà Huy Tập – Huỳnh Ngọc Huệ".into(),
            district: District::HaiChau,
            lat: 16.06,
            lon: 108.2,
            department: Department::Transport,
            expected_interval_s: 30,
            free_flow_kmh: None,
            water_class: None,
            flood_alarm_m: None,
        }
    }

    #[test]
    fn a_valid_device_passes_and_round_trips() {
        let d = device();
        d.validate().unwrap();
        let text = fleet_json([&d]);
        let back = parse_fleet(&text).unwrap();
        assert_eq!(back.get(&d.id), Some(&d));
    }

    #[test]
    fn each_bad_field_is_named() {
        type Breaks = fn(&mut Device);
        let cases: [(&str, Breaks); 8] = [
            ("id", |d| d.id = "bad id".into()),
            ("name", |d| d.name = "  ".into()),
            ("lat", |d| d.lat = 91.0),
            ("lon", |d| d.lon = f64::NAN),
            ("expected_interval_s", |d| d.expected_interval_s = 0),
            ("free_flow_kmh", |d| d.free_flow_kmh = Some(-1.0)),
            ("flood_alarm_m", |d| d.flood_alarm_m = Some([1.0, 1.8, 1.5])),
            ("flood_alarm_m", |d| {
                d.flood_alarm_m = Some([1.0, f64::NAN, 2.5])
            }),
        ];
        for (field, break_it) in cases {
            let mut d = device();
            break_it(&mut d);
            assert_eq!(d.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn duplicates_and_unknown_fields_are_refused() {
        let d = device();
        let text = fleet_json([&d, &d]);
        assert!(matches!(parse_fleet(&text), Err(FleetError::Duplicate(_))));
        let extra = r#"[{"id":"x","kind":"sensor","name":"x","district":"hai_chau","lat":0,"lon":0,"department":"transport","expected_interval_s":1,"colour":"red"}]"#;
        assert!(matches!(parse_fleet(extra), Err(FleetError::Json(_))));
    }
}
