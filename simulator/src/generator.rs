//! The deterministic message stream: schedule, readings, and the injected faults.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use ioc_schemas::{reading_topic, Body, EventTime, Reading, RejectCode};

use crate::config::SimulatorConfig;
use crate::episodes::{EpisodePlan, EpisodeWindow};
use crate::error::SimulatorError;
use crate::fleet::{Fleet, HEARTBEAT_AFTER_GAPS};
use crate::patterns::{make_body, DeviceState};
use crate::rng::{splitmix64, Rng};

/// How a malformed message is broken. Generated in this order, cycling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MalformedReason {
    /// The payload is not JSON at all.
    NotJson,
    /// A required field (`device_id`) is absent.
    MissingField,
    /// A field has the wrong JSON type (`device_id` is a number).
    WrongType,
    /// A value is outside its range (occupancy over 100 %, confidence over 1, pH over 14,
    /// a negative concentration, a sensor value beyond ±10¹²).
    OutOfRange,
    /// The `kind` names no known kind.
    UnknownKind,
    /// The event time is a day ahead of the simulated clock.
    FutureEventTime,
    /// The payload has bytes that are not UTF-8 inside a string.
    InvalidUtf8,
}

impl MalformedReason {
    /// Every reason, in the order they are generated.
    pub const ALL: [MalformedReason; 7] = [
        MalformedReason::NotJson,
        MalformedReason::MissingField,
        MalformedReason::WrongType,
        MalformedReason::OutOfRange,
        MalformedReason::UnknownKind,
        MalformedReason::FutureEventTime,
        MalformedReason::InvalidUtf8,
    ];

    /// A snake_case tag for logs and tests.
    pub fn as_str(self) -> &'static str {
        match self {
            MalformedReason::NotJson => "not_json",
            MalformedReason::MissingField => "missing_field",
            MalformedReason::WrongType => "wrong_type",
            MalformedReason::OutOfRange => "out_of_range",
            MalformedReason::UnknownKind => "unknown_kind",
            MalformedReason::FutureEventTime => "future_event_time",
            MalformedReason::InvalidUtf8 => "invalid_utf8",
        }
    }

    /// The rejection code a correct ingest gives this message.
    pub fn reject_code(self) -> RejectCode {
        match self {
            MalformedReason::NotJson => RejectCode::MalformedJson,
            MalformedReason::MissingField => RejectCode::MissingField,
            MalformedReason::WrongType => RejectCode::WrongType,
            MalformedReason::OutOfRange => RejectCode::OutOfRange,
            MalformedReason::UnknownKind => RejectCode::UnknownKind,
            MalformedReason::FutureEventTime => RejectCode::FutureEventTime,
            MalformedReason::InvalidUtf8 => RejectCode::InvalidUtf8,
        }
    }
}

/// What a generated message is meant to test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageClass {
    /// A well-formed reading, emitted in event-time order.
    Valid,
    /// A broken message a receiver must reject.
    Malformed(MalformedReason),
    /// A well-formed reading emitted later than newer ones, with its original event time.
    OutOfOrder,
    /// A re-send of an earlier valid message: same topic, message id and payload.
    Duplicate,
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct SimMessage {
    /// `ioc/v1/<kind>/<district>/<device_id>`.
    pub topic: String,
    /// The JSON payload (or deliberately broken bytes).
    pub payload: Vec<u8>,
    /// The event time in the payload (epoch ms); for a payload without a readable one, the
    /// simulated time it was made at.
    pub event_time_ms: u64,
    /// What the message is.
    pub class: MessageClass,
}

impl SimMessage {
    /// The reading in the payload; `None` for a malformed message.
    pub fn reading(&self) -> Option<Reading> {
        match self.class {
            MessageClass::Malformed(_) => None,
            _ => serde_json::from_slice(&self.payload).ok(),
        }
    }
}

/// A duplicate follows its original within this much simulated time, µs.
const DUPLICATE_MAX_DELAY_US: u64 = 2_000_000;
/// How far ahead a future-event-time message claims to be, ms.
const FUTURE_MS: u64 = 24 * 3_600_000;

