//! Once the table of device and metric names is full, a reading naming a new one is stored
//! raw and counted, not windowed; readings of names already known are windowed as before.
//! (Its own test binary: the table is per process.)

use std::sync::Arc;

use ioc_dataflow::{Collected, DataflowConfig, DataflowMetrics, ManualClock, Name, NAME_LIMIT};
use ioc_schemas::{
    Body, District, EventTime, Ingested, IngestedReading, Reading, SensorBody, Transport,
    WindowSpec,
};

const BASE: u64 = 1_795_827_600_000;
const MINUTE: u64 = 60_000;

fn reading(device: &str, metric: &str, seq: u64, t: u64) -> Ingested {
    Ingested::Reading(
        IngestedReading {
            reading: Reading {
                message_id: format!("{device}-{seq}"),
                device_id: device.into(),
                event_time: EventTime(t),
                body: Body::Sensor(SensorBody {
                    metric: metric.into(),
                    value: 1.0,
                    unit: "mm".into(),
                }),
            },
            district: District::HoaVang,
            transport: Transport::Mqtt,
            source: "ioc/v1/hoa_vang/sensor".into(),
            received_at_ms: t,
            payload: String::new(),
        },
        None,
    )
}

#[test]
fn a_full_name_table_stores_new_ids_raw_and_counts_them() {
    // Known before the table fills.
    let known = Name::admit("gauge-known").unwrap();
    Name::admit("rainfall_mm").unwrap();
    let mut i = 0;
    while Name::admit(&format!("filler-{i}")).is_some() {
        i += 1;
    }
    assert!(i < NAME_LIMIT && Name::admit("gauge-new").is_none());
    assert_eq!(
        Name::admit("gauge-known"),
        Some(known),
        "known names still resolve"
    );

    let registry = prometheus::Registry::new();
    let metrics = DataflowMetrics::new(&registry).unwrap();
    let out = Collected::default();
    let (tx, rx) = ioc_dataflow::Feed::new(ioc_dataflow::Topology::single(1), 100);
    let handle = ioc_dataflow::spawn(
        DataflowConfig {
            workers: 1,
            allowed_lateness_ms: 0,
            windows: vec![WindowSpec::MINUTE],
            ..DataflowConfig::default()
        },
        ioc_dataflow::RunOptions {
            finish_open_windows: true,
            ..Default::default()
        },
        rx,
        ioc_dataflow::RegistryFeed::fixed(Vec::new()),
        out.clone(),
        metrics.clone(),
        Arc::new(ManualClock::new(BASE)),
    )
    .unwrap();
    for (seq, (device, metric)) in [
        ("gauge-known", "rainfall_mm"),
        ("gauge-new", "rainfall_mm"),
        ("gauge-known", "a_new_metric"),
    ]
    .into_iter()
    .enumerate()
    {
        tx.blocking_send(reading(device, metric, seq as u64, BASE + 1_000))
            .unwrap();
    }
    drop(tx);
    handle.join().unwrap();

    let emitted = out.emitted();
    assert!(
        emitted.raw.iter().all(|(_, late)| late.is_none()),
        "no reading here is late"
    );
    let mut raw: Vec<&str> = emitted
        .raw
        .iter()
        .map(|(r, _)| r.reading.device_id.as_str())
        .collect();
    raw.sort();
    assert_eq!(
        raw,
        ["gauge-known", "gauge-known", "gauge-new"],
        "all stored raw"
    );
    let windowed: Vec<&str> = emitted
        .windows
        .iter()
        .filter(|w| w.is_final && w.window_size_ms == MINUTE)
        .map(|w| w.device_id.as_str())
        .collect();
    assert_eq!(windowed, ["gauge-known"], "one series windowed");
    assert_eq!(
        metrics
            .unnamed_readings
            .with_label_values(&["sensor"])
            .get(),
        2
    );
}
