//! The dataflow alone: readings from 8 Kafka partitions (each worker feeds its share) through
//! dedupe, the watermark, the registry join (every device registered), the exchange, the windows (1-minute and 5-minute tumbling; and with a 15-minute
//! window sliding every minute added) and the KPIs, with outputs that keep nothing.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ioc_dataflow::{DataflowConfig, DataflowMetrics, ManualClock, Outputs, RegistryFeed};
use ioc_schemas::{
    Ack, Body, DeadLetter, Department, Device, District, EventTime, Ingested, IngestedReading,
    Kind, Kpi, Reading, SensorBody, Transport, WindowResult, WindowSpec,
};
use tokio::sync::mpsc;

/// mimalloc (v3), as in iocd: the hot path allocates and frees a reading's strings
/// (BENCHMARKS.md, "mimalloc v3").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BASE: u64 = 1_795_827_600_000;
const READINGS: usize = 200_000;
const DEVICES: usize = 2_000;

#[derive(Clone)]
struct Discard;

impl Outputs for Discard {
    fn reading(&self, _: &ioc_dataflow::Observation) {}
    fn raw_reading(&self, _: IngestedReading, _: Option<u64>, _: Option<Ack>) {}
    fn dead_letter(&self, _: DeadLetter, _: Option<Ack>) {}
    fn duplicate(&self, _: IngestedReading, _: Option<Ack>) {}
    fn window(&self, result: WindowResult) {
        std::hint::black_box(result);
    }
    fn kpi(&self, kpi: Kpi) {
        std::hint::black_box(kpi);
    }
    fn unknown_device(&self, _: &str, _: Kind, _: District, _: u64) {}
}

fn registry() -> Vec<Device> {
    (0..DEVICES)
        .map(|i| Device {
            id: format!("gauge-{i}"),
            kind: Kind::Sensor,
            name: format!("Trạm đo mực nước {i}"),
            district: District::ALL[i % 7],
            lat: 16.0,
            lon: 108.2,
            department: Department::DisasterPrevention,
            expected_interval_s: 10,
            free_flow_kmh: None,
            water_class: None,
            flood_alarm_m: None,
        })
        .collect()
}

fn readings() -> Vec<Ingested> {
    (0..READINGS)
        .map(|i| {
            let device = format!("gauge-{}", i % DEVICES);
            // 2,000 devices reporting every 10 s of event time.
            let t = BASE + (i / DEVICES) as u64 * 10_000;
            Ingested::Reading(
                IngestedReading {
                    reading: Reading {
                        message_id: format!("m{i}"),
                        device_id: device,
                        event_time: EventTime(t),
                        body: Body::Sensor(SensorBody {
                            metric: "water_level_m".into(),
                            value: (i % 100) as f64,
                            unit: "m".into(),
                        }),
                    },
                    district: District::ALL[i % 7],
                    // Keyed by device over 8 partitions, as the Kafka producers do.
                    transport: Transport::Kafka,
                    source: format!("ioc.sensor/{}@{}", (i % DEVICES) % 8, i / 8),
                    received_at_ms: t,
                    payload: String::new(),
                },
                None,
            )
        })
        .collect()
}

fn windows(c: &mut Criterion) {
    let mut group = c.benchmark_group("dataflow");
    group.throughput(Throughput::Elements(READINGS as u64));
    group.sample_size(10);
    let tumbling = vec![WindowSpec::MINUTE, WindowSpec::FIVE_MINUTES];
    let sliding = vec![
        WindowSpec::MINUTE,
        WindowSpec::FIVE_MINUTES,
        WindowSpec::sliding(900_000, 60_000),
    ];
    for ((name, windows), workers) in [
        ("tumbling_1m_5m", tumbling),
        ("sliding_1m_5m_15m1m", sliding),
    ]
    .into_iter()
    .flat_map(|c| [(c.clone(), 1), (c, 2)])
    {
        group.bench_function(format!("{name}_{workers}_workers"), |b| {
            b.iter_batched(
                || {
                    // The queue is filled before the clock starts: the dataflow alone is timed.
                    let (tx, rx) = mpsc::channel(READINGS + 1);
                    for r in readings() {
                        let _ = tx.try_send(r);
                    }
                    rx
                },
                |rx| {
                    let config = DataflowConfig {
                        workers,
                        windows: windows.clone(),
                        idle_timeout_ms: u64::MAX / 4,
                        ..DataflowConfig::default()
                    };
                    let metrics = DataflowMetrics::new(&prometheus::Registry::new())
                        .expect("metrics register");
                    ioc_dataflow::spawn(
                        config,
                        ioc_dataflow::RunOptions::default(),
                        rx,
                        RegistryFeed::fixed(registry()),
                        Discard,
                        metrics,
                        Arc::new(ManualClock::new(BASE)),
                    )
                    .expect("dataflow starts")
                    .join()
                    .expect("dataflow runs");
                },
                criterion::BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, windows);
criterion_main!(benches);
