//! The spool's record: a [`SpoolRow`] as stored, `[format][appended_at_ms: u64 LE][bincode]`,
//! and how records of every earlier format read back.

use ioc_schemas::{Ack, Kpi};
use serde::{Deserialize, Serialize};

use crate::alerts::{AlertEventRow, WebhookAttemptRow};
use crate::error::StoreError;
use crate::kpi::{
    AqiKpiRow, BridgeKpiRow, CameraKpiRow, HealthKpiRow, HydrologyKpiRow, TrafficKpiRow,
    WaterKpiRow,
};
use crate::rows::{DeadLetterRow, LateReadingRow, ReadingRow, WindowRow};
use crate::writer::Writers;

/// The record format; bumped when [`SpoolRow`] changes shape.
const FORMAT: u8 = 6;
/// Trailing `Option` fields added to a row since format 1, as `(the first format with them,
/// the row's variant tag in bincode, how many)`: an older record of that row reads back with
/// them absent (bincode writes `None` as one 0 byte).
const ADDED_FIELDS: [(u8, u32, usize); 6] = [
    (2, 6, 1), // AqiKpi: o3_8h
    (3, 4, 2), // TrafficKpi: free_flow_kmh, worst_level
    (4, 8, 1), // HydrologyKpi: rain_12h_mm
    (5, 8, 1), // HydrologyKpi: alarm_level
    (6, 4, 1), // TrafficKpi: covered_ms
    (6, 5, 1), // CameraKpi: covered_ms
];
const HEADER: usize = 9;
/// A row bound for ClickHouse, as spooled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SpoolRow {
    /// `readings`.
    Reading(ReadingRow),
    /// `late_readings`.
    LateReading(LateReadingRow),
    /// `dead_letters`.
    DeadLetter(DeadLetterRow),
    /// `window_results`.
    Window(WindowRow),
    /// `kpi_traffic`.
    TrafficKpi(TrafficKpiRow),
    /// `kpi_camera`.
    CameraKpi(CameraKpiRow),
    /// `kpi_aqi`.
    AqiKpi(AqiKpiRow),
    /// `kpi_water`.
    WaterKpi(WaterKpiRow),
    /// `kpi_hydrology`.
    HydrologyKpi(HydrologyKpiRow),
    /// `kpi_bridge`.
    BridgeKpi(BridgeKpiRow),
    /// `kpi_health`.
    HealthKpi(HealthKpiRow),
    /// `alert_events`.
    AlertEvent(AlertEventRow),
    /// `webhook_attempts`.
    WebhookAttempt(WebhookAttemptRow),
}

impl From<&Kpi> for SpoolRow {
    fn from(kpi: &Kpi) -> SpoolRow {
        match kpi {
            Kpi::Traffic(k) => SpoolRow::TrafficKpi(k.into()),
            Kpi::Camera(k) => SpoolRow::CameraKpi(k.into()),
            Kpi::Air(k) => SpoolRow::AqiKpi(k.into()),
            Kpi::Water(k) => SpoolRow::WaterKpi(k.into()),
            Kpi::Hydrology(k) => SpoolRow::HydrologyKpi(k.into()),
            Kpi::Bridge(k) => SpoolRow::BridgeKpi(k.into()),
            Kpi::Health(k) => SpoolRow::HealthKpi(k.into()),
        }
    }
}