/// Generates the fleet's messages in simulated-time order. Deterministic for
/// (fleet, seed, config, start time).
///
/// The config's [`episodes`](crate::EpisodesConfig) play in simulated time from `start_ms`: a
/// silent device sends nothing at all during its silence, and its first report after it
/// covers one interval (no catch-up).
///
/// Simulated time starts at `start_ms`. With `real_time` the devices send at their registry
/// intervals and pacing by simulated time (see [`Generator::clock_ms`]) gives event times
/// that are "now"; `rate_per_s` is a ceiling: below the fleet's natural rate every interval
/// is stretched ([`Fleet::paced`]; [`Generator::fleet`] then holds, and its registry
/// declares, the stretched intervals). Without `real_time` the intervals are kept and pacing
/// by count makes simulated time run at `rate_per_s / natural fleet rate` × wall speed.
pub struct Generator {
    fleet: Fleet,
    rng: Rng,
    run_id: u32,
    start_us: u64,
    clock_us: u64,
    /// Mean gap between one device's messages, µs.
    gap_us: Vec<u64>,
    /// When each device's previous message was made, µs (a heartbeat does not count: the
    /// next event covers the time since the last one).
    last_us: Vec<u64>,
    /// Whether each device's next message is a camera's heartbeat.
    heartbeat: Vec<bool>,
    seq: Vec<u64>,
    state: Vec<DeviceState>,
    /// Next message per device: (due µs, device index).
    schedule: BinaryHeap<Reverse<(u64, usize)>>,
    /// Held-back out-of-order messages and pending duplicates by (release µs, order).
    held: BTreeMap<(u64, u64), SimMessage>,
    held_order: u64,
    p_malformed: f64,
    p_out_of_order: f64,
    p_duplicate: f64,
    out_of_order_max_delay_us: u64,
    next_malformed: usize,
    emitted: u64,
    max_messages: Option<u64>,
    time_scale: f64,
    episodes: EpisodePlan,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("devices", &self.fleet.devices.len())
            .field("run_id", &format_args!("{:08x}", self.run_id))
            .field("clock_ms", &self.clock_ms())
            .field("emitted", &self.emitted)
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl Generator {
    /// A generator for `fleet` ([`paced`](Fleet::paced) by `cfg`) starting at `start_ms`
    /// (epoch ms). Uses the config's rate, `real_time`, shares and `max_messages`; `seed`
    /// drives the stream (usually `cfg.seed`).
    pub fn new(
        fleet: Fleet,
        seed: u64,
        cfg: &SimulatorConfig,
        start_ms: u64,
    ) -> Result<Generator, SimulatorError> {
        cfg.validate()?;
        let natural = fleet.natural_rate_per_s();
        if fleet.devices.is_empty() || natural <= 0.0 {
            return Err(SimulatorError::InvalidConfig(
                "the fleet has no devices".to_owned(),
            ));
        }
        let fleet = fleet.paced(cfg.real_time, cfg.rate_per_s);
        let mut mix = seed ^ start_ms.rotate_left(23) ^ 0x5EED_F00D_0123_4567;
        let run_id = splitmix64(&mut mix) as u32;
        let mut rng = Rng::new(splitmix64(&mut mix));
        let start_us = start_ms.saturating_mul(1000);

        let episodes = EpisodePlan::new(&cfg.episodes, &fleet, seed, start_ms);
        let n = fleet.devices.len();
        let mut gap_us = Vec::with_capacity(n);
        let mut last_us = vec![start_us; n];
        let mut heartbeat = vec![false; n];
        let mut state = Vec::with_capacity(n);
        let mut schedule = BinaryHeap::with_capacity(n);
        for (i, d) in fleet.devices.iter().enumerate() {
            let gap = u64::from(d.interval_s.max(1)) * 1_000_000;
            gap_us.push(gap);
            state.push(DeviceState::new(&mut rng, d));
            // Spread first reports over one interval so the fleet does not report in step.
            let first = if d.role.is_event_driven() {
                let (first, beat) = next_camera_message(&mut rng, gap);
                heartbeat[i] = beat;
                first
            } else {
                rng.below(gap)
            };
            let due = skip_silence(
                &episodes,
                &mut rng,
                d.role.is_event_driven(),
                i,
                gap,
                start_us + first,
            );
            if due != start_us + first {
                last_us[i] = due.saturating_sub(gap);
            }
            schedule.push(Reverse((due, i)));
        }

        let (m, o, d) = (
            cfg.malformed_share,
            cfg.out_of_order_share,
            cfg.duplicate_share,
        );
        // Shares are of emitted messages. Duplicates are extra emissions, so per fresh slot
        // the malformed and out-of-order chances are scaled by 1/(1-d), and each valid
        // message spawns a duplicate with d/(1-d-m-o).
        let valid = 1.0 - d - m - o;
        Ok(Generator {
            rng,
            run_id,
            start_us,
            clock_us: start_us,
            last_us,
            heartbeat,
            seq: vec![0; n],
            gap_us,
            state,
            schedule,
            held: BTreeMap::new(),
            held_order: 0,
            p_malformed: if d < 1.0 { m / (1.0 - d) } else { 0.0 },
            p_out_of_order: if d < 1.0 { o / (1.0 - d) } else { 0.0 },
            p_duplicate: if valid > 0.0 { d / valid } else { 0.0 },
            out_of_order_max_delay_us: cfg.out_of_order_max_delay_ms.saturating_mul(1000),
            next_malformed: 0,
            emitted: 0,
            max_messages: cfg.max_messages,
            time_scale: if cfg.real_time {
                1.0
            } else {
                cfg.rate_per_s / natural
            },
            fleet,
            episodes,
        })
    }

    /// The episode occurrences that start before `until_ms` (epoch ms), in start order, with
    /// the devices of this generator's fleet each affects. An integration test uses these to
    /// know when to expect what.
    pub fn episode_windows(&self, until_ms: u64) -> Vec<EpisodeWindow> {
        self.episodes.windows(&self.fleet, until_ms)
    }

    /// Every message due before `end_ms` (epoch ms): fresh readings with event times before
    /// it and held (out-of-order, duplicate) messages released before it. Stops early at
    /// `max_messages`.
    pub fn take_until(&mut self, end_ms: u64) -> Vec<SimMessage> {
        let end_us = end_ms.saturating_mul(1000);
        let mut out = Vec::new();
        loop {
            let due = self.schedule.peek().map(|Reverse((due, _))| *due);
            let release = self.held.keys().next().map(|(release, _)| *release);
            let next = match (due, release) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => break,
            };
            if next >= end_us {
                break;
            }
            match self.next() {
                Some(m) => out.push(m),
                None => break,
            }
        }
        out
    }

    /// The fleet being simulated, with the intervals it sends at: its
    /// [`registry`](Fleet::registry) is what a receiver should register.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// The simulated clock (epoch ms): the time of the last message made. Never decreases.
    /// Pace by this in real-time mode.
    pub fn clock_ms(&self) -> u64 {
        self.clock_us / 1000
    }

    /// Where simulated time started (epoch ms).
    pub fn start_ms(&self) -> u64 {
        self.start_us / 1000
    }

    /// Simulated seconds per wall second when paced at `rate_per_s`: 1 in real-time mode.
    pub fn time_scale(&self) -> f64 {
        self.time_scale
    }

    /// Messages emitted so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// The run's tag in message ids (`<device>-<run>-<seq>`): derived from seed and start
    /// time, so a restarted simulator does not repeat the previous run's ids.
    pub fn run_id(&self) -> String {
        format!("{:08x}", self.run_id)
    }

