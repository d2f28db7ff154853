//! A deterministic simulator of Da Nang's sensor fleet that publishes readings over MQTT.
//!
//! - [`Fleet::da_nang`] builds the city's fleet (DESIGN §2): 166 signal junctions, 200 smart
//!   traffic cameras, the 34 Thọ Quang harbour cameras, 36 environmental stations, 3 bridge
//!   monitors, 25 rain and 10 flood gauges, with stable ASCII ids and Vietnamese names.
//! - [`Generator`] turns a fleet, a seed and a start time into the same stream of
//!   [`SimMessage`]s every time: `ioc_schemas::Reading` JSON on
//!   `ioc/v1/<kind>/<district>/<device_id>`, following the city's daily rhythm in local time
//!   (UTC+7), with optional malformed, out-of-order and duplicate messages mixed in.
//! - [`publish_mqtt`] publishes the stream with QoS 1, paced as below, and returns once
//!   the broker has acknowledged every message.
//! - [`EpisodesConfig`] scripts episodes in simulated time from the start of the run, so every
//!   KPI moves in the first hour of a demo: jammed junctions, a pollution episode, a flood, a
//!   junction fault, silent devices and a crowd by the Dragon Bridge. [`scenario_readings`],
//!   [`Fleet::subset`], [`Generator::take_until`] and [`Generator::episode_windows`] script a
//!   scenario for a test.
//!
//! Pacing: with `real_time` (the demo default) event times follow the wall clock and every
//! device sends at the interval its registry entry declares (`expected_interval_s`, in
//! `simulator/registry/da_nang.json`), about 27.5 messages a second for the whole fleet; `rate_per_s`
//! is a ceiling, and only one below that stretches every interval by a common factor
//! ([`Fleet::paced`], whose registry, [`SimulatorConfig::registry`], declares the stretched
//! intervals). Without `real_time` the intervals are kept, simulated time starts at
//! `start_ms` and runs `rate_per_s / natural fleet rate` times faster than the wall clock
//! (about 7× at 200/s), for load tests and replays.
//!
//! The generator uses its own PRNG so a seed gives the same fleet and stream on every
//! version of this crate's dependencies.

mod config;
mod episodes;
mod error;
mod fleet;
mod generator;
mod kafka;
mod patterns;
mod publish;
mod rng;

pub use config::SimulatorConfig;
pub use episodes::{
    CongestionEpisode, CrowdEpisode, EpisodeKind, EpisodeWindow, EpisodesConfig, FloodEpisode,
    JunctionFaultEpisode, PollutionEpisode, SilenceEpisode,
};
pub use error::SimulatorError;
pub use fleet::{DeviceRole, Fleet, RiverGauge, SimDevice, REGISTRY_SEED};
pub use generator::{scenario_readings, Generator, MalformedReason, MessageClass, SimMessage};
pub use kafka::{publish_kafka, KafkaSink};
pub use publish::{publish_mqtt, PublishReport};

/// Da Nang's fleet as a registry (a JSON array of devices): [`Fleet::da_nang`] with
/// [`REGISTRY_SEED`], checked in and kept equal to it by a test (`IOC_BLESS=1 cargo test -p
/// ioc-simulator` rewrites it). `iocd` registers it when no `registry.path` is set.
pub const DA_NANG_FLEET_JSON: &str = include_str!("../registry/da_nang.json");
