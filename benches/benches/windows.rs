//! The dataflow alone: readings from 8 Kafka partitions (each worker feeds its share) through
//! dedupe, the watermark, the registry join (every device registered), the exchange, the
//! windows (1-minute and 5-minute tumbling; and with a 15-minute window sliding every minute
//! added) and the KPIs, with outputs that keep nothing.
//!
//! `cargo bench -p ioc-benches --bench windows` runs Criterion; `-- --scaling 15` instead
//! runs 1 and 2 workers in turn and prints the ratio (see [`scaling`]).

use std::sync::Arc;

use criterion::{criterion_group, Criterion, Throughput};
use ioc_dataflow::{
    ClusterConfig, DataflowConfig, DataflowMetrics, FeedQueues, ManualClock, Outputs, RegistryFeed,
};
use ioc_schemas::{
    Ack, Body, DeadLetter, Department, Device, District, EventTime, Ingested, IngestedReading,
    Kind, Kpi, Reading, SensorBody, Transport, WindowResult, WindowSpec,
};

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

/// The windows of each case.
fn cases() -> [(&'static str, Vec<WindowSpec>); 2] {
    [
        (
            "tumbling_1m_5m",
            vec![WindowSpec::MINUTE, WindowSpec::FIVE_MINUTES],
        ),
        (
            "sliding_1m_5m_15m1m",
            vec![
                WindowSpec::MINUTE,
                WindowSpec::FIVE_MINUTES,
                WindowSpec::sliding(900_000, 60_000),
            ],
        ),
    ]
}

fn config(workers: usize, windows: &[WindowSpec]) -> DataflowConfig {
    DataflowConfig {
        workers,
        windows: windows.to_vec(),
        idle_timeout_ms: u64::MAX / 4,
        input_capacity: READINGS + 1,
        ..DataflowConfig::default()
    }
}

/// The queues filled as ingest fills them, each record in its worker's queue: done before the
/// clock starts, so the dataflow alone is timed.
fn filled(config: &DataflowConfig) -> FeedQueues {
    let (tx, rx) = ioc_dataflow::feed(config, &ClusterConfig::default());
    for r in readings() {
        tx.blocking_send(r).expect("the queues have room");
    }
    rx
}

/// Runs the dataflow over `queues` until they are drained and every window is out.
fn run(config: &DataflowConfig, queues: FeedQueues) {
    let metrics = DataflowMetrics::new(&prometheus::Registry::new()).expect("metrics register");
    ioc_dataflow::spawn(
        config.clone(),
        ioc_dataflow::RunOptions::default(),
        queues,
        RegistryFeed::fixed(registry()),
        Discard,
        metrics,
        Arc::new(ManualClock::new(BASE)),
    )
    .expect("dataflow starts")
    .join()
    .expect("dataflow runs");
}

fn windows(c: &mut Criterion) {
    let mut group = c.benchmark_group("dataflow");
    group.throughput(Throughput::Elements(READINGS as u64));
    group.sample_size(10);
    for (name, windows) in cases() {
        for workers in [1, 2] {
            let config = config(workers, &windows);
            group.bench_function(format!("{name}_{workers}_workers"), |b| {
                b.iter_batched(
                    || filled(&config),
                    |queues| run(&config, queues),
                    criterion::BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();
}

/// `-- --scaling ROUNDS`: 1 and 2 workers in turn, `ROUNDS` times each, in one process, so
/// both see the same machine; prints each case's median rate and their ratio. The ratio from
/// Criterion's two runs, made minutes apart, moved by ±20 % on these shared cores.
#[allow(clippy::print_stdout)] // the bench's report
fn scaling(rounds: usize) {
    for (name, windows) in cases() {
        let mut seconds: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (i, times) in seconds.iter_mut().enumerate() {
                let config = config(i + 1, &windows);
                let queues = filled(&config);
                let started = std::time::Instant::now();
                run(&config, queues);
                times.push(started.elapsed().as_secs_f64());
            }
        }
        let [one, two] = seconds.map(|mut times| {
            times.sort_by(f64::total_cmp);
            READINGS as f64 / times[times.len() / 2]
        });
        println!(
            "{name}: 1 worker {:.2} M readings/s, 2 workers {:.2} M (medians of {rounds}); \
             2 workers / 1 = {:.2}",
            one / 1e6,
            two / 1e6,
            two / one
        );
    }
}

criterion_group!(benches, windows);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--scaling") {
        let rounds = args.get(at + 1).and_then(|r| r.parse().ok()).unwrap_or(15);
        scaling(rounds);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