    fn hold(&mut self, release_us: u64, msg: SimMessage) {
        self.held_order += 1;
        self.held.insert((release_us, self.held_order), msg);
    }

    /// Makes the next message of the earliest device, moving the clock to its time.
    fn fresh(&mut self) -> Option<(Reading, SimMessage)> {
        let Reverse((due, i)) = self.schedule.pop()?;
        self.clock_us = self.clock_us.max(due);
        let gap = self.gap_us[i];
        let event_driven = self.fleet.devices[i].role.is_event_driven();
        let is_heartbeat = std::mem::take(&mut self.heartbeat[i]);
        let next = if event_driven {
            let (after, beat) = next_camera_message(&mut self.rng, gap);
            self.heartbeat[i] = beat;
            due + after
        } else {
            due + gap
        };
        let resume = skip_silence(&self.episodes, &mut self.rng, event_driven, i, gap, next);
        self.schedule.push(Reverse((resume, i)));

        let dt_s = due.saturating_sub(self.last_us[i]).max(1) as f64 / 1e6;
        // The first report covers one mean gap, not the time since start.
        let dt_s = if self.seq[i] == 0 {
            gap as f64 / 1e6
        } else {
            dt_s
        };
        // After a silence the next report covers one gap, not the silence.
        if resume != next {
            self.last_us[i] = resume.saturating_sub(gap);
        } else if !is_heartbeat {
            self.last_us[i] = due;
        }
        self.seq[i] += 1;
        let device = &self.fleet.devices[i];
        let message_id = format!("{}-{:08x}-{}", device.id, self.run_id, self.seq[i]);
        let t_ms = due / 1000;
        let effect = self.episodes.effect(i, t_ms);
        let body = if is_heartbeat {
            Body::CameraEvent(ioc_schemas::CameraEventBody {
                camera_id: device.id.clone(),
                event_type: ioc_schemas::CameraEventType::Heartbeat,
                confidence: 1.0,
                plate: None,
                lane: None,
                count: None,
                media_url: None,
            })
        } else {
            make_body(
                &mut self.rng,
                device,
                &mut self.state[i],
                t_ms,
                dt_s,
                &message_id,
                &effect,
            )
        };
        let reading = Reading {
            message_id,
            device_id: device.id.clone(),
            event_time: EventTime(t_ms),
            body,
        };
        let msg = SimMessage {
            topic: reading_topic(device.kind, device.district, &device.id),
            payload: encode(&reading),
            event_time_ms: t_ms,
            class: MessageClass::Valid,
        };
        Some((reading, msg))
    }

    fn malformed(&mut self, mut reading: Reading, topic: String) -> SimMessage {
        let reason = MalformedReason::ALL[self.next_malformed % MalformedReason::ALL.len()];
        self.next_malformed += 1;
        let mut event_time_ms = reading.event_time.0;
        let payload = match reason {
            MalformedReason::NotJson => format!(
                "{} {} reading: temperature=28.5 <unterminated",
                reading.device_id, reading.message_id
            )
            .into_bytes(),
            MalformedReason::MissingField => edit_json(&reading, |v| {
                v.remove("device_id");
            }),
            MalformedReason::WrongType => edit_json(&reading, |v| {
                v.insert("device_id".to_owned(), serde_json::Value::from(42));
            }),
            MalformedReason::OutOfRange => {
                break_range(&mut reading.body);
                encode(&reading)
            }
            MalformedReason::UnknownKind => edit_json(&reading, |v| {
                v.insert("kind".to_owned(), serde_json::Value::from("radar"));
            }),
            MalformedReason::FutureEventTime => {
                event_time_ms += FUTURE_MS;
                reading.event_time = EventTime(event_time_ms);
                encode(&reading)
            }
            MalformedReason::InvalidUtf8 => {
                let mut bytes = encode(&reading);
                // Serialised field order puts `{"message_id":"` first: break that string.
                let at = br#"{"message_id":""#.len().min(bytes.len());
                bytes.splice(at..at, [0xFF, 0xFE, 0xC3, 0x28]);
                bytes
            }
        };
        SimMessage {
            topic,
            payload,
            event_time_ms,
            class: MessageClass::Malformed(reason),
        }
    }
}

impl Iterator for Generator {
    type Item = SimMessage;

    fn next(&mut self) -> Option<SimMessage> {
        if self.max_messages.is_some_and(|max| self.emitted >= max) {
            return None;
        }
        loop {
            let next_due = self.schedule.peek().map(|Reverse((due, _))| *due);
            // A held message goes out once the clock reaches its release time.
            if let Some(&(release, order)) = self.held.keys().next() {
                if next_due.is_none_or(|due| release <= due) {
                    if let Some(msg) = self.held.remove(&(release, order)) {
                        self.clock_us = self.clock_us.max(release);
                        self.emitted += 1;
                        return Some(msg);
                    }
                }
            }
            let (reading, msg) = self.fresh()?;
            let roll = self.rng.f64();
            if roll < self.p_malformed {
                self.emitted += 1;
                return Some(self.malformed(reading, msg.topic));
            }
            if roll < self.p_malformed + self.p_out_of_order {
                let lateness = 1 + self.rng.below(self.out_of_order_max_delay_us);
                let release = self.clock_us + lateness;
                self.hold(
                    release,
                    SimMessage {
                        class: MessageClass::OutOfOrder,
                        ..msg
                    },
                );
                continue;
            }
            if self.p_duplicate > 0.0 && self.rng.chance(self.p_duplicate) {
                let release = self.clock_us + self.rng.below(DUPLICATE_MAX_DELAY_US);
                self.hold(
                    release,
                    SimMessage {
                        class: MessageClass::Duplicate,
                        ..msg.clone()
                    },
                );
            }
            self.emitted += 1;
            return Some(msg);
        }
    }
}

