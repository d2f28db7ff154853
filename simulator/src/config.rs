//! The simulator's configuration.

use serde::{Deserialize, Serialize};

use crate::episodes::EpisodesConfig;
use crate::error::SimulatorError;
use crate::fleet::Fleet;

/// How the simulator generates and publishes readings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Seed of the fleet's placement and of the reading stream; the same seed and start
    /// time give the same messages.
    pub seed: u64,
    /// Messages per second for the whole fleet. In real-time mode a ceiling (at least 1):
    /// the devices send at their registry intervals (Da Nang's fleet about 27.5 messages a
    /// second), and only a ceiling below that stretches every interval by one factor, which
    /// the fleet's registry then declares ([`SimulatorConfig::registry`]). Otherwise the
    /// pace of the replay: exactly this many messages per wall second. Default 200.
    pub rate_per_s: f64,
    /// When true (the demo), event times follow the wall clock and devices send at their
    /// registry intervals, with `rate_per_s` as a ceiling. When false, simulated time starts
    /// at `start_ms` and runs at `rate_per_s / natural fleet rate` × wall speed, with the
    /// registry intervals (load tests and replays).
    pub real_time: bool,
    /// Simulated start time (epoch ms) when `real_time` is false; `None` starts at the wall
    /// clock. Ignored when `real_time` is true. Faster than real time, event times soon run
    /// ahead of the wall clock and a receiver rejects them as future: replay a past period
    /// for long runs.
    pub start_ms: Option<u64>,
    /// Share of messages (0–1) replaced by a malformed one, cycling through the kinds of
    /// breakage.
    pub malformed_share: f64,
    /// Share of messages (0–1) held back and emitted later with their original event time.
    pub out_of_order_share: f64,
    /// The most an out-of-order message lags behind the simulated clock, ms.
    pub out_of_order_max_delay_ms: u64,
    /// Share of messages (0–1) that are re-sends of an earlier message (same id and payload).
    pub duplicate_share: f64,
    /// Stop after this many messages; `None` runs until shut down.
    pub max_messages: Option<u64>,
    /// The MQTT client id.
    pub client_id: String,
    /// Capacity of the bounded request channel into the MQTT event loop; publishing waits
    /// when it is full (backpressure, nothing is dropped).
    pub channel_capacity: usize,
    /// QoS 1 publishes that may await their PUBACK at once.
    pub max_inflight: u16,
    /// First wait before reconnecting after a connection error, ms; doubled per failure.
    pub reconnect_backoff_initial_ms: u64,
    /// Longest wait between reconnection attempts, ms.
    pub reconnect_backoff_max_ms: u64,
    /// How long to wait for outstanding PUBACKs once publishing has stopped, ms.
    pub drain_timeout_ms: u64,
    /// Scripted episodes in simulated time from the start (jammed junctions, a pollution
    /// episode, a flood, a junction fault, silent devices, a crowd), so every KPI has
    /// something to show within the first hour of a demo. Default: all on, see
    /// [`EpisodesConfig`].
    pub episodes: EpisodesConfig,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            seed: 42,
            rate_per_s: 200.0,
            real_time: true,
            start_ms: None,
            malformed_share: 0.0,
            out_of_order_share: 0.0,
            out_of_order_max_delay_ms: 10_000,
            duplicate_share: 0.0,
            max_messages: None,
            client_id: "ioc-simulator".to_owned(),
            channel_capacity: 1024,
            max_inflight: 100,
            reconnect_backoff_initial_ms: 100,
            reconnect_backoff_max_ms: 5_000,
            drain_timeout_ms: 30_000,
            episodes: EpisodesConfig::default(),
        }
    }
}

impl SimulatorConfig {
    /// Checks ranges and that the shares leave room for valid messages.
    pub fn validate(&self) -> Result<(), SimulatorError> {
        let bad = |m: String| Err(SimulatorError::InvalidConfig(m));
        if !(self.rate_per_s.is_finite() && self.rate_per_s > 0.0) {
            return bad(format!(
                "rate_per_s must be positive, got {}",
                self.rate_per_s
            ));
        }
        if self.real_time && self.rate_per_s < 1.0 {
            // Below 1, stretched intervals would run past what a registry may declare.
            return bad(format!(
                "rate_per_s caps the fleet's messages per second in real-time mode and must be at least 1, got {}",
                self.rate_per_s
            ));
        }
        for (name, v) in [
            ("malformed_share", self.malformed_share),
            ("out_of_order_share", self.out_of_order_share),
            ("duplicate_share", self.duplicate_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("{name} must be within 0 to 1, got {v}"));
            }
        }
        let sum = self.malformed_share + self.out_of_order_share + self.duplicate_share;
        // A duplicate copies a valid message, so some must remain when duplicates are asked.
        if sum > 1.0 || (self.duplicate_share > 0.0 && sum >= 1.0) {
            return bad(format!(
                "malformed_share + out_of_order_share + duplicate_share must leave room for valid messages, got {sum}"
            ));
        }
        if self.out_of_order_share > 0.0 && self.out_of_order_max_delay_ms == 0 {
            return bad(
                "out_of_order_max_delay_ms must be positive when out_of_order_share is".into(),
            );
        }
        if self.client_id.is_empty() {
            return bad("client_id must not be empty".into());
        }
        if self.channel_capacity == 0 || self.max_inflight == 0 {
            return bad("channel_capacity and max_inflight must be positive".into());
        }
        if self.reconnect_backoff_initial_ms == 0
            || self.reconnect_backoff_max_ms < self.reconnect_backoff_initial_ms
        {
            return bad(
                "reconnect_backoff_initial_ms must be positive and at most reconnect_backoff_max_ms"
                    .into(),
            );
        }
        self.episodes
            .validate()
            .map_err(SimulatorError::InvalidConfig)
    }
}

