//! The device registry in ClickHouse (`devices`, migration 3): every change is a row, the
//! newest per id wins, so the registry survives restarts and analysts can join KPI rows to
//! device names and departments.
//!
//! The start-up precedence (the checked-in file, then the stored changes) is described on
//! [`StoredRegistry`].

use std::collections::{BTreeMap, BTreeSet};

use ioc_schemas::{Department, Device, DeviceChange, District, Kind, WaterClass};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::kpi::department_code;
use crate::rows::{district_code, kind_code, seconds, StoreRow};
use crate::Store;

/// One registry change as stored in `devices`: every [`Device`] field, when it was made and
/// whether it is a removal. `ReplacingMergeTree(updated_ms)` ordered by `id`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct DeviceRow {
    /// The device id.
    pub id: String,
    /// `Enum8` kind.
    pub kind: i8,
    /// Vietnamese name.
    pub name: String,
    /// `Enum8` district.
    pub district: i8,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// `Enum8` department, position in `Department::ALL`.
    pub department: i8,
    /// Expected reporting interval, s.
    pub expected_interval_s: u32,
    /// Free-flow speed of a junction, km/h.
    pub free_flow_kmh: Option<f64>,
    /// A water station's class slug (migration 9).
    pub water_class: Option<String>,
    /// A river gauge's flood alarm levels I, II and III, m; empty for none (migration 9).
    pub flood_alarm_m: Vec<f64>,
    /// When the change was made, whole seconds.
    pub updated: u32,
    /// When the change was made, epoch ms: the replacing version (the newest change wins).
    pub updated_ms: u64,
    /// 1 for a removal (a tombstone).
    pub deleted: u8,
}

impl DeviceRow {
    /// The row of an added or replaced device.
    pub fn upsert(d: &Device, at_ms: u64) -> DeviceRow {
        DeviceRow {
            id: d.id.clone(),
            kind: kind_code(d.kind),
            name: d.name.clone(),
            district: district_code(d.district),
            lat: d.lat,
            lon: d.lon,
            department: department_code(d.department),
            expected_interval_s: d.expected_interval_s,
            free_flow_kmh: d.free_flow_kmh,
            water_class: d.water_class.map(|c| c.slug().to_owned()),
            flood_alarm_m: d.flood_alarm_m.map(Vec::from).unwrap_or_default(),
            updated: seconds(at_ms),
            updated_ms: at_ms,
            deleted: 0,
        }
    }

    /// The tombstone of `id`: the last known fields when there are some (so joins still find
    /// the name and department of a removed device), otherwise an empty name and the first
    /// value of each enum.
    pub fn tombstone(id: &str, last: Option<DeviceRow>, at_ms: u64) -> DeviceRow {
        let base = last.unwrap_or_else(|| DeviceRow {
            id: id.to_owned(),
            kind: 1,
            name: String::new(),
            district: 1,
            lat: 0.0,
            lon: 0.0,
            department: 1,
            expected_interval_s: 0,
            free_flow_kmh: None,
            water_class: None,
            flood_alarm_m: Vec::new(),
            updated: 0,
            updated_ms: 0,
            deleted: 1,
        });
        DeviceRow {
            id: id.to_owned(),
            updated: seconds(at_ms),
            updated_ms: at_ms,
            deleted: 1,
            ..base
        }
    }

    /// The device a live row describes.
    pub fn to_device(&self) -> Result<Device, StoreError> {
        Ok(Device {
            id: self.id.clone(),
            kind: decode(&Kind::ALL, self.kind, "kind", &self.id)?,
            name: self.name.clone(),
            district: decode(&District::ALL, self.district, "district", &self.id)?,
            lat: self.lat,
            lon: self.lon,
            department: decode(&Department::ALL, self.department, "department", &self.id)?,
            expected_interval_s: self.expected_interval_s,
            free_flow_kmh: self.free_flow_kmh,
            water_class: match &self.water_class {
                None => None,
                Some(slug) => {
                    Some(
                        WaterClass::from_slug(slug).ok_or_else(|| StoreError::Decode {
                            table: DeviceRow::TABLE,
                            reason: format!("device `{}`: unknown water_class `{slug}`", self.id),
                        })?,
                    )
                }
            },
            flood_alarm_m: match self.flood_alarm_m[..] {
                [] => None,
                [one, two, three] => Some([one, two, three]),
                _ => {
                    return Err(StoreError::Decode {
                        table: DeviceRow::TABLE,
                        reason: format!(
                            "device `{}`: flood_alarm_m holds {} levels, not 3",
                            self.id,
                            self.flood_alarm_m.len()
                        ),
                    })
                }
            },
        })
    }
}

