//! Once the table of device and metric names is full, a reading naming a new one is stored
//! raw and counted, not windowed; readings of names already known are windowed as before.
//! (Its own test binary: the table is per process.)

use std::sync::{Arc, Mutex};

use ioc_dataflow::{DataflowConfig, DataflowMetrics, ManualClock, Name, Outputs, NAME_LIMIT};
use ioc_schemas::{
    Ack, Body, DeadLetter, District, EventTime, Ingested, IngestedReading, Kind, Kpi, Reading,
    SensorBody, Transport, WindowResult, WindowSpec,
};
use tokio::sync::mpsc;

const BASE: u64 = 1_795_827_600_000;
const MINUTE: u64 = 60_000;

#[derive(Clone, Default)]
struct Collected {
    raw: Arc<Mutex<Vec<String>>>,
    windowed: Arc<Mutex<Vec<String>>>,
}

impl Outputs for Collected {
    fn reading(&self, _: &ioc_dataflow::Observation) {}
    fn raw_reading(&self, r: IngestedReading, late: Option<u64>, _: Option<Ack>) {
        assert_eq!(late, None, "no reading here is late");
        self.raw.lock().unwrap().push(r.reading.device_id);
    }
    fn dead_letter(&self, _: DeadLetter, _: Option<Ack>) {}
    fn duplicate(&self, _: IngestedReading, _: Option<Ack>) {}
    fn window(&self, result: WindowResult) {
        if result.is_final && result.window_size_ms == MINUTE {
            self.windowed.lock().unwrap().push(result.device_id);
        }
    }
    fn kpi(&self, _: Kpi) {}
    fn unknown_device(&self, _: &str, _: Kind, _: District, _: u64) {}
}

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
    let (tx, rx) = mpsc::channel(100);
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

    let mut raw = out.raw.lock().unwrap().clone();
    raw.sort();
    assert_eq!(
        raw,
        ["gauge-known", "gauge-known", "gauge-new"],
        "all stored raw"
    );
    assert_eq!(
        *out.windowed.lock().unwrap(),
        ["gauge-known"],
        "one series windowed"
    );
    assert_eq!(
        metrics
            .unnamed_readings
            .with_label_values(&["sensor"])
            .get(),
        2
    );
}
