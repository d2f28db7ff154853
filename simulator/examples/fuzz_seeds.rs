//! Writes seed inputs for the ingest fuzz targets (`fuzz/`) from the simulator's deterministic
//! stream, malformed messages included.
//!
//! ```text
//! cargo run -p ioc-simulator --example fuzz_seeds -- fuzz/seeds/mqtt_decode fuzz/seeds/kafka_decode [count]
//! ```
//!
//! Writes `count` (default 200) files named `sim-NNN-<class>` into each directory, after
//! removing the `sim-*` files already there (hand-written seeds are kept). The same messages go
//! to both: for `mqtt_decode` as `topic \0 payload`, for `kafka_decode` as the simulator's Kafka
//! sink sends them (the kind's topic, keyed by device id, with a `district` header):
//! `flags key \0 district \0 payload` (see the targets for the formats). The stream is seed 42
//! from 15 minutes before the targets' fixed clock, so valid readings are valid there too.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ioc_schemas::{parse_topic, Kind};
use ioc_simulator::{Fleet, Generator, MessageClass, SimMessage, SimulatorConfig};

/// The fuzz targets' clock: 2026-11-28T08:00:00+07:00.
const NOW_MS: u64 = 1_795_827_600_000;
/// How much of the stream to sample from.
const SPAN_MS: u64 = 10 * 60_000;
/// The Kafka target's flags: a key, a district header.
const KAFKA_KEY: u8 = 0x08;
const KAFKA_HEADER: u8 = 0x10;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mqtt_dir, kafka_dir, count) = match args.as_slice() {
        [m, k] => (PathBuf::from(m), PathBuf::from(k), 200),
        [m, k, n] => (
            PathBuf::from(m),
            PathBuf::from(k),
            n.parse::<usize>().context("count must be a number")?,
        ),
        _ => bail!("usage: fuzz_seeds <mqtt_dir> <kafka_dir> [count]"),
    };

    let cfg = SimulatorConfig {
        real_time: false,
        malformed_share: 0.1,
        ..SimulatorConfig::default()
    };
    let start_ms = NOW_MS - 15 * 60_000;
    let mut generator = Generator::new(Fleet::da_nang(cfg.seed), cfg.seed, &cfg, start_ms)?;
    let stream = generator.take_until(start_ms + SPAN_MS);
    let chosen = sample(&stream, count);

    for dir in [&mqtt_dir, &kafka_dir] {
        clear(dir)?;
    }
    for (n, msg) in chosen.iter().enumerate() {
        let name = format!("sim-{n:03}-{}", class_name(msg));
        let mut mqtt = msg.topic.as_bytes().to_vec();
        mqtt.push(0);
        mqtt.extend_from_slice(&msg.payload);
        write(&mqtt_dir.join(&name), &mqtt)?;
        write(&kafka_dir.join(&name), &kafka_input(msg))?;
    }
    eprintln!(
        "fuzz_seeds: wrote {} seeds to each of {} and {} (from {} simulated messages)",
        chosen.len(),
        mqtt_dir.display(),
        kafka_dir.display(),
        stream.len()
    );
    Ok(())
}

/// `count` messages: first the earliest of every kind and of every malformed reason, then
/// the rest spread evenly over the stream.
fn sample(stream: &[SimMessage], count: usize) -> Vec<&SimMessage> {
    let mut seen = HashSet::new();
    let mut picked: Vec<usize> = Vec::new();
    for (i, msg) in stream.iter().enumerate() {
        let kind = parse_topic(&msg.topic).map(|p| p.kind).ok();
        if seen.insert((class_name(msg), kind)) {
            picked.push(i);
        }
    }
    picked.truncate(count);
    let rest = count.saturating_sub(picked.len());
    if let Some(step) = stream.len().checked_div(rest) {
        let step = step.max(1);
        // Evenly spaced first, then the earliest left over if that fell short.
        let spaced = (0..stream.len()).step_by(step);
        for i in spaced.chain(0..stream.len()) {
            if picked.len() == count {
                break;
            }
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
    }
    picked.sort_unstable();
    picked.into_iter().map(|i| &stream[i]).collect()
}

fn class_name(msg: &SimMessage) -> String {
    match msg.class {
        MessageClass::Valid => "valid".to_owned(),
        MessageClass::Malformed(reason) => format!("malformed-{}", reason.as_str()),
        MessageClass::OutOfOrder => "out_of_order".to_owned(),
        MessageClass::Duplicate => "duplicate".to_owned(),
    }
}

/// The message as the simulator's Kafka sink sends it, in the `kafka_decode` input format.
fn kafka_input(msg: &SimMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.payload.len() + 64);
    match parse_topic(&msg.topic) {
        Ok(parts) => {
            let kind = Kind::ALL.iter().position(|k| *k == parts.kind).unwrap_or(0);
            out.push(kind as u8 | KAFKA_KEY | KAFKA_HEADER);
            out.extend_from_slice(parts.device_id.as_bytes());
            out.push(0);
            out.extend_from_slice(parts.district.slug().as_bytes());
            out.push(0);
        }
        // The sink sends these to the sensor topic with an empty key and no header.
        Err(_) => {
            out.push(KAFKA_KEY);
            out.push(0);
        }
    }
    out.extend_from_slice(&msg.payload);
    out
}

/// Removes the generated seeds (`sim-*`) from `dir`, creating it if needed.
fn clear(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let generated = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("sim-"));
        if generated {
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}
