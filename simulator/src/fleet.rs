//! Da Nang's device fleet (DESIGN §2), built deterministically from a seed.
//!
//! Ids and names do not depend on the seed (so a device registry built from one seed matches
//! any other); the seed only places devices inside their district.

use ioc_schemas::{Department, Device, District, Kind, Medium, WaterClass};

use crate::error::SimulatorError;
use crate::rng::Rng;

/// What a simulated device stands for; selects how its readings are made.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceRole {
    /// A signal-controlled junction (`traffic_signal` readings).
    Junction {
        /// Whether the junction runs adaptive control (the Hà Huy Tập – Huỳnh Ngọc Huệ pilot).
        adaptive: bool,
        /// How many approaches the junction reports, 3 or 4.
        approaches: u8,
    },
    /// A smart traffic camera: plate reads, violations, vehicle counts.
    TrafficCamera,
    /// A Thọ Quang harbour camera: boats in and out, security events.
    HarbourCamera,
    /// An air quality station.
    AirStation,
    /// A water quality station sampling `medium`.
    WaterStation {
        /// Surface, waste, sea or river water.
        medium: Medium,
    },
    /// A bridge's structural monitor: strain, wind speed and direction, temperature,
    /// humidity, each as its own `sensor` reading.
    Bridge {
        /// The bridge's Vietnamese name.
        name: String,
    },
    /// A rain gauge (`rainfall_mm` per reading interval).
    RainGauge,
    /// A flood / water-level gauge (`water_level_m`).
    FloodGauge,
    /// A hydrological station on a river (`water_level_m`) with flood alarm levels.
    RiverGauge(RiverGauge),
}

/// A national hydrological station on one of the rivers that flood the city.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RiverGauge {
    /// Báo động I, II and III, m (Quyết định 05/2020/QĐ-TTg).
    pub alarm_m: [f64; 3],
    /// The usual water level, m.
    pub normal_m: f64,
    /// Half the tidal range at the station, m (0 above the tide's reach).
    pub tide_m: f64,
    /// How many times a flood episode's rise the river rises (a river gathering a basin's rain
    /// rises faster than a street gauge).
    pub flood_gain: f64,
}

/// The river stations: id, district, name, position and gauge. Levels from the hydro-met
/// bulletins quoted in the README ("Flood alarm levels"); Ái Nghĩa stands in Đại Lộc, upstream
/// of Hòa Vang, where its floods arrive.
const RIVER_GAUGES: [(&str, District, &str, f64, f64, RiverGauge); 2] = [
    (
        "hydro-cam_le",
        District::CamLe,
        "Trạm thủy văn Cẩm Lệ (sông Cẩm Lệ)",
        16.0128,
        108.2046,
        RiverGauge {
            alarm_m: [1.0, 1.8, 2.5],
            normal_m: 0.45,
            tide_m: 0.35,
            flood_gain: 1.5,
        },
    ),
    (
        "hydro-ai_nghia",
        District::HoaVang,
        "Trạm thủy văn Ái Nghĩa (sông Vu Gia)",
        15.8836,
        108.1176,
        RiverGauge {
            alarm_m: [6.5, 8.0, 9.0],
            normal_m: 3.8,
            tide_m: 0.0,
            flood_gain: 4.5,
        },
    ),
];

/// The water-quality class of a station (QCVN 08:2023/BTNMT, QCVN 10:2023/BTNMT; limits in
/// `ioc_dataflow::kpi::water`), chosen by what its water is used for.
fn water_class(id: &str, medium: Medium) -> Option<WaterClass> {
    match id {
        // The Vu Gia feeds the Cầu Đỏ water plant's intake through the An Trạch weir, and the
        // Túy Loan joins the Cẩm Lệ at the intake: drinking-water sources, level A.
        "wq-vu_gia_thu_bon" | "wq-tuy_loan" => Some(WaterClass::RiverA),
        // The lower Phú Lộc takes the city's untreated drainage: managed for level C.
        "wq-phu_loc_lower" => Some(WaterClass::RiverC),
        // Otherwise by medium: rivers (the lower Hàn, Cu Đê, the Cẩm Lệ below the intake) at
        // level B, lakes at level B, the sea (beaches and Tiên Sa port) in the coastal zone.
        _ => WaterClass::default_for(medium),
    }
}

impl DeviceRole {
    /// Whether the device reports at random times (cameras: a Poisson process whose mean
    /// gap is the interval) rather than on a fixed period.
    pub fn is_event_driven(&self) -> bool {
        matches!(self, DeviceRole::TrafficCamera | DeviceRole::HarbourCamera)
    }
}

/// Metrics each bridge reports, one per message in turn.
pub(crate) const BRIDGE_METRICS: u32 = 5;