/// The readings the devices `device_ids` send from `start_ms` until `end_ms` (epoch ms,
/// exclusive), in event-time order: the fleet of `cfg.seed` cut down to those devices, at
/// their natural intervals, with `cfg.seed` and `cfg.episodes`. The config's rate,
/// `real_time`, `max_messages` and fault shares do not apply: every reading is valid and in
/// order. Episodes naming devices outside `device_ids` leave them out; a district's episode
/// takes the district's devices among them; the silent `share` is drawn among them.
///
/// ```
/// use ioc_simulator::{scenario_readings, EpisodeKind, EpisodesConfig, SimulatorConfig};
///
/// let cfg = SimulatorConfig {
///     episodes: EpisodesConfig::default().only(&[EpisodeKind::JunctionFault]),
///     ..SimulatorConfig::default()
/// };
/// let start = 1_795_845_600_000; // 2026-11-28T13:00:00+07:00
/// let readings =
///     scenario_readings(&cfg, &["tsc-thanh_khe-005"], start, start + 3_600_000).unwrap();
/// assert_eq!(readings.len(), 120); // every 30 s for an hour
/// ```
pub fn scenario_readings(
    cfg: &SimulatorConfig,
    device_ids: &[&str],
    start_ms: u64,
    end_ms: u64,
) -> Result<Vec<Reading>, SimulatorError> {
    let cfg = SimulatorConfig {
        real_time: false,
        start_ms: Some(start_ms),
        malformed_share: 0.0,
        out_of_order_share: 0.0,
        duplicate_share: 0.0,
        max_messages: None,
        ..cfg.clone()
    };
    let fleet = Fleet::da_nang(cfg.seed).subset(device_ids)?;
    let mut generator = Generator::new(fleet, cfg.seed, &cfg, start_ms)?;
    Ok(generator
        .take_until(end_ms)
        .iter()
        .filter_map(SimMessage::reading)
        .collect())
}

/// When device `i` reports next, given its report is due at `due_us`: the first slot after
/// its silence when `due_us` falls in one (one period later for a periodic device, a random
/// gap later for an event-driven one), else `due_us`.
fn skip_silence(
    plan: &EpisodePlan,
    rng: &mut Rng,
    event_driven: bool,
    i: usize,
    gap_us: u64,
    due_us: u64,
) -> u64 {
    let mut due = due_us;
    // A silence may end right before the next starts: step over each in turn.
    while let Some(end_ms) = plan.silent_until(i, due / 1000) {
        let end_us = end_ms.saturating_mul(1000);
        due = if event_driven {
            end_us + (rng.exp(gap_us as f64) as u64).max(1)
        } else {
            // Keep the device's phase: the first of its slots at or after the end.
            due + (end_us.saturating_sub(due)).div_ceil(gap_us.max(1)) * gap_us.max(1)
        };
    }
    due
}

fn encode(reading: &Reading) -> Vec<u8> {
    // Cannot fail: string map keys, and serde_json writes non-finite floats as null.
    serde_json::to_vec(reading).expect("a Reading always serialises to JSON")
}

