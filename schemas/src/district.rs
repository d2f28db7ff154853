//! Da Nang's seven districts: ASCII slugs as ids, Vietnamese names for display.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A district of Da Nang. Serialised as its ASCII slug (`hai_chau`, ...).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum District {
    /// Hải Châu (urban).
    HaiChau,
    /// Thanh Khê (urban).
    ThanhKhe,
    /// Sơn Trà (urban).
    SonTra,
    /// Ngũ Hành Sơn (urban).
    NguHanhSon,
    /// Liên Chiểu (urban).
    LienChieu,
    /// Cẩm Lệ (urban).
    CamLe,
    /// Hòa Vang (rural).
    HoaVang,
}

impl District {
    /// Every district, in a stable order.
    pub const ALL: [District; 7] = [
        District::HaiChau,
        District::ThanhKhe,
        District::SonTra,
        District::NguHanhSon,
        District::LienChieu,
        District::CamLe,
        District::HoaVang,
    ];

    /// The ASCII id used in topics, ids and storage.
    pub fn slug(self) -> &'static str {
        match self {
            District::HaiChau => "hai_chau",
            District::ThanhKhe => "thanh_khe",
            District::SonTra => "son_tra",
            District::NguHanhSon => "ngu_hanh_son",
            District::LienChieu => "lien_chieu",
            District::CamLe => "cam_le",
            District::HoaVang => "hoa_vang",
        }
    }

    /// The Vietnamese name, for display.
    pub fn name_vi(self) -> &'static str {
        match self {
            District::HaiChau => "Hải Châu",
            District::ThanhKhe => "Thanh Khê",
            District::SonTra => "Sơn Trà",
            District::NguHanhSon => "Ngũ Hành Sơn",
            District::LienChieu => "Liên Chiểu",
            District::CamLe => "Cẩm Lệ",
            District::HoaVang => "Hòa Vang",
        }
    }

    /// Parses a slug; `None` for anything else.
    pub fn from_slug(slug: &str) -> Option<District> {
        District::ALL.into_iter().find(|d| d.slug() == slug)
    }
}

impl std::fmt::Display for District {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.slug())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_round_trip_and_match_serde() {
        for d in District::ALL {
            assert_eq!(District::from_slug(d.slug()), Some(d));
            assert_eq!(
                serde_json::to_string(&d).unwrap(),
                format!("\"{}\"", d.slug())
            );
        }
        assert_eq!(District::from_slug("da_nang"), None);
    }
}