/// One simulated device.
#[derive(Debug, Clone, PartialEq)]
pub struct SimDevice {
    /// The device id: ASCII `[A-Za-z0-9_.:-]`, stable across seeds.
    pub id: String,
    /// The kind of readings it sends.
    pub kind: Kind,
    /// The district it stands in.
    pub district: District,
    /// Its Vietnamese name (UTF-8).
    pub name_vi: String,
    /// Latitude, degrees north.
    pub lat: f64,
    /// Longitude, degrees east.
    pub lon: f64,
    /// Seconds between its messages, as the registry declares it (`expected_interval_s`): a
    /// periodic device sends one message per interval (a bridge one metric, so each of its
    /// five every five intervals); a camera's detections come at random with this mean gap,
    /// with a heartbeat after two quiet intervals, so it sends about 1.16 messages per
    /// interval and a healthy camera's 5-minute count rarely falls short of the registry's.
    /// [`Fleet::paced`] stretches it when a real-time rate ceiling asks for fewer messages.
    pub interval_s: u32,
    /// What it simulates.
    pub role: DeviceRole,
}

/// The simulated fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    /// Every device, in a stable order.
    pub devices: Vec<SimDevice>,
}

/// Natural reporting intervals, seconds: what the registry declares and, at any real-time
/// rate ceiling above the fleet's natural rate, what the devices send at.
const JUNCTION_INTERVAL_S: u32 = 30;
const TRAFFIC_CAMERA_MEAN_GAP_S: u32 = 12;
const HARBOUR_CAMERA_MEAN_GAP_S: u32 = 120;
const AIR_INTERVAL_S: u32 = 60;
const WATER_INTERVAL_S: u32 = 300;
/// A bridge sends one metric every 2 s, so each of its five metrics every 10 s.
const BRIDGE_INTERVAL_S: u32 = 2;
/// The longest interval a registry entry may declare (a day); [`Fleet::paced`] stretches no
/// further.
const MAX_STRETCHED_INTERVAL_S: u32 = 86_400;
const RAIN_INTERVAL_S: u32 = 60;
const FLOOD_INTERVAL_S: u32 = 60;

/// Per district: (junctions, traffic cameras, rain gauges, flood gauges). The inner city
/// (Hải Châu, Thanh Khê) carries most of the traffic equipment; hilly Hòa Vang most rain
/// gauges.
const PER_DISTRICT: [(District, u32, u32, u32, u32); 7] = [
    (District::HaiChau, 48, 55, 3, 1),
    (District::ThanhKhe, 34, 40, 3, 1),
    (District::SonTra, 22, 28, 3, 1),
    (District::NguHanhSon, 18, 24, 3, 1),
    (District::LienChieu, 18, 22, 4, 2),
    (District::CamLe, 16, 19, 3, 2),
    (District::HoaVang, 10, 12, 6, 2),
];

/// Where each district lies: (centre lat, centre lon, half-extent lat, half-extent lon).
fn district_box(d: District) -> (f64, f64, f64, f64) {
    match d {
        District::HaiChau => (16.055, 108.212, 0.018, 0.012),
        District::ThanhKhe => (16.064, 108.186, 0.012, 0.012),
        District::SonTra => (16.080, 108.240, 0.020, 0.012),
        District::NguHanhSon => (16.005, 108.250, 0.025, 0.015),
        District::LienChieu => (16.075, 108.145, 0.025, 0.025),
        District::CamLe => (16.015, 108.195, 0.015, 0.020),
        District::HoaVang => (16.020, 108.070, 0.045, 0.050),
    }
}

/// Streets per district, used to name junctions and cameras.
fn streets(d: District) -> &'static [&'static str] {
    match d {
        District::HaiChau => &[
            "Lê Duẩn",
            "Hùng Vương",
            "Trần Phú",
            "Bạch Đằng",
            "Nguyễn Văn Linh",
            "Hoàng Diệu",
            "Phan Châu Trinh",
            "Lê Lợi",
            "Ông Ích Khiêm",
            "Nguyễn Chí Thanh",
            "Hàm Nghi",
            "2 Tháng 9",
            "Núi Thành",
            "Duy Tân",
            "Trưng Nữ Vương",
        ],
        District::ThanhKhe => &[
            "Điện Biên Phủ",
            "Hà Huy Tập",
            "Huỳnh Ngọc Huệ",
            "Lê Độ",
            "Trần Cao Vân",
            "Nguyễn Tất Thành",
            "Hải Phòng",
            "Hàm Nghi",
            "Lê Duẩn",
            "Trường Chinh",
            "Nguyễn Văn Linh",
        ],
        District::SonTra => &[
            "Võ Văn Kiệt",
            "Phạm Văn Đồng",
            "Ngô Quyền",
            "Võ Nguyên Giáp",
            "Trần Hưng Đạo",
            "Lê Văn Duyệt",
            "Hoàng Sa",
            "Nguyễn Công Trứ",
            "Ngô Thì Sĩ",
        ],
        District::NguHanhSon => &[
            "Lê Văn Hiến",
            "Trường Sa",
            "Võ Nguyên Giáp",
            "Ngũ Hành Sơn",
            "Minh Mạng",
            "Lê Quang Đạo",
            "Nguyễn Văn Thoại",
            "Chương Dương",
        ],
        District::LienChieu => &[
            "Nguyễn Lương Bằng",
            "Tôn Đức Thắng",
            "Nguyễn Sinh Sắc",
            "Âu Cơ",
            "Hoàng Văn Thái",
            "Nguyễn Tất Thành",
            "Tạ Quang Bửu",
            "Kinh Dương Vương",
        ],
        District::CamLe => &[
            "Cách Mạng Tháng 8",
            "Ông Ích Đường",
            "Trường Chinh",
            "Tôn Đức Thắng",
            "Phạm Hùng",
            "Lê Trọng Tấn",
            "Nguyễn Hữu Thọ",
            "Trần Nam Trung",
        ],
        District::HoaVang => &[
            "Quốc lộ 1A",
            "Quốc lộ 14B",
            "ĐT602",
            "ĐT605",
            "Trường Sơn",
            "Hòa Khương",
            "Hòa Nhơn",
        ],
    }
}