fn edit_json(
    reading: &Reading,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> Vec<u8> {
    let mut value = serde_json::to_value(reading).expect("a Reading always serialises to JSON");
    if let serde_json::Value::Object(map) = &mut value {
        edit(map);
    }
    serde_json::to_vec(&value).expect("a JSON value always serialises")
}

/// Puts one value of the body outside its allowed range.
fn break_range(body: &mut Body) {
    match body {
        Body::TrafficSignal(b) => match b.approaches.first_mut() {
            Some(a) => a.occupancy_pct = 140.0,
            None => b.junction_id = "bad junction id".to_owned(),
        },
        Body::CameraEvent(b) => b.confidence = 1.7,
        Body::Environment(b) => {
            if let Some(ph) = b.measurements.get_mut("ph") {
                *ph = 15.2;
            } else if let Some(v) = b.measurements.values_mut().next() {
                *v = -5.0;
            }
        }
        Body::Sensor(b) => b.value = 5e12,
    }
}

/// The time to a camera's next message, µs, and whether it is a heartbeat: its events are a
/// Poisson process of mean gap `gap`, and a heartbeat comes when none has come for
/// [`HEARTBEAT_AFTER_GAPS`] gaps (the events stay Poisson after it: they are memoryless).
fn next_camera_message(rng: &mut Rng, gap: u64) -> (u64, bool) {
    let event = (rng.exp(gap as f64) as u64).max(1);
    let quiet = gap.saturating_mul(HEARTBEAT_AFTER_GAPS);
    if event > quiet {
        (quiet, true)
    } else {
        (event, false)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use ioc_schemas::{Kind, ValidationLimits};

    use super::*;

    /// 2026-11-28T00:00:00+07:00.
    const MIDNIGHT_LOCAL: u64 = 1_795_798_800_000;

    fn cfg() -> SimulatorConfig {
        SimulatorConfig {
            real_time: false,
            ..SimulatorConfig::default()
        }
    }

    /// The daily patterns alone.
    fn plain() -> SimulatorConfig {
        SimulatorConfig {
            episodes: crate::EpisodesConfig::none(),
            ..cfg()
        }
    }

    fn gen(seed: u64, cfg: &SimulatorConfig, start: u64) -> Generator {
        Generator::new(Fleet::da_nang(seed), seed, cfg, start).unwrap()
    }

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let c = SimulatorConfig {
            malformed_share: 0.05,
            out_of_order_share: 0.05,
            duplicate_share: 0.05,
            ..cfg()
        };
        let a: Vec<SimMessage> = gen(42, &c, MIDNIGHT_LOCAL).take(10_000).collect();
        let b: Vec<SimMessage> = gen(42, &c, MIDNIGHT_LOCAL).take(10_000).collect();
        assert_eq!(a.len(), 10_000);
        assert!(a == b, "same seed must give the same 10k messages");
        let other: Vec<SimMessage> = gen(43, &c, MIDNIGHT_LOCAL).take(10_000).collect();
        let same = a.iter().zip(&other).filter(|(x, y)| x == y).count();
        assert_eq!(same, 0, "another seed must give another stream");
        // Another start time gives other message ids (run tag), so restarts do not collide.
        let later: Vec<SimMessage> = gen(42, &c, MIDNIGHT_LOCAL + 1).take(100).collect();
        assert!(a
            .iter()
            .take(100)
            .zip(&later)
            .all(|(x, y)| x.payload != y.payload));
    }

    #[test]
    fn valid_messages_decode_validate_and_match_their_topic() {
        let limits = ValidationLimits::default();
        let fleet = Fleet::da_nang(5);
        for (real_time, start, n) in [
            (false, MIDNIGHT_LOCAL, 100_000),
            (true, MIDNIGHT_LOCAL + 7 * 3_600_000, 20_000),
        ] {
            let c = SimulatorConfig {
                real_time,
                rate_per_s: 1_000.0,
                ..cfg()
            };
            let mut g = Generator::new(fleet.clone(), 5, &c, start).unwrap();
            let mut ids = HashSet::new();
            let mut kinds = HashMap::new();
            let mut last = 0;
            for _ in 0..n {
                let m = g.next().unwrap();
                assert_eq!(m.class, MessageClass::Valid);
                let r: Reading = serde_json::from_slice(&m.payload).unwrap();
                r.validate(g.clock_ms(), &limits)
                    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&m.payload)));
                let t = ioc_schemas::parse_topic(&m.topic).unwrap();
                assert_eq!(t.device_id, r.device_id);
                assert_eq!(t.kind, r.kind());
                let d = fleet.device(&r.device_id).unwrap();
                assert_eq!((d.kind, d.district), (t.kind, t.district));
                assert_eq!(m.event_time_ms, r.event_time.0);
                assert!(
                    m.event_time_ms >= last,
                    "valid messages come in event-time order"
                );
                last = m.event_time_ms;
                assert!(ids.insert(r.message_id.clone()), "message ids are unique");
                *kinds.entry(r.kind()).or_insert(0u32) += 1;
            }
            assert_eq!(kinds.len(), 4, "{kinds:?}");
            // Junctions report every 30 s, about a fifth of the fleet's messages.
            let share = f64::from(kinds[&Kind::TrafficSignal]) / f64::from(n);
            assert!((0.12..0.3).contains(&share), "{share}");
        }
    }

    #[test]
    fn every_device_reports_round_robin() {
        let c = cfg();
        let mut g = gen(9, &c, MIDNIGHT_LOCAL);
        let devices = g.fleet().devices.len();
        let mut seen = HashSet::new();
        // Ten minutes of simulated time covers every interval (water stations: 5 min).
        while g.clock_ms() < MIDNIGHT_LOCAL + 600_000 {
            let m = g.next().unwrap();
            seen.insert(m.topic);
        }
        assert_eq!(seen.len(), devices);
    }

    #[test]
    fn real_time_rate_is_a_ceiling_on_the_fleets_natural_rate() {
        let natural = Fleet::da_nang(3).natural_rate_per_s();
        assert!((27.0..28.0).contains(&natural), "{natural}");
        // At or above the natural rate the fleet sends at its registry intervals; below it
        // the intervals stretch (rounded up to whole seconds) to stay under the ceiling.
        for (rate, lo, hi) in [
            (5.0, 4.75, 5.0),
            (20.0, 19.0, 20.0),
            (50.0, natural * 0.97, natural * 1.03),
            (200.0, natural * 0.97, natural * 1.03),
            (5_000.0, natural * 0.97, natural * 1.03),
        ] {
            let c = SimulatorConfig {
                real_time: true,
                rate_per_s: rate,
                ..cfg()
            };
            let mut g = gen(3, &c, MIDNIGHT_LOCAL);
            let n = 30_000;
            for _ in 0..n {
                g.next().unwrap();
            }
            let secs = (g.clock_ms() - MIDNIGHT_LOCAL) as f64 / 1000.0;
            let got = f64::from(n) / secs;
            assert!((lo..=hi).contains(&got), "ceiling {rate}/s, got {got}/s");
            assert_eq!(g.time_scale(), 1.0);
        }
        // Not in real time, simulated time runs rate / natural times faster.
        let g = gen(3, &cfg(), MIDNIGHT_LOCAL);
        assert!((g.time_scale() - 200.0 / natural).abs() < 1e-9);
        assert_eq!(g.fleet(), &Fleet::da_nang(3));
    }

    #[test]
    fn shares_are_respected_and_faults_are_what_they_claim() {
        let c = SimulatorConfig {
            malformed_share: 0.07,
            out_of_order_share: 0.05,
            duplicate_share: 0.03,
            out_of_order_max_delay_ms: 10_000,
            ..cfg()
        };
        let limits = ValidationLimits::default();
        let mut g = gen(11, &c, MIDNIGHT_LOCAL);
        let n = 100_000;
        let mut counts: HashMap<&str, u32> = HashMap::new();
        let mut reasons: HashMap<MalformedReason, u32> = HashMap::new();
        let mut valid_payloads: HashMap<String, Vec<u8>> = HashMap::new();
        let mut max_event = 0;
        let mut truly_late = 0;
        for _ in 0..n {
            let m = g.next().unwrap();
            let clock = g.clock_ms();
            match m.class {
                MessageClass::Valid => {
                    *counts.entry("valid").or_default() += 1;
                    let r: Reading = serde_json::from_slice(&m.payload).unwrap();
                    r.validate(clock, &limits).unwrap();
                    valid_payloads.insert(r.message_id, m.payload.clone());
                    max_event = max_event.max(m.event_time_ms);
                }
                MessageClass::Malformed(reason) => {
                    *counts.entry("malformed").or_default() += 1;
                    *reasons.entry(reason).or_default() += 1;
                    let decoded = serde_json::from_slice::<Reading>(&m.payload);
                    match (reason, decoded) {
                        (MalformedReason::OutOfRange | MalformedReason::FutureEventTime, Ok(r)) => {
                            let e = r.validate(clock, &limits).unwrap_err();
                            assert_eq!(e.code, reason.reject_code());
                        }
                        (_, Ok(r)) => panic!("{reason:?} decoded: {r:?}"),
                        (_, Err(_)) => {}
                    }
                    if reason == MalformedReason::InvalidUtf8 {
                        assert!(std::str::from_utf8(&m.payload).is_err());
                    } else {
                        assert!(std::str::from_utf8(&m.payload).is_ok());
                    }
                }
                MessageClass::OutOfOrder => {
                    *counts.entry("out_of_order").or_default() += 1;
                    let r: Reading = serde_json::from_slice(&m.payload).unwrap();
                    r.validate(clock, &limits).unwrap();
                    assert!(clock - m.event_time_ms <= 10_000, "at most 10 s late");
                    if m.event_time_ms < max_event {
                        truly_late += 1;
                    }
                    assert!(valid_payloads
                        .insert(r.message_id, m.payload.clone())
                        .is_none());
                }
                MessageClass::Duplicate => {
                    *counts.entry("duplicate").or_default() += 1;
                    let r: Reading = serde_json::from_slice(&m.payload).unwrap();
                    assert_eq!(valid_payloads.get(&r.message_id), Some(&m.payload));
                }
            }
        }
        let share = |k: &str| f64::from(counts.get(k).copied().unwrap_or(0)) / f64::from(n);
        assert!((share("malformed") - 0.07).abs() < 0.005, "{counts:?}");
        assert!((share("out_of_order") - 0.05).abs() < 0.005, "{counts:?}");
        assert!((share("duplicate") - 0.03).abs() < 0.005, "{counts:?}");
        assert_eq!(reasons.len(), MalformedReason::ALL.len());
        let ooo = counts["out_of_order"];
        assert!(
            f64::from(truly_late) > 0.9 * f64::from(ooo),
            "{truly_late} of {ooo}"
        );
    }

    #[test]
    fn take_until_stops_at_the_end_and_readings_decode() {
        let c = SimulatorConfig {
            malformed_share: 0.1,
            out_of_order_share: 0.1,
            ..cfg()
        };
        let mut g = gen(4, &c, MIDNIGHT_LOCAL);
        let end = MIDNIGHT_LOCAL + 60_000;
        let first = g.take_until(end);
        assert!(!first.is_empty());
        for m in &first {
            assert!(
                m.event_time_ms < end
                    || m.class == MessageClass::Malformed(MalformedReason::FutureEventTime)
            );
            match (m.class, m.reading()) {
                (MessageClass::Malformed(_), r) => assert!(r.is_none()),
                (_, Some(r)) => assert_eq!(r.event_time.0, m.event_time_ms),
                (class, None) => panic!("{class:?} does not decode"),
            }
        }
        // The next call carries on where the first stopped, missing nothing.
        let rest = g.take_until(end + 60_000);
        let mut whole = gen(4, &c, MIDNIGHT_LOCAL);
        let expected = whole.take_until(end + 60_000);
        assert_eq!(first.len() + rest.len(), expected.len());
        assert!(first.iter().chain(&rest).eq(&expected));
        assert!(g.take_until(end).is_empty(), "the past is done");
    }

    #[test]
    fn max_messages_ends_the_stream() {
        let c = SimulatorConfig {
            max_messages: Some(1234),
            out_of_order_share: 0.1,
            ..cfg()
        };
        assert_eq!(gen(1, &c, MIDNIGHT_LOCAL).count(), 1234);
    }

    /// Mean vehicles per junction report over `n` messages from local hour `hour`.
    fn vehicles_per_report(hour: u64, n: usize) -> f64 {
        let g = gen(21, &plain(), MIDNIGHT_LOCAL + hour * 3_600_000);
        let (mut sum, mut reports) = (0.0, 0.0);
        for m in g.take(n) {
            let r: Reading = serde_json::from_slice(&m.payload).unwrap();
            if let Body::TrafficSignal(b) = &r.body {
                sum += b
                    .approaches
                    .iter()
                    .map(|a| f64::from(a.vehicles))
                    .sum::<f64>();
                reports += 1.0;
            }
        }
        sum / reports
    }

    #[test]
    fn rush_hour_traffic_dwarfs_3_am() {
        let night = vehicles_per_report(3, 20_000);
        let rush = vehicles_per_report(7, 20_000);
        let evening = vehicles_per_report(17, 20_000);
        assert!(rush > 5.0 * night, "rush {rush} vs 3 am {night}");
        assert!(evening > 5.0 * night, "evening {evening} vs 3 am {night}");
        // About 1500 veh/h per approach at the peak, 30 s per report, 3–4 approaches.
        assert!((20.0..90.0).contains(&rush), "{rush}");
    }

    #[test]
    fn pm25_is_higher_in_rush_hours_and_at_night_than_at_midday() {
        let mean_pm25 = |hour: u64| {
            let g = gen(8, &plain(), MIDNIGHT_LOCAL + hour * 3_600_000);
            let v: Vec<f64> = g
                .take(30_000)
                .filter_map(|m| {
                    let r: Reading = serde_json::from_slice(&m.payload).ok()?;
                    match r.body {
                        Body::Environment(b) => b.measurements.get("pm25").copied(),
                        _ => None,
                    }
                })
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        let midday = mean_pm25(12);
        assert!(mean_pm25(7) > 1.3 * midday);
        assert!(mean_pm25(1) > 1.3 * midday);
    }
}