impl SpoolRow {
    #[cfg(test)]
    pub(super) fn encode(&self, appended_at_ms: u64) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(256);
        self.encode_into(appended_at_ms, &mut bytes);
        bytes
    }

    /// Appends the record to `out`.
    pub(super) fn encode_into(&self, appended_at_ms: u64, out: &mut Vec<u8>) {
        out.push(FORMAT);
        out.extend_from_slice(&appended_at_ms.to_le_bytes());
        // Serializing plain structs into a Vec cannot fail.
        let _ = bincode::serialize_into(out, self);
    }

    /// When a record was appended, without decoding the row (`None`: not a record).
    pub(super) fn appended_at(bytes: &[u8]) -> Option<u64> {
        let format = *bytes.first()?;
        let at = bytes.get(1..HEADER)?.try_into().ok()?;
        (1..=FORMAT)
            .contains(&format)
            .then(|| u64::from_le_bytes(at))
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<(u64, SpoolRow), String> {
        let format = bytes.first().copied().unwrap_or(0);
        if bytes.len() < HEADER || !(1..=FORMAT).contains(&format) {
            return Err(format!("record format {format} is not 1 to {FORMAT}"));
        }
        let mut at = [0u8; 8];
        at.copy_from_slice(&bytes[1..HEADER]);
        let body = &bytes[HEADER..];
        let absent: usize = ADDED_FIELDS
            .iter()
            .filter(|(since, tag, _)| format < *since && body.starts_with(&tag.to_le_bytes()))
            .map(|(_, _, n)| n)
            .sum();
        let row = if absent > 0 {
            let mut body = body.to_vec();
            body.resize(body.len() + absent, 0);
            bincode::deserialize(&body)
        } else {
            bincode::deserialize(body)
        }
        .map_err(|e| e.to_string())?;
        Ok((u64::from_le_bytes(at), row))
    }

    /// Queues the row for its table's writer; `ack` is called once it is inserted.
    pub(super) async fn send(self, writers: &Writers, ack: Ack) -> Result<(), StoreError> {
        let ack = Some(ack);
        let k = &writers.kpis;
        match self {
            SpoolRow::Reading(r) => writers.readings.send(r, ack).await,
            SpoolRow::LateReading(r) => writers.late_readings.send(r, ack).await,
            SpoolRow::DeadLetter(r) => writers.dead_letters.send(r, ack).await,
            SpoolRow::Window(r) => writers.windows.send(r, ack).await,
            SpoolRow::TrafficKpi(r) => k.traffic.send(r, ack).await,
            SpoolRow::CameraKpi(r) => k.camera.send(r, ack).await,
            SpoolRow::AqiKpi(r) => k.aqi.send(r, ack).await,
            SpoolRow::WaterKpi(r) => k.water.send(r, ack).await,
            SpoolRow::HydrologyKpi(r) => k.hydrology.send(r, ack).await,
            SpoolRow::BridgeKpi(r) => k.bridge.send(r, ack).await,
            SpoolRow::HealthKpi(r) => k.health.send(r, ack).await,
            SpoolRow::AlertEvent(r) => writers.alert_events.send(r, ack).await,
            SpoolRow::WebhookAttempt(r) => writers.webhook_attempts.send(r, ack).await,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn dead_letter(i: u64) -> SpoolRow {
        SpoolRow::DeadLetter(DeadLetterRow {
            received_at: 1,
            received_at_ms: 1_000 + i,
            transport: 1,
            source: format!("t/{i}"),
            code: 1,
            reason: "bad".into(),
            payload: vec![0xff, 0, b'{'],
            payload_bytes: 3,
        })
    }

    #[test]
    fn a_row_reads_back_as_written() {
        let row = dead_letter(7);
        let (at, back) = SpoolRow::decode(&row.encode(42)).unwrap();
        assert_eq!((at, back), (42, row));
        assert!(SpoolRow::decode(&[2, 0, 0]).is_err());
        let mut other = dead_letter(7).encode(1);
        other[0] = FORMAT + 1;
        assert!(SpoolRow::decode(&other).unwrap_err().contains("format"));
    }

    #[test]
    fn records_of_format_1_read_back() {
        let aqi = SpoolRow::AqiKpi(AqiKpiRow {
            station_id: "aq-1".into(),
            district: 1,
            period: 2,
            window_start: 1,
            window_start_ms: 1_000,
            window_end: 86_401,
            window_size_ms: 86_400_000,
            pm25: Some(30.0),
            pm10: None,
            o3: Some(150.0),
            no2: None,
            so2: None,
            co: None,
            aqi_pm25: Some(60),
            aqi_pm10: None,
            aqi_o3: Some(47),
            aqi_no2: None,
            aqi_so2: None,
            aqi_co: None,
            aqi: Some(60),
            dominant: Some("pm25".into()),
            band: Some(1),
            colour: Some("#ffff00".into()),
            coverage: 288,
            o3_8h: None,
        });
        // Format 1 wrote the same bytes without the trailing `o3_8h` (a `None`: one 0 byte).
        let mut old = aqi.encode(5);
        assert_eq!(old.pop(), Some(0));
        old[0] = 1;
        assert_eq!(SpoolRow::decode(&old).unwrap(), (5, aqi.clone()));
        let mut old = dead_letter(3).encode(6);
        old[0] = 1;
        assert_eq!(SpoolRow::decode(&old).unwrap(), (6, dead_letter(3)));
        // Formats 1 and 2 wrote traffic rows without `free_flow_kmh`, `worst_level` and
        // `covered_ms`, formats 3 to 5 without `covered_ms`.
        let traffic = SpoolRow::TrafficKpi(TrafficKpiRow {
            scope: 1,
            entity_id: "tl-1".into(),
            district: 1,
            window_start: 1,
            window_start_ms: 1_000,
            window_end: 301,
            window_size_ms: 300_000,
            junctions: 1,
            volume_veh_h: 900.0,
            occupancy_pct: 30.0,
            mean_speed_kmh: 25.0,
            queue_m: 40.0,
            level: 3,
            availability_pct: 100.0,
            free_flow_kmh: None,
            worst_level: None,
            covered_ms: None,
        });
        for (format, missing) in [(1, 3), (2, 3), (3, 1), (5, 1)] {
            let mut old = traffic.encode(7);
            old.truncate(old.len() - missing);
            old[0] = format;
            assert_eq!(SpoolRow::decode(&old).unwrap(), (7, traffic.clone()));
        }
        // Formats 1 to 5 wrote camera rows without `covered_ms`.
        let camera = SpoolRow::CameraKpi(CameraKpiRow {
            district: 1,
            event_type: "plate_read".into(),
            window_start: 1,
            window_start_ms: 1_000,
            window_end: 301,
            window_size_ms: 300_000,
            events: 40,
            cameras: 2,
            per_hour: 480.0,
            violations_per_100_vehicles: None,
            covered_ms: None,
        });
        let mut old = camera.encode(9);
        assert_eq!(old.pop(), Some(0));
        old[0] = 5;
        assert_eq!(SpoolRow::decode(&old).unwrap(), (9, camera.clone()));
        // Formats 1 to 3 wrote hydrology rows without `rain_12h_mm` and `alarm_level`, format
        // 4 without `alarm_level`.
        let hydrology = SpoolRow::HydrologyKpi(HydrologyKpiRow {
            gauge_id: "rain-1".into(),
            district: 1,
            window_start: 1,
            window_start_ms: 1_000,
            window_end: 301,
            window_size_ms: 300_000,
            rain_mm: Some(2.0),
            rain_1h_mm: Some(20.0),
            rain_3h_mm: Some(40.0),
            rain_24h_mm: Some(90.0),
            water_level_m: None,
            rise_rate_m_per_h: None,
            coverage: 288,
            rain_12h_mm: None,
            alarm_level: None,
        });
        for (format, missing) in [(3, 2), (4, 1)] {
            let mut old = hydrology.encode(8);
            old.truncate(old.len() - missing);
            old[0] = format;
            assert_eq!(SpoolRow::decode(&old).unwrap(), (8, hydrology.clone()));
        }
        // The tags are the variants' places in `SpoolRow`.
        let tag = |row: &SpoolRow| {
            u32::from_le_bytes(row.encode(0)[HEADER..HEADER + 4].try_into().unwrap())
        };
        let rows = [&aqi, &traffic, &hydrology, &hydrology, &traffic, &camera];
        for ((_, expected, _), row) in ADDED_FIELDS.iter().zip(rows) {
            assert_eq!(tag(row), *expected, "{row:?}");
        }
    }
}