/// A named environmental station: (id, district, name, role, lat, lon).
struct Station {
    id: &'static str,
    district: District,
    name: &'static str,
    medium: Medium,
    lat: f64,
    lon: f64,
}

const fn st(
    id: &'static str,
    district: District,
    name: &'static str,
    medium: Medium,
    lat: f64,
    lon: f64,
) -> Station {
    Station {
        id,
        district,
        name,
        medium,
        lat,
        lon,
    }
}

/// The 36 existing environmental stations: the named ones from the city's plan first, then
/// other plausible air, lake, river, sea and waste-water stations.
const STATIONS: [Station; 36] = [
    // Air, named in the plan.
    st(
        "aq-forest_office",
        District::SonTra,
        "Hạt Kiểm lâm Sơn Trà – Ngũ Hành Sơn",
        Medium::Air,
        16.1105,
        108.2620,
    ),
    st(
        "aq-ngu_hanh_son",
        District::NguHanhSon,
        "Ngũ Hành Sơn",
        Medium::Air,
        16.0030,
        108.2550,
    ),
    st(
        "aq-son_tra",
        District::SonTra,
        "Sơn Trà",
        Medium::Air,
        16.0800,
        108.2350,
    ),
    st(
        "aq-thanh_khe",
        District::ThanhKhe,
        "Thanh Khê",
        Medium::Air,
        16.0660,
        108.1860,
    ),
    st(
        "aq-hoa_vang",
        District::HoaVang,
        "Hòa Vang",
        Medium::Air,
        16.0240,
        108.0900,
    ),
    st(
        "aq-pham_hung_ql1a",
        District::CamLe,
        "Ngã ba Phạm Hùng – QL1A",
        Medium::Air,
        15.9930,
        108.2010,
    ),
    // Air, further stations.
    st(
        "aq-hai_chau",
        District::HaiChau,
        "Hải Châu – Lê Duẩn",
        Medium::Air,
        16.0710,
        108.2150,
    ),
    st(
        "aq-hai_chau_2_9",
        District::HaiChau,
        "Hải Châu – đường 2 Tháng 9",
        Medium::Air,
        16.0420,
        108.2230,
    ),
    st(
        "aq-lien_chieu",
        District::LienChieu,
        "Liên Chiểu – KCN Hòa Khánh",
        Medium::Air,
        16.0760,
        108.1480,
    ),
    st(
        "aq-cam_le",
        District::CamLe,
        "Cẩm Lệ – Hòa Thọ Đông",
        Medium::Air,
        16.0180,
        108.2020,
    ),
    // Sea water, named in the plan.
    st(
        "wq-non_nuoc",
        District::NguHanhSon,
        "Bãi biển Non Nước",
        Medium::SeaWater,
        16.0020,
        108.2680,
    ),
    st(
        "wq-pham_van_dong",
        District::SonTra,
        "Bãi biển Phạm Văn Đồng",
        Medium::SeaWater,
        16.0710,
        108.2470,
    ),
    st(
        "wq-bai_rang",
        District::SonTra,
        "Bãi Rạng",
        Medium::SeaWater,
        16.1190,
        108.2890,
    ),
    st(
        "wq-tien_sa",
        District::SonTra,
        "Cảng Tiên Sa",
        Medium::SeaWater,
        16.1230,
        108.2160,
    ),
    // Sea water, further stations.
    st(
        "wq-xuan_thieu",
        District::LienChieu,
        "Bãi biển Xuân Thiều",
        Medium::SeaWater,
        16.0860,
        108.1600,
    ),
    st(
        "wq-nam_o",
        District::LienChieu,
        "Bãi biển Nam Ô",
        Medium::SeaWater,
        16.1150,
        108.1320,
    ),
    // River water, named in the plan.
    st(
        "wq-han_lower",
        District::HaiChau,
        "Hạ lưu sông Hàn",
        Medium::RiverWater,
        16.0850,
        108.2250,
    ),
    st(
        "wq-cu_de_lower",
        District::LienChieu,
        "Hạ lưu sông Cu Đê",
        Medium::RiverWater,
        16.1250,
        108.1300,
    ),
    st(
        "wq-phu_loc_lower",
        District::ThanhKhe,
        "Hạ lưu sông Phú Lộc",
        Medium::RiverWater,
        16.0760,
        108.1900,
    ),
    st(
        "wq-vu_gia_thu_bon",
        District::HoaVang,
        "Lưu vực sông Vu Gia – Thu Bồn",
        Medium::RiverWater,
        15.9750,
        108.0600,
    ),
    // River water, further stations.
    st(
        "wq-cam_le_river",
        District::CamLe,
        "Sông Cẩm Lệ – cầu Cẩm Lệ",
        Medium::RiverWater,
        16.0060,
        108.2080,
    ),
    st(
        "wq-tuy_loan",
        District::HoaVang,
        "Sông Túy Loan",
        Medium::RiverWater,
        16.0100,
        108.1300,
    ),
    // Lakes (surface water).
    st(
        "wq-bau_trang",
        District::ThanhKhe,
        "Hồ Bàu Trảng",
        Medium::SurfaceWater,
        16.0620,
        108.1790,
    ),
    st(
        "wq-thac_gian",
        District::ThanhKhe,
        "Hồ Thạc Gián",
        Medium::SurfaceWater,
        16.0600,
        108.2020,
    ),
    st(
        "wq-cong_vien_29_3",
        District::ThanhKhe,
        "Hồ công viên 29/3",
        Medium::SurfaceWater,
        16.0560,
        108.2000,
    ),
    st(
        "wq-dam_rong",
        District::HaiChau,
        "Hồ Đầm Rong",
        Medium::SurfaceWater,
        16.0480,
        108.2060,
    ),
    st(
        "wq-bau_mac",
        District::LienChieu,
        "Hồ Bàu Mạc",
        Medium::SurfaceWater,
        16.0950,
        108.1420,
    ),
    st(
        "wq-hoa_trung",
        District::HoaVang,
        "Hồ Hòa Trung",
        Medium::SurfaceWater,
        16.0900,
        108.0700,
    ),
    // Waste water (treatment plants and industrial parks).
    st(
        "ww-son_tra_wwtp",
        District::SonTra,
        "Trạm XLNT Sơn Trà",
        Medium::WasteWater,
        16.0950,
        108.2430,
    ),
    st(
        "ww-hoa_cuong_wwtp",
        District::HaiChau,
        "Trạm XLNT Hòa Cường",
        Medium::WasteWater,
        16.0300,
        108.2200,
    ),
    st(
        "ww-ngu_hanh_son_wwtp",
        District::NguHanhSon,
        "Trạm XLNT Ngũ Hành Sơn",
        Medium::WasteWater,
        16.0150,
        108.2450,
    ),
    st(
        "ww-phu_loc_wwtp",
        District::ThanhKhe,
        "Trạm XLNT Phú Lộc",
        Medium::WasteWater,
        16.0740,
        108.1830,
    ),
    st(
        "ww-hoa_xuan_wwtp",
        District::CamLe,
        "Trạm XLNT Hòa Xuân",
        Medium::WasteWater,
        16.0000,
        108.2200,
    ),
    st(
        "ww-kcn_hoa_khanh",
        District::LienChieu,
        "KCN Hòa Khánh",
        Medium::WasteWater,
        16.0700,
        108.1400,
    ),
    st(
        "ww-kcn_tho_quang",
        District::SonTra,
        "KCN Dịch vụ Thủy sản Thọ Quang",
        Medium::WasteWater,
        16.1000,
        108.2480,
    ),
    st(
        "ww-kcn_hoa_cam",
        District::CamLe,
        "KCN Hòa Cầm",
        Medium::WasteWater,
        16.0250,
        108.1750,
    ),
];

