//! A deterministic simulator of Da Nang's sensor fleet that publishes readings over MQTT.
//!
//! - [`Fleet::da_nang`] builds the city's fleet (DESIGN §2): 166 signal junctions, 200 smart
//!   traffic cameras, the 34 Thọ Quang harbour cameras, 36 environmental stations, 3 bridge
//!   monitors, 25 rain and 10 flood gauges, with stable ASCII ids and Vietnamese names.
//! - [`Generator`] turns a fleet, a seed and a start time into the same stream of
//!   [`SimMessage`]s every time: `ioc_schemas::Reading` JSON on
//!   `ioc/v1/<kind>/<district>/<device_id>`, following the city's daily rhythm in local time
//!   (UTC+7), with optional malformed, out-of-order and duplicate messages mixed in.
//! - [`publish_mqtt`] publishes the stream with QoS 1 at a configured rate and returns once
//!   the broker has acknowledged every message.
//! - [`EpisodesConfig`] scripts episodes in simulated time from the start of the run, so every
//!   KPI moves in the first hour of a demo: jammed junctions, a pollution episode, a flood, a
//!   junction fault and silent devices. [`scenario_readings`], [`Fleet::subset`],
//!   [`Generator::take_until`] and [`Generator::episode_windows`] script a scenario for a test.
//!
//! Pacing: with `real_time` (the demo default) event times follow the wall clock and every
//! device's interval is scaled by one factor so the fleet emits `rate_per_s` messages per
//! second. Without it the natural intervals are kept, simulated time starts at `start_ms`
//! and runs `rate_per_s / natural fleet rate` times faster than the wall clock (about 8× at
//! 200/s), for load tests and replays.
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
    CongestionEpisode, EpisodeKind, EpisodeWindow, EpisodesConfig, FloodEpisode,
    JunctionFaultEpisode, PollutionEpisode, SilenceEpisode,
};
pub use error::SimulatorError;
pub use fleet::{DeviceRole, Fleet, RiverGauge, SimDevice, REGISTRY_SEED};
pub use generator::{scenario_readings, Generator, MalformedReason, MessageClass, SimMessage};
pub use kafka::{publish_kafka, KafkaSink};
pub use publish::{publish_mqtt, PublishReport};