/// Messages per device against the registry a receiver registers.
#[cfg(test)]
mod rate_tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fleet::DeviceRole;

    /// 2026-11-28T00:00:00+07:00, on a 5-minute boundary.
    const MIDNIGHT_LOCAL: u64 = 1_795_798_800_000;
    const WINDOW_MS: u64 = 300_000;

    /// What a role's devices sent over a run, against their registered intervals.
    #[derive(Debug, Default)]
    struct Sent {
        devices: usize,
        /// Messages sent over messages the registry expects, mean over the devices.
        ratio: f64,
        /// The largest difference, in messages, between what a device sent and what its
        /// interval makes.
        worst_miss: f64,
        /// Device health completeness, mean over devices and 5-minute windows, %.
        completeness: f64,
        /// Share of device windows under 100 %.
        short: f64,
    }

    fn role(r: &DeviceRole) -> &'static str {
        match r {
            DeviceRole::Junction { .. } => "junction",
            DeviceRole::TrafficCamera => "traffic_camera",
            DeviceRole::HarbourCamera => "harbour_camera",
            DeviceRole::AirStation => "air",
            DeviceRole::WaterStation { .. } => "water",
            DeviceRole::Bridge { .. } => "bridge",
            DeviceRole::RainGauge => "rain",
            DeviceRole::FloodGauge => "flood",
            DeviceRole::RiverGauge(_) => "river",
        }
    }

    /// Counts `hours` of the stream of `cfg` per device and 5-minute window and compares them
    /// with `registry`'s intervals, computing completeness as ioc-dataflow's device health
    /// does: readings / (window ÷ interval), at most 100 %.
    fn measure(
        cfg: &SimulatorConfig,
        registry: &[ioc_schemas::Device],
        hours: u64,
    ) -> BTreeMap<&'static str, Sent> {
        let interval: BTreeMap<&str, u32> = registry
            .iter()
            .map(|d| (d.id.as_str(), d.expected_interval_s))
            .collect();
        let mut g =
            Generator::new(Fleet::da_nang(cfg.seed), cfg.seed, cfg, MIDNIGHT_LOCAL).unwrap();
        let span = hours * 3_600_000;
        let windows = span / WINDOW_MS;
        let mut times: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for m in g.take_until(MIDNIGHT_LOCAL + span) {
            let r = m.reading().unwrap();
            times.entry(r.device_id).or_default().push(r.event_time.0);
        }
        let mut out: BTreeMap<&'static str, Sent> = BTreeMap::new();
        for d in &g.fleet().devices {
            let interval_ms = u64::from(interval[d.id.as_str()]) * 1000;
            let t = times.remove(&d.id).unwrap_or_default();
            let sent = t.len() as f64;
            let declared = span as f64 / interval_ms as f64;
            let pct: Vec<f64> = (1..=windows)
                .map(|w| MIDNIGHT_LOCAL + w * WINDOW_MS)
                // Before its first interval has passed a device may not have reported yet.
                .filter(|end| interval_ms <= WINDOW_MS || *end >= MIDNIGHT_LOCAL + interval_ms)
                .map(|end| completeness(&t, interval_ms, end))
                .collect();
            let e = out.entry(role(&d.role)).or_default();
            e.devices += 1;
            e.ratio += sent / declared;
            e.worst_miss = e.worst_miss.max((sent - declared).abs());
            let counted = pct.len() as f64;
            e.completeness += pct.iter().sum::<f64>() / counted;
            e.short += pct.iter().filter(|p| **p < 100.0).count() as f64 / counted;
        }
        for e in out.values_mut() {
            let n = e.devices as f64;
            (e.ratio, e.completeness, e.short) = (e.ratio / n, e.completeness / n, e.short / n);
        }
        out
    }

    /// A device's completeness in the 5-minute window ending at `end`, as ioc-dataflow's
    /// device health computes it from the event times `t` of its readings: readings /
    /// (window ÷ interval), at most 100 %; a device reporting less than once a window counts
    /// 100 % while online (heard from within 3 intervals).
    fn completeness(t: &[u64], interval_ms: u64, end: u64) -> f64 {
        if interval_ms > WINDOW_MS {
            let online = t.iter().any(|x| *x < end && end - x <= 3 * interval_ms);
            return if online { 100.0 } else { 0.0 };
        }
        let n = t
            .iter()
            .filter(|x| (end - WINDOW_MS..end).contains(*x))
            .count();
        let expected = WINDOW_MS / interval_ms;
        (n as f64 * 100.0 / expected as f64).min(100.0)
    }

    fn intervals(registry: &[ioc_schemas::Device]) -> BTreeMap<String, u32> {
        registry
            .iter()
            .map(|d| (d.id.clone(), d.expected_interval_s))
            .collect()
    }

    /// The devices whose intervals differ: (id, in `a`, in `b`).
    fn differences(
        a: &[ioc_schemas::Device],
        b: &[ioc_schemas::Device],
    ) -> Vec<(String, Option<u32>, Option<u32>)> {
        let (a, b) = (intervals(a), intervals(b));
        let mut ids: Vec<&String> = a.keys().chain(b.keys()).collect();
        ids.sort();
        ids.dedup();
        ids.into_iter()
            .filter(|id| a.get(*id) != b.get(*id))
            .map(|id| (id.clone(), a.get(id).copied(), b.get(id).copied()))
            .collect()
    }

    /// Periodic devices send one message per registered interval; cameras, reporting at
    /// random, about 1.16 (a heartbeat ends a quiet spell of two intervals).
    fn check_sent(sent: &BTreeMap<&'static str, Sent>) {
        // Shown with `--nocapture`.
        for (role, s) in sent {
            eprintln!(
                "{role:>14}: {:3} devices, sent {:.3} × the registry's count, completeness \
                 {:.2} % ({:.1} % of windows short)",
                s.devices,
                s.ratio,
                s.completeness,
                s.short * 100.0
            );
        }
        assert_eq!(sent.len(), 9, "{sent:#?}");
        for (role, s) in sent {
            if role.ends_with("camera") {
                assert!((1.1..1.22).contains(&s.ratio), "{role}: {s:?}");
            } else {
                // Each device sends its interval's worth, give or take the last message.
                assert!(s.worst_miss <= 1.0, "{role}: {s:?}");
                assert_eq!(s.completeness, 100.0, "{role}: {s:?}");
            }
        }
        // A camera's 5-minute count falls short now and then; a harbour camera, expected
        // twice a window, more often.
        let cameras = &sent["traffic_camera"];
        assert!(cameras.completeness > 97.0, "{cameras:?}");
        let harbour = &sent["harbour_camera"];
        assert!(harbour.completeness > 88.0, "{harbour:?}");
    }

    #[test]
    fn at_the_default_rate_devices_send_at_the_checked_in_registrys_intervals() {
        let cfg = SimulatorConfig {
            episodes: crate::EpisodesConfig::none(),
            ..SimulatorConfig::default()
        };
        assert!(cfg.real_time && cfg.rate_per_s == 200.0);
        // The demo registers the checked-in registry: it declares what the fleet sends.
        let checked_in: Vec<ioc_schemas::Device> =
            ioc_schemas::parse_fleet(crate::DA_NANG_FLEET_JSON)
                .unwrap()
                .into_values()
                .collect();
        assert_eq!(differences(&cfg.registry(), &checked_in), []);
        // Before the rate became a ceiling the fleet sent 7.3 × its registered intervals
        // (cameras 8.4 ×, bridges 36 ×) and every device's completeness was 100 %.
        check_sent(&measure(&cfg, &checked_in, 2));
    }

    #[test]
    fn a_ceiling_below_the_natural_rate_stretches_the_intervals_it_declares() {
        let cfg = SimulatorConfig {
            rate_per_s: 10.0,
            episodes: crate::EpisodesConfig::none(),
            ..SimulatorConfig::default()
        };
        let registry = cfg.registry();
        let g = Generator::new(Fleet::da_nang(cfg.seed), cfg.seed, &cfg, MIDNIGHT_LOCAL).unwrap();
        assert_eq!(differences(&g.fleet().registry(), &registry), []);
        // About 27.5 / 10 = 2.75 times the natural intervals, rounded up to whole seconds.
        let natural = Fleet::da_nang(cfg.seed);
        let stretch = natural.natural_rate_per_s() / 10.0;
        assert!((2.7..2.8).contains(&stretch), "{stretch}");
        let stretched = intervals(&registry);
        for d in &natural.devices {
            let s = stretched[&d.id];
            assert_eq!(
                s,
                (f64::from(d.interval_s) * stretch).ceil() as u32,
                "{}",
                d.id
            );
        }
        assert!((82..=84).contains(&stretched["tsc-hai_chau-001"]));
        assert_eq!(stretched["bridge-rong"], 6);
        let rate = g.fleet().natural_rate_per_s();
        assert!((9.5..=10.0).contains(&rate), "{rate}");
        check_sent(&measure(&cfg, &registry, 2));
        // Not in real time the rate paces the replay and the intervals stay.
        let replay = SimulatorConfig {
            real_time: false,
            ..cfg
        };
        assert_eq!(
            differences(&replay.registry(), &Fleet::da_nang(42).registry()),
            []
        );
        assert!(SimulatorConfig {
            rate_per_s: 0.5,
            ..SimulatorConfig::default()
        }
        .validate()
        .is_err());
        assert!(replay.validate().is_ok());
    }

    #[test]
    fn in_the_demo_a_silenced_device_shows_its_silence_in_completeness() {
        let cfg = SimulatorConfig::default();
        let mut g =
            Generator::new(Fleet::da_nang(cfg.seed), cfg.seed, &cfg, MIDNIGHT_LOCAL).unwrap();
        let end = MIDNIGHT_LOCAL + 45 * 60_000;
        let mut times: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for m in g.take_until(end) {
            let r = m.reading().unwrap();
            times.entry(r.device_id).or_default().push(r.event_time.0);
        }
        let windows = g.episode_windows(end);
        let silence = windows
            .iter()
            .find(|w| w.kind == crate::EpisodeKind::Silence)
            .unwrap();
        // From minute 20 to 40: the windows ending at minutes 25 to 40.
        assert_eq!(
            (silence.from_ms, silence.to_ms),
            (
                MIDNIGHT_LOCAL + 20 * 60_000,
                Some(MIDNIGHT_LOCAL + 40 * 60_000)
            )
        );
        let in_episode: Vec<&String> = windows.iter().flat_map(|w| &w.devices).collect();
        let minute = |m: u64| MIDNIGHT_LOCAL + m * 60_000;
        let (mut silenced, mut healthy) = (0, 0);
        for d in &g.fleet().devices {
            let interval_ms = u64::from(d.interval_s) * 1000;
            let t = times.get(&d.id).map(Vec::as_slice).unwrap_or_default();
            let pct = |m: u64| completeness(t, interval_ms, minute(m));
            if silence.devices.contains(&d.id) {
                silenced += 1;
                for m in [25, 30, 35, 40] {
                    assert_eq!(pct(m), 0.0, "{} at minute {m}", d.id);
                }
                if !d.role.is_event_driven() {
                    for m in [5, 10, 15, 20] {
                        assert_eq!(pct(m), 100.0, "{} at minute {m}", d.id);
                    }
                    // Back within one interval.
                    assert!(pct(45) >= 75.0, "{} at minute 45: {}", d.id, pct(45));
                }
            } else if !d.role.is_event_driven() && !in_episode.contains(&&d.id) {
                healthy += 1;
                for m in (5..=45).step_by(5) {
                    assert_eq!(pct(m), 100.0, "{} at minute {m}", d.id);
                }
            }
        }
        assert!(
            silenced >= 3 && healthy > 200,
            "{silenced} silenced, {healthy} healthy"
        );
    }
}