/// The three monitored bridges: (id, district, name, lat, lon).
const BRIDGES: [(&str, District, &str, f64, f64); 3] = [
    (
        "bridge-thuan_phuoc",
        District::HaiChau,
        "Cầu Thuận Phước",
        16.0925,
        108.2215,
    ),
    (
        "bridge-rong",
        District::SonTra,
        "Cầu Rồng",
        16.0611,
        108.2278,
    ),
    (
        "bridge-tran_thi_ly",
        District::NguHanhSon,
        "Cầu Trần Thị Lý",
        16.0495,
        108.2295,
    ),
];

/// Thọ Quang boat harbour, where its 34 cameras stand.
const HARBOUR: (f64, f64) = (16.0985, 108.2455);
const HARBOUR_CAMERAS: u32 = 34;

/// The adaptive-control pilot junction.
const PILOT_JUNCTION: &str = "Hà Huy Tập – Huỳnh Ngọc Huệ";

impl Fleet {
    /// Da Nang's fleet: 166 junctions, 200 traffic cameras, 34 harbour cameras,
    /// 36 environmental stations, 3 bridges, 25 rain and 10 flood gauges, 2 river stations.
    ///
    /// Ids, names and counts are the same for every seed; the seed jitters positions.
    pub fn da_nang(seed: u64) -> Fleet {
        let mut rng = Rng::new(seed ^ 0xF1EE_7000_0000_0000);
        let mut devices = Vec::with_capacity(500);

        for (district, junctions, cameras, rain, flood) in PER_DISTRICT {
            let slug = district.slug();
            let names = streets(district);
            for i in 1..=junctions {
                let pilot = district == District::ThanhKhe && i == 1;
                let name_vi = if pilot {
                    format!("Nút giao {PILOT_JUNCTION}")
                } else {
                    format!("Nút giao {}", street_pair(names, i))
                };
                let (lat, lon) = place(&mut rng, district);
                devices.push(SimDevice {
                    id: format!("tsc-{slug}-{i:03}"),
                    kind: Kind::TrafficSignal,
                    district,
                    name_vi,
                    lat,
                    lon,
                    interval_s: JUNCTION_INTERVAL_S,
                    role: DeviceRole::Junction {
                        adaptive: pilot,
                        // A stable mix of T-junctions and crossroads.
                        approaches: if i % 4 == 0 { 3 } else { 4 },
                    },
                });
            }
            for i in 1..=cameras {
                let (lat, lon) = place(&mut rng, district);
                devices.push(SimDevice {
                    id: format!("cam-{slug}-{i:03}"),
                    kind: Kind::CameraEvent,
                    district,
                    name_vi: format!("Camera giao thông {}", street_pair(names, i + 7)),
                    lat,
                    lon,
                    interval_s: TRAFFIC_CAMERA_MEAN_GAP_S,
                    role: DeviceRole::TrafficCamera,
                });
            }
            for i in 1..=rain {
                let (lat, lon) = place(&mut rng, district);
                devices.push(SimDevice {
                    id: format!("rain-{slug}-{i:02}"),
                    kind: Kind::Sensor,
                    district,
                    name_vi: format!("Trạm đo mưa {} {i}", district.name_vi()),
                    lat,
                    lon,
                    interval_s: RAIN_INTERVAL_S,
                    role: DeviceRole::RainGauge,
                });
            }
            for i in 1..=flood {
                let (lat, lon) = place(&mut rng, district);
                devices.push(SimDevice {
                    id: format!("flood-{slug}-{i:02}"),
                    kind: Kind::Sensor,
                    district,
                    name_vi: format!("Trạm đo mực nước {} {i}", district.name_vi()),
                    lat,
                    lon,
                    interval_s: FLOOD_INTERVAL_S,
                    role: DeviceRole::FloodGauge,
                });
            }
        }

        for i in 1..=HARBOUR_CAMERAS {
            devices.push(SimDevice {
                id: format!("harbour-cam-{i:02}"),
                kind: Kind::CameraEvent,
                district: District::SonTra,
                name_vi: format!("Camera âu thuyền Thọ Quang {i}"),
                lat: HARBOUR.0 + rng.range(-0.003, 0.003),
                lon: HARBOUR.1 + rng.range(-0.003, 0.003),
                interval_s: HARBOUR_CAMERA_MEAN_GAP_S,
                role: DeviceRole::HarbourCamera,
            });
        }

        for s in &STATIONS {
            let (role, interval_s) = if s.medium == Medium::Air {
                (DeviceRole::AirStation, AIR_INTERVAL_S)
            } else {
                (
                    DeviceRole::WaterStation { medium: s.medium },
                    WATER_INTERVAL_S,
                )
            };
            devices.push(SimDevice {
                id: s.id.to_owned(),
                kind: Kind::Environment,
                district: s.district,
                name_vi: format!("Trạm quan trắc {}", s.name),
                lat: s.lat,
                lon: s.lon,
                interval_s,
                role,
            });
        }

        // The river stations and bridges stand at fixed places.
        let rivers = RIVER_GAUGES.map(|(id, district, name, lat, lon, gauge)| {
            let role = DeviceRole::RiverGauge(gauge);
            (id, district, name, lat, lon, FLOOD_INTERVAL_S, role)
        });
        let bridges = BRIDGES.map(|(id, district, name, lat, lon)| {
            let role = DeviceRole::Bridge {
                name: name.to_owned(),
            };
            (id, district, name, lat, lon, BRIDGE_INTERVAL_S, role)
        });
        for (id, district, name, lat, lon, interval_s, role) in rivers.into_iter().chain(bridges) {
            devices.push(SimDevice {
                id: id.to_owned(),
                kind: Kind::Sensor,
                district,
                name_vi: name.to_owned(),
                lat,
                lon,
                interval_s,
                role,
            });
        }

        Fleet { devices }
    }

