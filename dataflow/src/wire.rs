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
mod tests {
    use super::*;

    #[test]
    fn kpis_survive_bincode() {
        let row = ioc_schemas::Kpi::Health(ioc_schemas::HealthKpi {
            scope: ioc_schemas::Scope::Device,
            entity_id: "gauge-1".into(),
            district: None,
            department: None,
            window_start_ms: 300_000,
            window_size_ms: 300_000,
            devices: 1,
            online: 1,
            offline: 0,
            readings: 150,
            expected: 150,
            completeness_pct: 100.0,
            last_seen_ms: Some(599_000),
            status: None,
        });
        let bytes = bincode::serialize(&ExchangedKpi(row.clone())).expect("serializes");
        let back: ExchangedKpi = bincode::deserialize(&bytes).expect("deserializes");
        assert_eq!(back.0, row);
        let city = crate::kpi::city::CityInput::Device(row);
        let bytes = bincode::serialize(&city).expect("serializes");
        let back: crate::kpi::city::CityInput = bincode::deserialize(&bytes).expect("reads");
        assert_eq!(back, city);
    }

    #[test]
    fn observations_survive_bincode() {
        let observation = crate::Observation {
            device_id: "aq-1".into(),
            kind: ioc_schemas::Kind::Environment,
            topic_district: ioc_schemas::District::SonTra,
            medium: Some(ioc_schemas::Medium::Air),
            event_ms: 1_000,
            samples: vec![("pm25".into(), 12.5)],
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
