//! Peak memory of the dataflow over a long stream: N readings spread over simulated days, from
//! a fleet of devices, through dedupe, per-source watermarks and 1-minute, 5-minute and
//! 15-minute-every-minute windows. State is bounded by the lateness horizon, so the peak should
//! not grow with N. Prints the peak resident memory (VmHWM) and the throughput.
//!
//! `cargo run --release -p ioc-benches --bin ioc-memory -- --readings 10000000`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use ioc_dataflow::{DataflowConfig, DataflowMetrics, ManualClock, Outputs, RunOptions};
use ioc_schemas::{
    Ack, Body, DeadLetter, District, EventTime, Ingested, IngestedReading, Kind, Kpi, Reading,
    SensorBody, Transport, WindowResult, WindowSpec,
};

/// mimalloc (v3), as in iocd: the hot path allocates and frees a reading's strings
/// (BENCHMARKS.md, "mimalloc v3").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Streams readings through the dataflow and reports its peak memory.
#[derive(Debug, Parser)]
struct Args {
    /// How many readings.
    #[arg(long, default_value_t = 1_000_000)]
    readings: u64,
    /// How many devices report.
    #[arg(long, default_value_t = 500)]
    devices: u64,
    /// Simulated days the readings span.
    #[arg(long, default_value_t = 3)]
    days: u64,
}

#[derive(Clone)]
struct Count(Arc<AtomicU64>);

impl Outputs for Count {
    fn reading(&self, _: &ioc_dataflow::Observation) {}
    fn raw_reading(&self, _: IngestedReading, _: Option<u64>, _: Option<Ack>) {}
    fn dead_letter(&self, _: DeadLetter, _: Option<Ack>) {}
    fn duplicate(&self, _: IngestedReading, _: Option<Ack>) {}
    fn window(&self, _: WindowResult) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn kpi(&self, _: Kpi) {}
    fn unknown_device(&self, _: &str, _: Kind, _: District, _: u64) {}
}

/// Peak resident memory of this process, KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let start: u64 = 1_795_000_000_000 - 1_795_000_000_000 % 900_000;
    let span_ms = args.days * 86_400_000;
    let step_ms = (span_ms / (args.readings / args.devices).max(1)).max(1);
    let config = DataflowConfig {
        windows: vec![
            WindowSpec::MINUTE,
            WindowSpec::FIVE_MINUTES,
            WindowSpec::sliding(900_000, 60_000),
        ],
        idle_timeout_ms: u64::MAX / 4,
        input_capacity: 65_536,
        ..DataflowConfig::default()
    };
    let emitted = Arc::new(AtomicU64::new(0));
    let (tx, rx) = ioc_dataflow::Feed::new(
        ioc_dataflow::Topology::single(config.workers),
        config.input_capacity,
    );
    let handle = ioc_dataflow::spawn(
        config,
        RunOptions::default(),
        rx,
        ioc_dataflow::RegistryFeed::fixed(Vec::new()),
        Count(Arc::clone(&emitted)),
        DataflowMetrics::new(&prometheus::Registry::new())?,
        Arc::new(ManualClock::new(start)),
    )?;
    let started = Instant::now();
    for i in 0..args.readings {
        let device = i % args.devices;
        let t = start + (i / args.devices) * step_ms + device % step_ms.max(1);
        let reading = Reading {
            message_id: format!("m{i}"),
            device_id: format!("gauge-{device:05}"),
            event_time: EventTime(t),
            body: Body::Sensor(SensorBody {
                metric: "water_level_m".into(),
                value: (i % 100) as f64,
                unit: "m".into(),
            }),
        };
        let record = Ingested::Reading(
            IngestedReading {
                reading,
                district: District::ALL[(device % 7) as usize],
                transport: Transport::Kafka,
                source: format!("ioc.sensor/{}@{i}", device % 4),
                received_at_ms: t,
                payload: String::new(),
            },
            None,
        );
        if tx.blocking_send(record).is_err() {
            anyhow::bail!("the dataflow stopped");
        }
    }
    drop(tx);
    handle.join()?;
    let seconds = started.elapsed().as_secs_f64();
    #[allow(clippy::print_stdout)]
    {
        println!("readings:         {}", args.readings);
        println!("devices:          {}", args.devices);
        println!("simulated days:   {}", args.days);
        println!("windows emitted:  {}", emitted.load(Ordering::Relaxed));
        println!(
            "time:             {seconds:.1} s ({:.0} readings/s)",
            args.readings as f64 / seconds
        );
        println!(
            "peak rss (VmHWM): {:.1} MiB",
            peak_rss_kib() as f64 / 1024.0
        );
    }
    Ok(())
}