    /// Messages per second the fleet sends at its intervals. A camera's messages come at the
    /// least of an exponential gap of mean `m` and the heartbeat's `k m` (`k` = 2 quiet
    /// intervals), whose mean is `m (1 − e^−k)`. About 27.5 for Da Nang's fleet.
    pub fn natural_rate_per_s(&self) -> f64 {
        let k = HEARTBEAT_AFTER_GAPS as f64;
        self.devices
            .iter()
            .map(|d| {
                let rate = 1.0 / f64::from(d.interval_s.max(1));
                if d.role.is_event_driven() {
                    rate / (1.0 - (-k).exp())
                } else {
                    rate
                }
            })
            .sum()
    }

    /// The fleet as a simulator sends it. In real-time mode `rate_per_s` is a ceiling: when
    /// the fleet's natural rate is above it, every interval is stretched by natural rate /
    /// `rate_per_s` and rounded up to whole seconds, so the fleet sends at most `rate_per_s`
    /// and [`Fleet::registry`] of the result declares the intervals actually sent at.
    /// Otherwise (a ceiling at or above the natural rate, or not real time, where the rate
    /// sets how fast simulated time runs instead) the fleet is unchanged.
    pub fn paced(mut self, real_time: bool, rate_per_s: f64) -> Fleet {
        let natural = self.natural_rate_per_s();
        if real_time && rate_per_s > 0.0 && natural > rate_per_s {
            let stretch = natural / rate_per_s;
            for d in &mut self.devices {
                // Less a hair, so that an exact product is not rounded up a whole second.
                let s = (f64::from(d.interval_s) * stretch - 1e-9).ceil();
                d.interval_s = s.clamp(1.0, f64::from(MAX_STRETCHED_INTERVAL_S)) as u32;
            }
        }
        self
    }

