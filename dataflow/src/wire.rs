//! KPI rows as timely exchanges them between processes (bincode). `Kpi` is internally tagged
//! for its JSON form (`"family": ...`), which bincode cannot read back, so between workers it
//! travels externally tagged: `#[serde(with = "crate::wire::kpi")]`.

/// Serde functions for a [`ioc_schemas::Kpi`] field.
pub(crate) mod kpi {
    use ioc_schemas::{
        AqiKpi, BridgeKpi, CameraKpi, HealthKpi, HydrologyKpi, Kpi, TrafficKpi, WaterKpi,
    };
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize)]
    enum Borrowed<'a> {
        Traffic(&'a TrafficKpi),
        Camera(&'a CameraKpi),
        Air(&'a AqiKpi),
        Water(&'a WaterKpi),
        Hydrology(&'a HydrologyKpi),
        Bridge(&'a BridgeKpi),
        Health(&'a HealthKpi),
    }

    #[derive(Deserialize)]
    enum Owned {
        Traffic(TrafficKpi),
        Camera(CameraKpi),
        Air(AqiKpi),
        Water(WaterKpi),
        Hydrology(HydrologyKpi),
        Bridge(BridgeKpi),
        Health(HealthKpi),
    }

    pub(crate) fn serialize<S: Serializer>(kpi: &Kpi, s: S) -> Result<S::Ok, S::Error> {
        match kpi {
            Kpi::Traffic(k) => Borrowed::Traffic(k),
            Kpi::Camera(k) => Borrowed::Camera(k),
            Kpi::Air(k) => Borrowed::Air(k),
            Kpi::Water(k) => Borrowed::Water(k),
            Kpi::Hydrology(k) => Borrowed::Hydrology(k),
            Kpi::Bridge(k) => Borrowed::Bridge(k),
            Kpi::Health(k) => Borrowed::Health(k),
        }
        .serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Kpi, D::Error> {
        Ok(match Owned::deserialize(d)? {
            Owned::Traffic(k) => Kpi::Traffic(k),
            Owned::Camera(k) => Kpi::Camera(k),
            Owned::Air(k) => Kpi::Air(k),
            Owned::Water(k) => Kpi::Water(k),
            Owned::Hydrology(k) => Kpi::Hydrology(k),
            Owned::Bridge(k) => Kpi::Bridge(k),
            Owned::Health(k) => Kpi::Health(k),
        })
    }
}

/// A KPI row crossing workers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ExchangedKpi(#[serde(with = "kpi")] pub ioc_schemas::Kpi);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One row of every family (an exhaustive match below fails to compile when a family is
    /// added, so it gets a row here too).
    pub(crate) fn one_of_each() -> Vec<ioc_schemas::Kpi> {
        use ioc_schemas::*;
        let (d, start, size) = (District::SonTra, 300_000, 300_000);
        let rows = vec![
            Kpi::Traffic(TrafficKpi {
                scope: Scope::District,
                entity_id: "son_tra".into(),
                district: d,
                window_start_ms: start,
                window_size_ms: size,
                junctions: 12,
                volume_veh_h: 840.0,
                occupancy_pct: 31.5,
                mean_speed_kmh: 22.0,
                queue_m: 65.0,
                level: Congestion::D,
                availability_pct: 99.0,
                free_flow_kmh: None,
                worst_level: None,
                covered_ms: Some(220_000),
            }),
            Kpi::Camera(CameraKpi {
                district: d,
                event_type: "red_light_violation".into(),
                window_start_ms: start,
                window_size_ms: size,
                events: 4,
                cameras: 2,
                per_hour: 48.0,
                violations_per_100_vehicles: Some(0.4),
                covered_ms: None,
            }),
            Kpi::Air(AqiKpi {
                station_id: "aq-1".into(),
                district: d,
                period: AqiPeriod::Hour,
                window_start_ms: start,
                window_size_ms: 3_600_000,
                pm25: Some(41.0),
                pm10: None,
                o3: Some(90.0),
                no2: None,
                so2: None,
                co: None,
                o3_8h: Some(80.0),
                aqi_pm25: Some(108),
                aqi_pm10: None,
                aqi_o3: Some(45),
                aqi_no2: None,
                aqi_so2: None,
                aqi_co: None,
                aqi: Some(108),
                dominant: Some("pm25".into()),
                band: Some(AqiBand::Moderate),
                colour: Some("#ffff00".into()),
                advice: Some(AqiBand::Moderate.advice()),
                coverage: 3,
            }),
            Kpi::Water(WaterKpi {
                station_id: "river-1".into(),
                district: d,
                medium: Medium::SurfaceWater,
                window_start_ms: start,
                window_size_ms: size,
                parameter: "do_mg_l".into(),
                value: 3.1,
                limit_min: Some(4.0),
                limit_max: None,
                standard: "QCVN".into(),
                exceeded: true,
            }),
            Kpi::Hydrology(HydrologyKpi {
                gauge_id: "rain-1".into(),
                district: d,
                window_start_ms: start,
                window_size_ms: size,
                rain_mm: Some(2.5),
                rain_1h_mm: Some(11.0),
                rain_3h_mm: None,
                rain_24h_mm: Some(80.0),
                rain_12h_mm: Some(40.0),
                water_level_m: None,
                rise_rate_m_per_h: None,
                coverage: 1,
                alarm_level: None,
            }),
            Kpi::Bridge(BridgeKpi {
                device_id: "bridge-1".into(),
                district: d,
                window_start_ms: start,
                window_size_ms: size,
                wind_mean_ms: Some(9.0),
                wind_max_ms: Some(17.5),
                strain_mean_ue: None,
                strain_min_ue: None,
                strain_max_ue: None,
                temperature_c: Some(29.5),
                humidity_pct: None,
            }),
            Kpi::Health(HealthKpi {
                scope: Scope::Device,
                entity_id: "gauge-1".into(),
                district: None,
                department: None,
                window_start_ms: start,
                window_size_ms: size,
                devices: 1,
                online: 1,
                offline: 0,
                readings: 150,
                expected: 150,
                completeness_pct: 100.0,
                last_seen_ms: Some(599_000),
                status: None,
            }),
        ];
        for row in &rows {
            match row {
                Kpi::Traffic(_)
                | Kpi::Camera(_)
                | Kpi::Air(_)
                | Kpi::Water(_)
                | Kpi::Hydrology(_)
                | Kpi::Bridge(_)
                | Kpi::Health(_) => {}
            }
        }
        rows
    }

    #[test]
    fn kpis_of_every_family_survive_bincode() {
        for row in one_of_each() {
            let bytes = bincode::serialize(&ExchangedKpi(row.clone())).expect("serializes");
            let back: ExchangedKpi = bincode::deserialize(&bytes).expect("deserializes");
            assert_eq!(back.0, row);
        }
    }

    #[test]
    fn observations_survive_bincode() {
        let observation = crate::Observation {
            device_id: "aq-1".into(),
            kind: ioc_schemas::Kind::Environment,
            topic_district: ioc_schemas::District::SonTra,
            medium: Some(ioc_schemas::Medium::Air),
            event_ms: 1_000,
            // Two samples: spilled out of the inline slot.
            samples: smallvec::smallvec![("pm25".into(), 12.5), ("pm10".into(), 20.0)],
            id: u128::MAX - 7,
            replayed: true,
        };
        let enriched = crate::Enriched {
            observation,
            device: None,
        };
        let bytes = bincode::serialize(&enriched).expect("serializes");
        let back: crate::Enriched = bincode::deserialize(&bytes).expect("deserializes");
        assert_eq!(back, enriched);
    }
}