impl StoreRow for DeviceRow {
    const TABLE: &'static str = "devices";
}

fn decode<T: Copy>(all: &[T], code: i8, column: &str, id: &str) -> Result<T, StoreError> {
    usize::try_from(code)
        .ok()
        .and_then(|c| c.checked_sub(1))
        .and_then(|i| all.get(i).copied())
        .ok_or_else(|| StoreError::Decode {
            table: DeviceRow::TABLE,
            reason: format!("device `{id}`: {column} code {code} is unknown"),
        })
}

/// The registry as stored: the newest change per device id.
///
/// # Start-up precedence
///
/// The registry at start-up is the checked-in fleet file with the stored changes on top
/// ([`overlay`](Self::overlay)):
///
/// 1. start from the file's devices;
/// 2. a stored live device replaces the file's entry with its id (or adds it);
/// 3. a stored tombstone removes the id, even if the file lists it.
///
/// So a change made at run time outlives both a restart and a later edit of the file for that
/// id; to bring back a removed device, upsert it again (a newer row than the tombstone).
/// Edits of the file for ids never changed at run time take effect on restart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredRegistry {
    /// Devices whose newest change is an upsert, by id.
    pub devices: BTreeMap<String, Device>,
    /// Ids whose newest change is a removal.
    pub removed: BTreeSet<String>,
}

impl StoredRegistry {
    /// Whether nothing was ever stored.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty() && self.removed.is_empty()
    }

    /// The start-up registry: `file` (the checked-in fleet) with the stored changes on top. A
    /// stored device replaces the file's entry with its id; a tombstone removes the id.
    pub fn overlay(&self, mut file: BTreeMap<String, Device>) -> BTreeMap<String, Device> {
        for id in &self.removed {
            file.remove(id);
        }
        for (id, device) in &self.devices {
            file.insert(id.clone(), device.clone());
        }
        file
    }
}

impl Store {
    /// Records a registry change made at `at_ms` (epoch ms; the newest change per id wins, a
    /// change with an equal time replaces one inserted earlier). An upsert stores the device;
    /// a removal stores a tombstone carrying the last stored fields of the device (read first)
    /// or empty ones. One insert per call, not batched: registry changes are rare.
    pub async fn save_device_change(
        &self,
        change: &DeviceChange,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        let row = match change {
            DeviceChange::Upsert(device) => DeviceRow::upsert(device, at_ms),
            DeviceChange::Remove { id } => {
                let last: Option<DeviceRow> = self
                    .client()
                    .query("SELECT ?fields FROM devices FINAL WHERE id = ? LIMIT 1")
                    .bind(id.as_str())
                    .fetch_optional()
                    .await
                    .map_err(|e| StoreError::clickhouse("reading a device to remove", e))?;
                DeviceRow::tombstone(id, last, at_ms)
            }
        };
        self.insert_device_rows(&[row], "saving a device change")
            .await
    }

    /// Records the devices the registry starts with that the table does not hold as they
    /// are (the first start, or a changed fleet file), in one insert, so analysts can join
    /// KPI rows to every device.
    pub async fn save_devices(&self, devices: &[Device], at_ms: u64) -> Result<(), StoreError> {
        let rows: Vec<DeviceRow> = devices
            .iter()
            .map(|d| DeviceRow::upsert(d, at_ms))
            .collect();
        self.insert_device_rows(&rows, "saving the registry").await
    }

    async fn insert_device_rows(
        &self,
        rows: &[DeviceRow],
        context: &'static str,
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let timeout = Some(self.config().insert_timeout());
        let mut insert = self
            .client()
            .insert::<DeviceRow>(DeviceRow::TABLE)
            .await
            .map_err(|e| StoreError::clickhouse(context, e))?
            .with_timeouts(timeout, timeout);
        for row in rows {
            insert
                .write(row)
                .await
                .map_err(|e| StoreError::clickhouse(context, e))?;
        }
        insert
            .end()
            .await
            .map_err(|e| StoreError::clickhouse(context, e))
    }