    /// The device with this id.
    pub fn device(&self, id: &str) -> Option<&SimDevice> {
        self.devices.iter().find(|d| d.id == id)
    }

    /// Only the devices with these ids, in fleet order, for a scenario of a few devices.
    /// Fails naming the first id that is not in the fleet.
    pub fn subset(&self, ids: &[&str]) -> Result<Fleet, SimulatorError> {
        if let Some(missing) = ids.iter().find(|id| self.device(id).is_none()) {
            return Err(SimulatorError::InvalidConfig(format!(
                "device `{missing}` is not in the fleet"
            )));
        }
        Ok(Fleet {
            devices: self
                .devices
                .iter()
                .filter(|d| ids.contains(&d.id.as_str()))
                .cloned()
                .collect(),
        })
    }

    /// The fleet as registry entries. `registry/da_nang.json` (in this crate) holds these for
    /// [`REGISTRY_SEED`]'s positions; ids, names and intervals are the same for every seed.
    /// For a fleet [`paced`](Fleet::paced) below its natural rate, the entries declare the
    /// stretched intervals.
    pub fn registry(&self) -> Vec<Device> {
        self.devices.iter().map(SimDevice::registry_entry).collect()
    }
}

/// The seed whose positions the checked-in registry holds.
pub const REGISTRY_SEED: u64 = 42;

impl SimDevice {
    /// The department that owns a device of this role.
    pub fn department(&self) -> Department {
        match self.role {
            DeviceRole::Junction { .. } | DeviceRole::TrafficCamera => Department::Transport,
            DeviceRole::HarbourCamera => Department::Police,
            DeviceRole::AirStation | DeviceRole::WaterStation { .. } => Department::Environment,
            DeviceRole::Bridge { .. } => Department::Construction,
            DeviceRole::RainGauge | DeviceRole::FloodGauge | DeviceRole::RiverGauge(_) => {
                Department::DisasterPrevention
            }
        }
    }

    /// Its registry entry.
    pub fn registry_entry(&self) -> Device {
        // Positions to 6 decimals (~0.1 m) keep the file readable.
        let round = |x: f64| (x * 1e6).round() / 1e6;
        Device {
            id: self.id.clone(),
            kind: self.kind,
            name: self.name_vi.clone(),
            district: self.district,
            lat: round(self.lat),
            lon: round(self.lon),
            department: self.department(),
            expected_interval_s: self.interval_s,
            free_flow_kmh: None,
            water_class: match self.role {
                DeviceRole::WaterStation { medium } => water_class(&self.id, medium),
                _ => None,
            },
            flood_alarm_m: match self.role {
                DeviceRole::RiverGauge(g) => Some(g.alarm_m),
                _ => None,
            },
        }
    }
}

/// A stable "A – B" street pair for the `i`-th device of a district.
fn street_pair(names: &[&str], i: u32) -> String {
    let n = names.len();
    let i = i as usize;
    let a = names[i % n];
    // A stride coprime with most list lengths walks through many distinct pairs.
    let b = names[(i * 3 + 1 + i / n) % n];
    let b = if a == b { names[(i + 1) % n] } else { b };
    format!("{a} – {b}")
}