impl SimulatorConfig {
    /// The registry of the fleet this config publishes (`Fleet::da_nang(seed)`), with the
    /// intervals it actually sends at ([`Fleet::paced`]). In real-time mode at a
    /// `rate_per_s` of at least the fleet's natural rate (the default 200 is), its intervals
    /// are those of the checked-in `simulator/registry/da_nang.json` (which holds seed 42's
    /// positions); a lower ceiling stretches them, and a demo must then register these.
    pub fn registry(&self) -> Vec<ioc_schemas::Device> {
        Fleet::da_nang(self.seed)
            .paced(self.real_time, self.rate_per_s)
            .registry()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_partial_json() {
        let c: SimulatorConfig = serde_json::from_str(r#"{"rate_per_s": 50.0}"#).unwrap();
        assert_eq!(c.rate_per_s, 50.0);
        assert_eq!(c.seed, 42);
        assert!(c.real_time);
        assert_eq!(c.out_of_order_max_delay_ms, 10_000);
        assert_eq!(c.client_id, "ioc-simulator");
        assert!(c.validate().is_ok());
        assert!(serde_json::from_str::<SimulatorConfig>(r#"{"rate": 5}"#).is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = SimulatorConfig {
            rate_per_s: 0.0,
            ..SimulatorConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("rate_per_s"));
        c.rate_per_s = 10.0;
        c.malformed_share = 1.5;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("malformed_share"));
        c.malformed_share = 0.5;
        c.duplicate_share = 0.5;
        assert!(c.validate().is_err());
        c.duplicate_share = 0.2;
        assert!(c.validate().is_ok());
        c.episodes.flood.rise_m_per_h = 0.0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("episodes.flood.rise_m_per_h"), "{e}");
        c.episodes = EpisodesConfig::default();
        // In real time the rate caps the fleet, and a cap under 1 a second is refused.
        c.rate_per_s = 0.5;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("rate_per_s") && e.contains("at least 1"), "{e}");
        c.real_time = false;
        assert!(c.validate().is_ok(), "a slow replay is fine");
    }

    #[test]
    fn episodes_take_partial_json_and_refuse_unknown_keys() {
        let c: SimulatorConfig = serde_json::from_str(
            r#"{"episodes": {"pollution": {"district": "lien_chieu", "peak_pm25_ugm3": 150.0},
                "junction_fault": {"state": "off"}, "silence": {"enabled": false},
                "crowd": {"cameras": ["harbour-cam-07"], "crowd_size": 1500}}}"#,
        )
        .unwrap();
        assert!(c.validate().is_ok());
        let e = &c.episodes;
        assert!(e.enabled && e.congestion.enabled && !e.silence.enabled);
        assert_eq!(e.pollution.district, ioc_schemas::District::LienChieu);
        assert_eq!(e.pollution.peak_pm25_ugm3, 150.0);
        assert_eq!(e.pollution.rise_s, 1200, "unset fields keep their default");
        assert_eq!(e.junction_fault.state, ioc_schemas::SignalState::Off);
        assert_eq!(e.junction_fault.junctions, ["tsc-thanh_khe-005"]);
        assert!(e.crowd.enabled);
        assert_eq!(e.crowd.cameras, ["harbour-cam-07"]);
        assert_eq!((e.crowd.crowd_size, e.crowd.start_s), (1500, 2400));
        assert_eq!(
            SimulatorConfig::default().episodes,
            EpisodesConfig::default()
        );
        assert!(serde_json::from_str::<SimulatorConfig>(r#"{"episodes": {"flod": {}}}"#).is_err());
        assert!(
            serde_json::from_str::<SimulatorConfig>(r#"{"episodes": {"flood": {"rain": 3}}}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<SimulatorConfig>(
            r#"{"episodes": {"crowd": {"people": 300}}}"#
        )
        .is_err());
        // Serialised and read back, the config is the same (figment does this with defaults).
        let json = serde_json::to_string(&SimulatorConfig::default()).unwrap();
        let back: SimulatorConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, SimulatorConfig::default());
    }
}