    /// The newest stored change of every device id (read with `FINAL`, so correct before
    /// ClickHouse merges the parts): live devices and removed ids.
    pub async fn load_devices(&self) -> Result<StoredRegistry, StoreError> {
        let rows: Vec<DeviceRow> = self
            .client()
            .query("SELECT ?fields FROM devices FINAL ORDER BY id")
            .fetch_all()
            .await
            .map_err(|e| StoreError::clickhouse("loading the devices", e))?;
        let mut stored = StoredRegistry::default();
        for row in rows {
            if row.deleted == 0 {
                stored.devices.insert(row.id.clone(), row.to_device()?);
            } else {
                stored.removed.insert(row.id);
            }
        }
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, name: &str) -> Device {
        Device {
            id: id.into(),
            kind: Kind::Environment,
            name: name.into(),
            district: District::SonTra,
            lat: 16.07,
            lon: 108.24,
            department: Department::Environment,
            expected_interval_s: 300,
            free_flow_kmh: None,
            water_class: None,
            flood_alarm_m: None,
        }
    }

    #[test]
    fn rows_round_trip_devices() {
        let d = Device {
            kind: Kind::TrafficSignal,
            department: Department::Transport,
            district: District::HoaVang,
            free_flow_kmh: Some(60.0),
            ..device("tl-hoa_vang-9", "Nút giao Hòa Khương")
        };
        let row = DeviceRow::upsert(&d, 1_795_827_600_123);
        assert_eq!((row.kind, row.district, row.department), (2, 7, 1));
        assert_eq!((row.updated, row.deleted), (1_795_827_600, 0));
        assert_eq!(row.to_device().unwrap(), d);
        let bad = DeviceRow { kind: 9, ..row };
        let e = bad.to_device().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unreadable row in devices: device `tl-hoa_vang-9`: kind code 9 is unknown"
        );
        assert!(!e.is_retryable());
        // A water station's class and a river gauge's alarm levels come back too.
        let station = Device {
            water_class: Some(WaterClass::RiverA),
            ..device("wq-tuy_loan", "Trạm quan trắc Sông Túy Loan")
        };
        let row = DeviceRow::upsert(&station, 1);
        assert_eq!(row.water_class.as_deref(), Some("river_a"));
        assert_eq!(row.to_device().unwrap(), station);
        let gauge = Device {
            flood_alarm_m: Some([1.0, 1.8, 2.5]),
            ..device("hydro-cam_le", "Trạm thủy văn Cẩm Lệ")
        };
        let row = DeviceRow::upsert(&gauge, 1);
        assert_eq!(row.to_device().unwrap(), gauge);
        let two_levels = DeviceRow {
            flood_alarm_m: vec![1.0, 2.5],
            ..row
        };
        assert!(two_levels.to_device().is_err());
    }

    #[test]
    fn tombstones_keep_the_last_fields() {
        let d = device("aq-son_tra-1", "Trạm quan trắc Sơn Trà");
        let t = DeviceRow::tombstone(&d.id, Some(DeviceRow::upsert(&d, 5)), 9);
        assert_eq!((t.deleted, t.updated_ms), (1, 9));
        assert_eq!(t.name, d.name);
        let t = DeviceRow::tombstone("ghost", None, 9);
        assert_eq!(
            (t.id.as_str(), t.name.as_str(), t.deleted),
            ("ghost", "", 1)
        );
    }

    #[test]
    fn stored_changes_override_the_file() {
        let file: BTreeMap<String, Device> = [device("a", "A"), device("b", "B"), device("c", "C")]
            .into_iter()
            .map(|d| (d.id.clone(), d))
            .collect();
        let stored = StoredRegistry {
            devices: [device("b", "B mới"), device("d", "D")]
                .into_iter()
                .map(|d| (d.id.clone(), d))
                .collect(),
            removed: ["c".to_owned(), "zz".to_owned()].into(),
        };
        let merged = stored.overlay(file.clone());
        let names: Vec<(&str, &str)> = merged
            .values()
            .map(|d| (d.id.as_str(), d.name.as_str()))
            .collect();
        assert_eq!(names, [("a", "A"), ("b", "B mới"), ("d", "D")]);
        assert_eq!(StoredRegistry::default().overlay(file.clone()), file);
        assert!(StoredRegistry::default().is_empty());
    }
}