/// A random point in the district's box.
fn place(rng: &mut Rng, d: District) -> (f64, f64) {
    let (lat, lon, dlat, dlon) = district_box(d);
    (lat + rng.range(-dlat, dlat), lon + rng.range(-dlon, dlon))
}

/// A camera that has sent nothing for this many mean gaps sends a heartbeat (as ONVIF and
/// camera platforms keep their link alive), so a healthy camera is never silent for the
/// three intervals that make a device offline.
pub const HEARTBEAT_AFTER_GAPS: u64 = 2;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// The checked-in registry is this fleet; `IOC_BLESS=1` rewrites it after a fleet change.
    #[test]
    fn the_checked_in_registry_is_the_simulated_fleet() {
        let expected = ioc_schemas::fleet_json(&Fleet::da_nang(REGISTRY_SEED).registry());
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/registry/da_nang.json");
        if std::env::var_os("IOC_BLESS").is_some() {
            std::fs::write(path, &expected).unwrap();
        }
        let actual = std::fs::read_to_string(path).unwrap();
        assert!(
            actual == expected,
            "simulator/registry/da_nang.json is stale: run IOC_BLESS=1 cargo test -p ioc-simulator"
        );
        // Ids, names and intervals do not depend on the seed.
        let other: Vec<_> = Fleet::da_nang(7)
            .registry()
            .into_iter()
            .map(|d| (d.id, d.name, d.district, d.expected_interval_s))
            .collect();
        let checked_in: Vec<_> = ioc_schemas::parse_fleet(&actual)
            .unwrap()
            .into_values()
            .map(|d| (d.id, d.name, d.district, d.expected_interval_s))
            .collect();
        let mut other_sorted = other;
        other_sorted.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(checked_in, other_sorted);
    }

    fn count(f: &Fleet, pred: impl Fn(&SimDevice) -> bool) -> usize {
        f.devices.iter().filter(|d| pred(d)).count()
    }

    #[test]
    fn fleet_has_the_plans_counts() {
        let f = Fleet::da_nang(42);
        assert_eq!(
            count(&f, |d| matches!(d.role, DeviceRole::Junction { .. })),
            166
        );
        assert_eq!(count(&f, |d| d.role == DeviceRole::TrafficCamera), 200);
        assert_eq!(count(&f, |d| d.role == DeviceRole::HarbourCamera), 34);
        assert_eq!(
            count(&f, |d| matches!(
                d.role,
                DeviceRole::AirStation | DeviceRole::WaterStation { .. }
            )),
            36
        );
        assert_eq!(
            count(&f, |d| matches!(d.role, DeviceRole::Bridge { .. })),
            3
        );
        assert_eq!(count(&f, |d| d.role == DeviceRole::RainGauge), 25);
        assert_eq!(count(&f, |d| d.role == DeviceRole::FloodGauge), 10);
        let rivers: Vec<_> = f
            .registry()
            .into_iter()
            .filter(|d| matches!(d.flood_alarm_m, Some(levels) if levels[0] > 0.0))
            .map(|d| d.id)
            .collect();
        assert_eq!(rivers, ["hydro-cam_le", "hydro-ai_nghia"]);
        assert_eq!(f.devices.len(), 166 + 200 + 34 + 36 + 3 + 25 + 10 + 2);
        // Harbour cameras are all at Thọ Quang, in Sơn Trà.
        assert!(f
            .devices
            .iter()
            .filter(|d| d.role == DeviceRole::HarbourCamera)
            .all(|d| d.district == District::SonTra));
    }

    #[test]
    fn named_stations_bridges_and_pilot_are_present() {
        let f = Fleet::da_nang(1);
        for (id, fragment, medium) in [
            ("aq-forest_office", "Sơn Trà – Ngũ Hành Sơn", Medium::Air),
            ("aq-ngu_hanh_son", "Ngũ Hành Sơn", Medium::Air),
            ("aq-son_tra", "Sơn Trà", Medium::Air),
            ("aq-thanh_khe", "Thanh Khê", Medium::Air),
            ("aq-hoa_vang", "Hòa Vang", Medium::Air),
            ("aq-pham_hung_ql1a", "Phạm Hùng – QL1A", Medium::Air),
            ("wq-non_nuoc", "Non Nước", Medium::SeaWater),
            ("wq-pham_van_dong", "Phạm Văn Đồng", Medium::SeaWater),
            ("wq-bai_rang", "Bãi Rạng", Medium::SeaWater),
            ("wq-tien_sa", "Tiên Sa", Medium::SeaWater),
            ("wq-han_lower", "sông Hàn", Medium::RiverWater),
            ("wq-cu_de_lower", "Cu Đê", Medium::RiverWater),
            ("wq-phu_loc_lower", "Phú Lộc", Medium::RiverWater),
            ("wq-vu_gia_thu_bon", "Vu Gia – Thu Bồn", Medium::RiverWater),
        ] {
            let d = f.device(id).unwrap_or_else(|| panic!("{id} missing"));
            assert!(d.name_vi.contains(fragment), "{}", d.name_vi);
            assert_eq!(d.kind, Kind::Environment);
            let got = match &d.role {
                DeviceRole::AirStation => Medium::Air,
                DeviceRole::WaterStation { medium } => *medium,
                other => panic!("{id} is {other:?}"),
            };
            assert_eq!(got, medium, "{id}");
        }
        for (id, name) in [
            ("bridge-thuan_phuoc", "Thuận Phước"),
            ("bridge-rong", "Rồng"),
            ("bridge-tran_thi_ly", "Trần Thị Lý"),
        ] {
            let d = f.device(id).unwrap_or_else(|| panic!("{id} missing"));
            assert!(matches!(&d.role, DeviceRole::Bridge { name: n } if n.contains(name)));
            assert_eq!(d.kind, Kind::Sensor);
        }
        let adaptive: Vec<_> = f
            .devices
            .iter()
            .filter(|d| matches!(d.role, DeviceRole::Junction { adaptive: true, .. }))
            .collect();
        assert_eq!(adaptive.len(), 1);
        assert_eq!(adaptive[0].district, District::ThanhKhe);
        assert!(adaptive[0].name_vi.contains("Hà Huy Tập – Huỳnh Ngọc Huệ"));
    }

    #[test]
    fn ids_are_unique_topic_safe_and_seed_independent() {
        let a = Fleet::da_nang(42);
        let b = Fleet::da_nang(7);
        let ids: HashSet<&str> = a.devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids.len(), a.devices.len());
        for d in &a.devices {
            assert!(
                !d.id.is_empty()
                    && d.id.len() <= 64
                    && d.id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')),
                "{}",
                d.id
            );
            let topic = ioc_schemas::reading_topic(d.kind, d.district, &d.id);
            let parts = ioc_schemas::parse_topic(&topic).unwrap();
            assert_eq!(parts.device_id, d.id);
            assert!(!d.name_vi.is_empty());
        }
        for id in [
            "tsc-hai_chau-001",
            "cam-thanh_khe-017",
            "harbour-cam-05",
            "aq-son_tra",
        ] {
            assert!(ids.contains(id), "{id}");
        }
        for id in ["bridge-rong", "rain-lien_chieu-03", "flood-cam_le-02"] {
            assert!(ids.contains(id), "{id}");
        }
        let ids_b: Vec<&str> = b.devices.iter().map(|d| d.id.as_str()).collect();
        let ids_a: Vec<&str> = a.devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids_a, ids_b);
        assert_eq!(Fleet::da_nang(42), a, "same seed, same fleet");
        assert_ne!(a, b, "the seed moves devices");
        let few = a.subset(&["aq-son_tra", "tsc-hai_chau-001"]).unwrap();
        let few_ids: Vec<&str> = few.devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(few_ids, ["tsc-hai_chau-001", "aq-son_tra"], "fleet order");
        let e = a.subset(&["aq-son_tra", "aq-nowhere"]).unwrap_err();
        assert!(e.to_string().contains("aq-nowhere"), "{e}");
    }

    #[test]
    fn every_district_has_devices_and_positions_are_in_da_nang() {
        for seed in [0, 42, u64::MAX] {
            let f = Fleet::da_nang(seed);
            for district in District::ALL {
                assert!(
                    count(&f, |d| d.district == district
                        && matches!(d.role, DeviceRole::Junction { .. }))
                        > 0,
                    "{district} has no junction"
                );
                assert!(count(&f, |d| d.district == district) >= 20, "{district}");
            }
            // Ái Nghĩa stands upstream in Đại Lộc (in the city since 2025, outside its old
            // districts).
            for d in f.devices.iter().filter(|d| d.id != "hydro-ai_nghia") {
                assert!((15.95..=16.15).contains(&d.lat), "{} lat {}", d.id, d.lat);
                let lon_range = if d.district == District::HoaVang {
                    108.0..=108.15
                } else {
                    108.10..=108.30
                };
                assert!(lon_range.contains(&d.lon), "{} lon {}", d.id, d.lon);
            }
        }
        // Hải Châu and Thanh Khê carry the most junctions.
        let f = Fleet::da_nang(42);
        let junctions = |dist: District| {
            count(&f, |d| {
                d.district == dist && matches!(d.role, DeviceRole::Junction { .. })
            })
        };
        for other in [
            District::SonTra,
            District::NguHanhSon,
            District::LienChieu,
            District::CamLe,
            District::HoaVang,
        ] {
            assert!(junctions(District::HaiChau) > junctions(other));
            assert!(junctions(District::ThanhKhe) > junctions(other));
        }
    }
}
