//! Scripted episodes: jammed junctions, a pollution episode, a flood, a junction fault, silent
//! devices and a crowd, timed in simulated event time from the start of the run so that every
//! city KPI has something to show within the first hour of `iocd demo`.
//!
//! Every episode has a start (`start_s` after the simulation start), a length and an optional
//! repeat period (`every_s`, 0 plays it once). Which devices take part is fixed when the
//! generator is built: listed ids, a district's devices, or (for silence) a share of the
//! fleet picked by the seed.

use ioc_schemas::{District, SignalState};
use serde::{Deserialize, Serialize};

use crate::fleet::{DeviceRole, Fleet};
use crate::rng::Rng;

const MINUTE_S: u64 = 60;
const HOUR_S: u64 = 3_600;

/// The scripted episodes of a run (`[simulator.episodes]`). Each can be switched off on its
/// own; `enabled = false` here switches them all off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EpisodesConfig {
    /// Master switch: false plays no episode, whatever the sections below say. Default true.
    pub enabled: bool,
    /// Junctions jammed from the start of the run (level of service F at any hour).
    pub congestion: CongestionEpisode,
    /// PM2.5 and PM10 at one district's air stations rising into the Bad AQI band.
    pub pollution: PollutionEpisode,
    /// A downpour over one district's rain gauges that raises its flood gauges.
    pub flood: FloodEpisode,
    /// Junctions whose controllers fail (flashing or dark, with a fault code).
    pub junction_fault: JunctionFaultEpisode,
    /// Devices that stop reporting for a while, long enough to be taken as offline.
    pub silence: SilenceEpisode,
    /// A crowd at the cameras by the Dragon Bridge (Cầu Rồng), as on show nights.
    pub crowd: CrowdEpisode,
}

/// Jammed junctions: every approach at about `speed_kmh`, occupancy over 80 % and queues of
/// several hundred metres.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CongestionEpisode {
    /// Whether the episode plays. Default true.
    pub enabled: bool,
    /// The jammed junctions' ids. Default the first four junctions of Hải Châu
    /// (`tsc-hai_chau-001` to `tsc-hai_chau-004`).
    pub junctions: Vec<String>,
    /// When the jam starts, seconds after the simulation start. Default 0: jammed from the
    /// first report.
    pub start_s: u64,
    /// How long each jam lasts, s; 0 keeps it for the whole run. Default 0.
    pub duration_s: u64,
    /// Seconds from one jam's start to the next; 0 plays it once. Must be 0 when
    /// `duration_s` is. Default 0.
    pub every_s: u64,
    /// Mean speed on the jammed approaches, km/h (level F is below 15). Default 10.
    pub speed_kmh: f64,
}

/// A pollution episode: PM2.5 rises from its normal level (about 20 µg/m³) through the
/// Moderate and Poor bands to about `peak_pm25_ugm3` (Bad), holds, then falls back; PM10
/// follows at 1.5–1.9 × PM2.5.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PollutionEpisode {
    /// Whether the episode plays. Default true.
    pub enabled: bool,
    /// The district whose air stations are polluted, when `stations` is empty. Default
    /// `cam_le` (Ngã ba Phạm Hùng – QL1A and Hòa Thọ Đông).
    pub district: District,
    /// Explicit air station ids; when not empty, used instead of `district`. Default empty.
    pub stations: Vec<String>,
    /// When the rise starts, seconds after the simulation start. Default 300 (5 min).
    pub start_s: u64,
    /// How long PM2.5 takes to climb to its peak, s. Default 1200 (20 min).
    pub rise_s: u64,
    /// How long the peak holds, s. Default 5400 (90 min), so a whole clock hour is Bad.
    pub hold_s: u64,
    /// How long PM2.5 takes to fall back to normal, s. Default 1800 (30 min).
    pub fall_s: u64,
    /// Seconds from one episode's start to the next; 0 plays it once. At least
    /// `rise_s + hold_s + fall_s` when not 0. Default 14400 (every 4 h).
    pub every_s: u64,
    /// PM2.5 at the peak, µg/m³ (VN_AQI Bad is 80–150); readings scatter about ±20 % around
    /// it. Default 130.
    pub peak_pm25_ugm3: f64,
}

/// A flood: heavy rain over one district's rain gauges for `rain_s`, while its flood gauges'
/// water level rises by `rise_m_per_h`; afterwards the rain stops and the level falls back
/// over `recede_s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FloodEpisode {
    /// Whether the episode plays. Default true.
    pub enabled: bool,
    /// The district that floods, when the gauge lists are empty. Default `hoa_vang` (six rain
    /// gauges and two flood gauges).
    pub district: District,
    /// Explicit rain gauge ids; when not empty, used instead of the district's. Default empty.
    pub rain_gauges: Vec<String>,
    /// Explicit flood gauge ids; when not empty, used instead of the district's. Default
    /// empty.
    pub flood_gauges: Vec<String>,
    /// When the rain starts, seconds after the simulation start. Default 600 (10 min).
    pub start_s: u64,
    /// How long the heavy rain lasts, s. Default 5400 (90 min).
    pub rain_s: u64,
    /// How long the water takes to fall back once the rain stops, s. Default 7200 (2 h).
    pub recede_s: u64,
    /// Seconds from one flood's start to the next; 0 plays it once. At least
    /// `rain_s + recede_s` when not 0. Default 21600 (every 6 h).
    pub every_s: u64,
    /// Mean rain intensity over the gauges, mm/h; each gauge gets 0.7–1.3 × this.
    /// Default 45 (30–60 mm/h).
    pub rain_mm_h: f64,
    /// How fast the water level rises while it rains, m/h. Default 0.45.
    pub rise_m_per_h: f64,
}

/// Junction controllers that fail: they report `state` with `fault_code` for `duration_s`,
/// then run their plan again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct JunctionFaultEpisode {
    /// Whether the episode plays. Default true.
    pub enabled: bool,
    /// The failing junctions' ids. Default `tsc-thanh_khe-005`.
    pub junctions: Vec<String>,
    /// What the signals show while faulted: `flashing` or `off`. Default `flashing`.
    pub state: SignalState,
    /// The fault code reported while faulted. Default `controller_fault`.
    pub fault_code: String,
    /// When the fault starts, seconds after the simulation start. Default 900 (15 min).
    pub start_s: u64,
    /// How long each fault lasts, s. Default 600 (10 min).
    pub duration_s: u64,
    /// Seconds from one fault's start to the next; 0 plays it once. At least `duration_s`
    /// when not 0. Default 3600 (every hour).
    pub every_s: u64,
}

/// Devices that stop reporting (no message at all) for `duration_s`, then resume. The
/// registry's offline rule is 3 × the expected interval (60 s for rain, flood and air
/// stations, 300 s for water stations), so the default 20 minutes takes any device offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SilenceEpisode {
    /// Whether the episode plays. Default true.
    pub enabled: bool,
    /// Ids of devices that fall silent. Default `rain-son_tra-01`, `flood-lien_chieu-01` and
    /// `aq-thanh_khe`.
    pub devices: Vec<String>,
    /// Share (0–1) of the other devices that fall silent too, picked by the seed among those
    /// in no other episode. Default 0.01 (about five devices).
    pub share: f64,
    /// When the silence starts, seconds after the simulation start. Default 1200 (20 min).
    pub start_s: u64,
    /// How long each silence lasts, s. Default 1200 (20 min).
    pub duration_s: u64,
    /// Seconds from one silence's start to the next; 0 plays it once. More than
    /// `duration_s` when not 0. Default 3600 (every hour).
    pub every_s: u64,
}

/// A crowd gathers in view of some cameras (as it does on both banks of the Hàn by the Dragon
/// Bridge for its weekend fire-and-water show at 21:00): while it lasts each of them reports a
/// `crowd_gathering` detection with the people it counts at its first event of the episode and
/// again at its first event a minute or more after its previous one, so the `crowd_gathering`
/// alert opens for each and stays open; after the episode they report none and it clears.
/// Outside an episode a camera reports a crowd only rarely (a few a day over the whole fleet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CrowdEpisode {
    /// Whether the episode plays. Default true.
    pub enabled: bool,
    /// The cameras (traffic or harbour) that see the crowd. Default the traffic cameras
    /// nearest the Dragon Bridge in the checked-in registry: `cam-hai_chau-039`,
    /// `cam-hai_chau-021` and `cam-hai_chau-028` on the Hải Châu bank, `cam-son_tra-017`
    /// and `cam-son_tra-027` on the Sơn Trà bank (0.6 to 1.3 km from the bridge).
    pub cameras: Vec<String>,
    /// When the crowd gathers, seconds after the simulation start. Default 2400 (40 min, as
    /// the silence ends).
    pub start_s: u64,
    /// How long each crowd stays, s. Default 900 (15 min, as long as a show).
    pub duration_s: u64,
    /// Seconds from one crowd's start to the next; 0 plays it once. At least `duration_s`
    /// when not 0. Default 7200 (every 2 h).
    pub every_s: u64,
    /// People each camera counts in the crowd once it has gathered (over the first third of
    /// the episode it grows from about half that); each detection reports 0.85–1.15 × the
    /// crowd of the moment. 2 to 100 000. Default 400.
    pub crowd_size: u32,
}

impl Default for EpisodesConfig {
    fn default() -> Self {
        EpisodesConfig {
            enabled: true,
            congestion: CongestionEpisode::default(),
            pollution: PollutionEpisode::default(),
            flood: FloodEpisode::default(),
            junction_fault: JunctionFaultEpisode::default(),
            silence: SilenceEpisode::default(),
            crowd: CrowdEpisode::default(),
        }
    }
}

impl Default for CongestionEpisode {
    fn default() -> Self {
        CongestionEpisode {
            enabled: true,
            junctions: (1..=4).map(|i| format!("tsc-hai_chau-{i:03}")).collect(),
            start_s: 0,
            duration_s: 0,
            every_s: 0,
            speed_kmh: 10.0,
        }
    }
}

impl Default for PollutionEpisode {
    fn default() -> Self {
        PollutionEpisode {
            enabled: true,
            district: District::CamLe,
            stations: Vec::new(),
            start_s: 5 * MINUTE_S,
            rise_s: 20 * MINUTE_S,
            hold_s: 90 * MINUTE_S,
            fall_s: 30 * MINUTE_S,
            every_s: 4 * HOUR_S,
            peak_pm25_ugm3: 130.0,
        }
    }
}

impl Default for FloodEpisode {
    fn default() -> Self {
        FloodEpisode {
            enabled: true,
            district: District::HoaVang,
            rain_gauges: Vec::new(),
            flood_gauges: Vec::new(),
            start_s: 10 * MINUTE_S,
            rain_s: 90 * MINUTE_S,
            recede_s: 2 * HOUR_S,
            every_s: 6 * HOUR_S,
            rain_mm_h: 45.0,
            rise_m_per_h: 0.45,
        }
    }
}

impl Default for JunctionFaultEpisode {
    fn default() -> Self {
        JunctionFaultEpisode {
            enabled: true,
            junctions: vec!["tsc-thanh_khe-005".to_owned()],
            state: SignalState::Flashing,
            fault_code: "controller_fault".to_owned(),
            start_s: 15 * MINUTE_S,
            duration_s: 10 * MINUTE_S,
            every_s: HOUR_S,
        }
    }
}

impl Default for SilenceEpisode {
    fn default() -> Self {
        SilenceEpisode {
            enabled: true,
            devices: vec![
                "rain-son_tra-01".to_owned(),
                "flood-lien_chieu-01".to_owned(),
                "aq-thanh_khe".to_owned(),
            ],
            share: 0.01,
            start_s: 20 * MINUTE_S,
            duration_s: 20 * MINUTE_S,
            every_s: HOUR_S,
        }
    }
}

impl Default for CrowdEpisode {
    fn default() -> Self {
        CrowdEpisode {
            enabled: true,
            cameras: [
                "cam-hai_chau-039",
                "cam-hai_chau-021",
                "cam-hai_chau-028",
                "cam-son_tra-017",
                "cam-son_tra-027",
            ]
            .map(str::to_owned)
            .to_vec(),
            start_s: 40 * MINUTE_S,
            duration_s: 15 * MINUTE_S,
            every_s: 2 * HOUR_S,
            crowd_size: 400,
        }
    }
}

impl EpisodesConfig {
    /// No episode at all: the plain daily patterns.
    pub fn none() -> EpisodesConfig {
        EpisodesConfig {
            enabled: false,
            ..EpisodesConfig::default()
        }
    }

    /// Only the episodes switched on in `self` that `keep` names, for tests that want one
    /// episode alone.
    pub fn only(mut self, keep: &[EpisodeKind]) -> EpisodesConfig {
        self.congestion.enabled &= keep.contains(&EpisodeKind::Congestion);
        self.pollution.enabled &= keep.contains(&EpisodeKind::Pollution);
        self.flood.enabled &= keep.contains(&EpisodeKind::Flood);
        self.junction_fault.enabled &= keep.contains(&EpisodeKind::JunctionFault);
        self.silence.enabled &= keep.contains(&EpisodeKind::Silence);
        self.crowd.enabled &= keep.contains(&EpisodeKind::Crowd);
        self
    }

    /// Checks timings, values and device ids (against Da Nang's fleet, whose ids do not
    /// depend on the seed). The message names the field, as `episodes.<episode>.<field>`.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let fleet = Fleet::da_nang(0);
        let role_of = |id: &str| fleet.device(id).map(|d| &d.role);
        let check_ids = |field: &str, ids: &[String], what: &str, ok: fn(&DeviceRole) -> bool| {
            for id in ids {
                match role_of(id) {
                    None => return Err(format!("{field} names `{id}`, which is no device")),
                    Some(role) if !ok(role) => {
                        return Err(format!("{field} names `{id}`, which is not {what}"))
                    }
                    Some(_) => {}
                }
            }
            Ok(())
        };
        let is_junction = |r: &DeviceRole| matches!(r, DeviceRole::Junction { .. });

        let c = &self.congestion;
        let p = "episodes.congestion";
        check_ids(
            &format!("{p}.junctions"),
            &c.junctions,
            "a junction",
            is_junction,
        )?;
        timing(p, "duration_s", c.duration_s, c.every_s, true)?;
        in_range(&format!("{p}.speed_kmh"), c.speed_kmh, 3.0, 50.0)?;

        let po = &self.pollution;
        let p = "episodes.pollution";
        check_ids(
            &format!("{p}.stations"),
            &po.stations,
            "an air station",
            |r| *r == DeviceRole::AirStation,
        )?;
        for (name, v) in [("rise_s", po.rise_s), ("hold_s", po.hold_s)] {
            if v == 0 {
                return Err(format!("{p}.{name} must be positive"));
            }
        }
        let total = po
            .rise_s
            .saturating_add(po.hold_s)
            .saturating_add(po.fall_s);
        timing(p, "rise_s + hold_s + fall_s", total, po.every_s, false)?;
        in_range(
            &format!("{p}.peak_pm25_ugm3"),
            po.peak_pm25_ugm3,
            1.0,
            800.0,
        )?;

        let f = &self.flood;
        let p = "episodes.flood";
        check_ids(
            &format!("{p}.rain_gauges"),
            &f.rain_gauges,
            "a rain gauge",
            |r| *r == DeviceRole::RainGauge,
        )?;
        check_ids(
            &format!("{p}.flood_gauges"),
            &f.flood_gauges,
            "a flood gauge",
            |r| *r == DeviceRole::FloodGauge,
        )?;
        if f.rain_s == 0 {
            return Err(format!("{p}.rain_s must be positive"));
        }
        let total = f.rain_s.saturating_add(f.recede_s);
        timing(p, "rain_s + recede_s", total, f.every_s, false)?;
        in_range(&format!("{p}.rain_mm_h"), f.rain_mm_h, 0.5, 200.0)?;
        in_range(&format!("{p}.rise_m_per_h"), f.rise_m_per_h, 0.0, 5.0)?;

        let j = &self.junction_fault;
        let p = "episodes.junction_fault";
        check_ids(
            &format!("{p}.junctions"),
            &j.junctions,
            "a junction",
            is_junction,
        )?;
        if !matches!(j.state, SignalState::Flashing | SignalState::Off) {
            return Err(format!(
                "{p}.state must be flashing or off, got {}",
                serde_json::to_string(&j.state).unwrap_or_default()
            ));
        }
        if j.fault_code.is_empty() || j.fault_code.len() > 64 {
            return Err(format!("{p}.fault_code must be 1 to 64 bytes long"));
        }
        timing(p, "duration_s", j.duration_s, j.every_s, false)?;

        let s = &self.silence;
        let p = "episodes.silence";
        check_ids(&format!("{p}.devices"), &s.devices, "a device", |_| true)?;
        if !(0.0..=1.0).contains(&s.share) {
            return Err(format!("{p}.share must be within 0 to 1, got {}", s.share));
        }
        timing(p, "duration_s", s.duration_s, s.every_s, false)?;
        if s.every_s != 0 && s.every_s == s.duration_s {
            // Back-to-back silences would never let the devices report.
            return Err(format!(
                "{p}.every_s must be 0 or more than duration_s ({}), got {}",
                s.duration_s, s.every_s
            ));
        }

        let c = &self.crowd;
        let p = "episodes.crowd";
        check_ids(&format!("{p}.cameras"), &c.cameras, "a camera", |r| {
            matches!(r, DeviceRole::TrafficCamera | DeviceRole::HarbourCamera)
        })?;
        timing(p, "duration_s", c.duration_s, c.every_s, false)?;
        if !(2..=100_000).contains(&c.crowd_size) {
            return Err(format!(
                "{p}.crowd_size must be 2 to 100000 people, got {}",
                c.crowd_size
            ));
        }
        Ok(())
    }
}

/// Checks an episode's length against its repeat period.
fn timing(
    prefix: &str,
    len_name: &str,
    len_s: u64,
    every_s: u64,
    endless_ok: bool,
) -> Result<(), String> {
    if len_s == 0 {
        if !endless_ok {
            return Err(format!("{prefix}.{len_name} must be positive"));
        }
        if every_s != 0 {
            return Err(format!(
                "{prefix}.every_s must be 0 when {prefix}.{len_name} is 0 (an endless episode \
                 cannot repeat), got {every_s}"
            ));
        }
    } else if every_s != 0 && every_s < len_s {
        return Err(format!(
            "{prefix}.every_s must be 0 or at least {len_name} ({len_s}), got {every_s}"
        ));
    }
    Ok(())
}

fn in_range(field: &str, v: f64, lo: f64, hi: f64) -> Result<(), String> {
    if !v.is_finite() {
        Err(format!("{field} must be a finite number"))
    } else if (lo..=hi).contains(&v) && v > 0.0 {
        Ok(())
    } else {
        Err(format!(
            "{field} must be positive and within {lo} to {hi}, got {v}"
        ))
    }
}

/// Which episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EpisodeKind {
    /// Jammed junctions.
    Congestion,
    /// Polluted air stations.
    Pollution,
    /// Heavy rain and rising water.
    Flood,
    /// Failed junction controllers.
    JunctionFault,
    /// Silent devices.
    Silence,
    /// A crowd in view of cameras.
    Crowd,
}

impl EpisodeKind {
    /// A snake_case tag, as in the config section's name.
    pub fn as_str(self) -> &'static str {
        match self {
            EpisodeKind::Congestion => "congestion",
            EpisodeKind::Pollution => "pollution",
            EpisodeKind::Flood => "flood",
            EpisodeKind::JunctionFault => "junction_fault",
            EpisodeKind::Silence => "silence",
            EpisodeKind::Crowd => "crowd",
        }
    }
}

/// One occurrence of an episode, in event time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpisodeWindow {
    /// Which episode.
    pub kind: EpisodeKind,
    /// When it starts, epoch ms.
    pub from_ms: u64,
    /// When it ends (exclusive), epoch ms; `None` when it lasts for the whole run. A flood's
    /// rain stops `rain_s` after `from_ms`; the water is back at `to_ms`. A pollution
    /// episode holds its peak from `rise_s` to `rise_s + hold_s` after `from_ms`.
    pub to_ms: Option<u64>,
    /// The devices of the generator's fleet it affects, in fleet order (for a flood, rain
    /// gauges and flood gauges).
    pub devices: Vec<String>,
}

/// When an episode plays: relative to the simulation start, ms.
#[derive(Debug, Clone, Copy)]
struct Timing {
    start_ms: u64,
    /// 0: endless.
    len_ms: u64,
    /// 0: once.
    every_ms: u64,
}

impl Timing {
    fn new(start_s: u64, len_s: u64, every_s: u64) -> Timing {
        Timing {
            start_ms: start_s.saturating_mul(1000),
            len_ms: len_s.saturating_mul(1000),
            every_ms: every_s.saturating_mul(1000),
        }
    }

    /// Milliseconds into the occurrence covering `rel_ms` (ms since the simulation start).
    fn elapsed(self, rel_ms: u64) -> Option<u64> {
        let e = rel_ms.checked_sub(self.start_ms)?;
        let e = if self.every_ms > 0 {
            e % self.every_ms
        } else {
            e
        };
        (self.len_ms == 0 || e < self.len_ms).then_some(e)
    }

    /// Occurrences starting before `until_rel_ms`: (from, to) relative ms.
    fn occurrences(self, until_rel_ms: u64) -> Vec<(u64, Option<u64>)> {
        let mut out = Vec::new();
        let mut from = self.start_ms;
        while from < until_rel_ms {
            out.push((
                from,
                (self.len_ms > 0).then(|| from.saturating_add(self.len_ms)),
            ));
            if self.every_ms == 0 {
                break;
            }
            from = from.saturating_add(self.every_ms);
        }
        out
    }
}

/// The part each device plays, fixed when the generator is built.
#[derive(Debug, Clone, Copy, Default)]
struct Roles {
    jam: bool,
    polluted: bool,
    storm: bool,
    rising: bool,
    fault: bool,
    silent: bool,
    crowd: bool,
}

/// What the episodes do to one reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Effect {
    /// Mean speed of a jammed junction's approaches, km/h.
    pub(crate) jam_kmh: Option<f64>,
    /// A pollution episode: (how far on, 0–1; peak PM2.5 µg/m³).
    pub(crate) pollution: Option<(f64, f64)>,
    /// Storm rain over a gauge, mm/h (before the gauge's own spread).
    pub(crate) storm_mm_h: Option<f64>,
    /// How far a flood has raised the water, m.
    pub(crate) flood_rise_m: f64,
    /// A failed controller: what it shows and its fault code.
    pub(crate) fault: Option<(SignalState, String)>,
    /// A crowd in view of a camera: how many people it counts now (before the detection's
    /// own spread).
    pub(crate) crowd: Option<f64>,
}

/// The episodes compiled for one fleet and start time.
#[derive(Debug, Clone)]
pub(crate) struct EpisodePlan {
    cfg: EpisodesConfig,
    start_ms: u64,
    roles: Vec<Roles>,
    congestion: Timing,
    pollution: Timing,
    flood: Timing,
    fault: Timing,
    silence: Timing,
    crowd: Timing,
}

/// Smooth 0 → 1 over [0, 1].
fn smooth(t: f64) -> f64 {
    let t = t.clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

impl EpisodePlan {
    /// Assigns the devices of `fleet` to the episodes of `cfg` (assumed valid).
    pub(crate) fn new(cfg: &EpisodesConfig, fleet: &Fleet, seed: u64, start_ms: u64) -> Self {
        let mut roles = vec![Roles::default(); fleet.devices.len()];
        if cfg.enabled {
            let listed = |ids: &[String], id: &str| ids.iter().any(|x| x == id);
            for (r, d) in roles.iter_mut().zip(&fleet.devices) {
                let id = d.id.as_str();
                r.jam = cfg.congestion.enabled && listed(&cfg.congestion.junctions, id);
                let p = &cfg.pollution;
                r.polluted = p.enabled
                    && d.role == DeviceRole::AirStation
                    && if p.stations.is_empty() {
                        d.district == p.district
                    } else {
                        listed(&p.stations, id)
                    };
                let f = &cfg.flood;
                let pick = |ids: &[String], role: fn(&DeviceRole) -> bool| {
                    f.enabled
                        && role(&d.role)
                        && if ids.is_empty() {
                            d.district == f.district
                        } else {
                            listed(ids, id)
                        }
                };
                r.storm = pick(&f.rain_gauges, |r| *r == DeviceRole::RainGauge);
                r.rising = pick(&f.flood_gauges, |r| {
                    matches!(r, DeviceRole::FloodGauge | DeviceRole::RiverGauge(_))
                });
                r.fault = cfg.junction_fault.enabled && listed(&cfg.junction_fault.junctions, id);
                r.silent = cfg.silence.enabled && listed(&cfg.silence.devices, id);
                r.crowd =
                    cfg.crowd.enabled && d.role.is_event_driven() && listed(&cfg.crowd.cameras, id);
            }
            if cfg.silence.enabled && cfg.silence.share > 0.0 {
                // Its own PRNG, so the choice does not depend on how the stream draws.
                let mut rng = Rng::new(seed ^ 0x511E_4CE0_0000_0000);
                for r in &mut roles {
                    let busy = r.jam
                        || r.polluted
                        || r.storm
                        || r.rising
                        || r.fault
                        || r.silent
                        || r.crowd;
                    if rng.chance(cfg.silence.share) && !busy {
                        r.silent = true;
                    }
                }
            }
        }
        let (c, p, f, j, s) = (
            &cfg.congestion,
            &cfg.pollution,
            &cfg.flood,
            &cfg.junction_fault,
            &cfg.silence,
        );
        EpisodePlan {
            congestion: Timing::new(c.start_s, c.duration_s, c.every_s),
            pollution: Timing::new(
                p.start_s,
                p.rise_s.saturating_add(p.hold_s).saturating_add(p.fall_s),
                p.every_s,
            ),
            flood: Timing::new(f.start_s, f.rain_s.saturating_add(f.recede_s), f.every_s),
            fault: Timing::new(j.start_s, j.duration_s, j.every_s),
            silence: Timing::new(s.start_s, s.duration_s, s.every_s),
            crowd: Timing::new(cfg.crowd.start_s, cfg.crowd.duration_s, cfg.crowd.every_s),
            cfg: cfg.clone(),
            start_ms,
            roles,
        }
    }

    fn rel(&self, t_ms: u64) -> u64 {
        t_ms.saturating_sub(self.start_ms)
    }

    /// When the silence covering `t_ms` ends (epoch ms), if device `i` is silent then.
    pub(crate) fn silent_until(&self, i: usize, t_ms: u64) -> Option<u64> {
        if !self.roles.get(i)?.silent || t_ms < self.start_ms {
            return None;
        }
        let into = self.silence.elapsed(self.rel(t_ms))?;
        Some(t_ms - into + self.silence.len_ms)
    }

    /// What the episodes do to device `i`'s reading at `t_ms`.
    pub(crate) fn effect(&self, i: usize, t_ms: u64) -> Effect {
        let mut e = Effect::default();
        let Some(r) = self.roles.get(i) else {
            return e;
        };
        if t_ms < self.start_ms {
            return e;
        }
        let rel = self.rel(t_ms);
        if r.jam && self.congestion.elapsed(rel).is_some() {
            e.jam_kmh = Some(self.cfg.congestion.speed_kmh);
        }
        if r.polluted {
            if let Some(into) = self.pollution.elapsed(rel) {
                let p = &self.cfg.pollution;
                let s = into as f64 / 1000.0;
                let (rise, hold, fall) = (p.rise_s as f64, p.hold_s as f64, p.fall_s as f64);
                let level = if s < rise {
                    smooth(s / rise)
                } else if s < rise + hold {
                    1.0
                } else {
                    1.0 - smooth((s - rise - hold) / fall.max(1.0))
                };
                e.pollution = Some((level, p.peak_pm25_ugm3));
            }
        }
        if r.storm || r.rising {
            let f = &self.cfg.flood;
            let into = self.flood.elapsed(rel);
            let rain_s = f.rain_s as f64;
            match into.map(|ms| ms as f64 / 1000.0) {
                Some(s) if s < rain_s => {
                    e.storm_mm_h = r.storm.then_some(f.rain_mm_h);
                    if r.rising {
                        e.flood_rise_m = f.rise_m_per_h * s / 3600.0;
                    }
                }
                // The rain is over: the water falls back linearly.
                Some(s) if r.rising => {
                    let peak = f.rise_m_per_h * rain_s / 3600.0;
                    let back = (s - rain_s) / (f.recede_s as f64).max(1.0);
                    e.flood_rise_m = peak * (1.0 - back).clamp(0.0, 1.0);
                }
                Some(_) | None => {}
            }
        }
        if r.fault && self.fault.elapsed(rel).is_some() {
            let j = &self.cfg.junction_fault;
            e.fault = Some((j.state, j.fault_code.clone()));
        }
        if r.crowd {
            if let Some(into) = self.crowd.elapsed(rel) {
                let c = &self.cfg.crowd;
                // It gathers over the first third of the episode, from about half its size.
                let gathering = (c.duration_s as f64 / 3.0).max(1.0);
                let grown = smooth(into as f64 / 1000.0 / gathering);
                e.crowd = Some(f64::from(c.crowd_size) * (0.5 + 0.5 * grown));
            }
        }
        e
    }

    /// The occurrences starting before `until_ms`, with the devices of `fleet` they affect.
    pub(crate) fn windows(&self, fleet: &Fleet, until_ms: u64) -> Vec<EpisodeWindow> {
        let until = self.rel(until_ms);
        let ids = |f: fn(&Roles) -> bool| -> Vec<String> {
            self.roles
                .iter()
                .zip(&fleet.devices)
                .filter(|(r, _)| f(r))
                .map(|(_, d)| d.id.clone())
                .collect()
        };
        let episodes = [
            (EpisodeKind::Congestion, self.congestion, ids(|r| r.jam)),
            (EpisodeKind::Pollution, self.pollution, ids(|r| r.polluted)),
            (EpisodeKind::Flood, self.flood, ids(|r| r.storm || r.rising)),
            (EpisodeKind::JunctionFault, self.fault, ids(|r| r.fault)),
            (EpisodeKind::Silence, self.silence, ids(|r| r.silent)),
            (EpisodeKind::Crowd, self.crowd, ids(|r| r.crowd)),
        ];
        let mut out = Vec::new();
        for (kind, timing, devices) in episodes {
            if devices.is_empty() {
                continue;
            }
            for (from, to) in timing.occurrences(until) {
                out.push(EpisodeWindow {
                    kind,
                    from_ms: self.start_ms.saturating_add(from),
                    to_ms: to.map(|t| self.start_ms.saturating_add(t)),
                    devices: devices.clone(),
                });
            }
        }
        out.sort_by_key(|w| (w.from_ms, w.kind));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_plays_once_repeats_or_lasts() {
        let once = Timing::new(10, 5, 0);
        assert_eq!(once.elapsed(9_999), None);
        assert_eq!(once.elapsed(10_000), Some(0));
        assert_eq!(once.elapsed(14_999), Some(4_999));
        assert_eq!(once.elapsed(15_000), None);
        assert_eq!(once.elapsed(70_000), None);
        let every = Timing::new(10, 5, 60);
        assert_eq!(every.elapsed(70_000), Some(0));
        assert_eq!(every.elapsed(76_000), None);
        let endless = Timing::new(0, 0, 0);
        assert_eq!(endless.elapsed(0), Some(0));
        assert_eq!(endless.elapsed(u64::MAX / 2), Some(u64::MAX / 2));
        assert_eq!(
            every.occurrences(130_001),
            vec![
                (10_000, Some(15_000)),
                (70_000, Some(75_000)),
                (130_000, Some(135_000))
            ]
        );
        assert_eq!(endless.occurrences(1), vec![(0, None)]);
    }

    #[test]
    fn defaults_are_valid_and_show_everything_in_the_first_hour() {
        let c = EpisodesConfig::default();
        assert_eq!(c.validate(), Ok(()));
        let plan = EpisodePlan::new(&c, &Fleet::da_nang(42), 42, 1_000_000);
        let first_hour = plan.windows(&Fleet::da_nang(42), 1_000_000 + 3_600_000);
        let kinds: std::collections::BTreeSet<EpisodeKind> =
            first_hour.iter().map(|w| w.kind).collect();
        assert_eq!(kinds.len(), 6, "{first_hour:?}");
        for w in &first_hour {
            assert!(
                w.from_ms - 1_000_000 <= 40 * 60_000,
                "{} starts at {} min",
                w.kind.as_str(),
                (w.from_ms - 1_000_000) / 60_000
            );
        }
        let silent = &first_hour
            .iter()
            .find(|w| w.kind == EpisodeKind::Silence)
            .unwrap()
            .devices;
        // The listed three and about 1 % of the rest.
        assert!((4..=12).contains(&silent.len()), "{silent:?}");
        for id in ["rain-son_tra-01", "flood-lien_chieu-01", "aq-thanh_khe"] {
            assert!(silent.iter().any(|d| d == id), "{id}");
        }
        let flood = first_hour
            .iter()
            .find(|w| w.kind == EpisodeKind::Flood)
            .unwrap();
        // Six rain gauges, two flood gauges and the Ái Nghĩa river station.
        assert_eq!(flood.devices.len(), 6 + 2 + 1, "{:?}", flood.devices);
        // The crowd gathers as the silence ends, so their alerts do not mix.
        let of = |kind| first_hour.iter().find(|w| w.kind == kind).unwrap();
        let crowd = of(EpisodeKind::Crowd);
        assert_eq!(Some(crowd.from_ms), of(EpisodeKind::Silence).to_ms);
        assert_eq!(crowd.to_ms, Some(crowd.from_ms + 15 * 60_000));
        assert_eq!(
            crowd.devices,
            [
                "cam-hai_chau-021",
                "cam-hai_chau-028",
                "cam-hai_chau-039",
                "cam-son_tra-017",
                "cam-son_tra-027"
            ]
        );
        // Each stands near the Dragon Bridge (Cầu Rồng), on one bank of the Hàn or the other.
        let fleet = Fleet::da_nang(crate::REGISTRY_SEED);
        let bridge = fleet.device("bridge-rong").unwrap();
        for id in &crowd.devices {
            let d = fleet.device(id).unwrap();
            let km = ((d.lat - bridge.lat) * 111.0).hypot((d.lon - bridge.lon) * 106.7);
            assert!(km < 1.5, "{id} is {km} km from the bridge");
            assert!(matches!(d.district, District::HaiChau | District::SonTra));
        }
    }

    #[test]
    fn validation_names_the_field() {
        let err = |f: &dyn Fn(&mut EpisodesConfig)| {
            let mut c = EpisodesConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        let e = err(&|c| c.congestion.junctions.push("tsc-nowhere-001".into()));
        assert!(e.contains("episodes.congestion.junctions") && e.contains("tsc-nowhere-001"));
        let e = err(&|c| c.junction_fault.junctions = vec!["aq-son_tra".into()]);
        assert!(e.contains("episodes.junction_fault.junctions") && e.contains("not a junction"));
        let e = err(&|c| c.pollution.stations = vec!["wq-non_nuoc".into()]);
        assert!(e.contains("episodes.pollution.stations"), "{e}");
        let e = err(&|c| c.flood.rain_gauges = vec!["flood-cam_le-01".into()]);
        assert!(e.contains("episodes.flood.rain_gauges"), "{e}");
        let e = err(&|c| c.pollution.every_s = 60);
        assert!(e.contains("episodes.pollution.every_s"), "{e}");
        let e = err(&|c| c.congestion.every_s = 60);
        assert!(e.contains("episodes.congestion.every_s"), "{e}");
        let e = err(&|c| c.junction_fault.state = SignalState::Green);
        assert!(e.contains("episodes.junction_fault.state"), "{e}");
        let e = err(&|c| c.junction_fault.fault_code.clear());
        assert!(e.contains("episodes.junction_fault.fault_code"), "{e}");
        let e = err(&|c| c.silence.share = 1.5);
        assert!(e.contains("episodes.silence.share"), "{e}");
        let e = err(&|c| c.silence.every_s = c.silence.duration_s);
        assert!(e.contains("episodes.silence.every_s"), "{e}");
        let e = err(&|c| c.silence.duration_s = 0);
        assert!(e.contains("episodes.silence.duration_s"), "{e}");
        let e = err(&|c| c.flood.rain_mm_h = f64::NAN);
        assert!(e.contains("episodes.flood.rain_mm_h"), "{e}");
        let e = err(&|c| c.pollution.peak_pm25_ugm3 = -3.0);
        assert!(e.contains("episodes.pollution.peak_pm25_ugm3"), "{e}");
        assert_eq!(e, e.to_lowercase());
        let e = err(&|c| c.crowd.cameras.push("tsc-hai_chau-001".into()));
        assert!(
            e.contains("episodes.crowd.cameras") && e.contains("not a camera"),
            "{e}"
        );
        let e = err(&|c| c.crowd.cameras.push("cam-nowhere-001".into()));
        assert!(
            e.contains("episodes.crowd.cameras") && e.contains("no device"),
            "{e}"
        );
        let e = err(&|c| c.crowd.duration_s = 0);
        assert!(e.contains("episodes.crowd.duration_s"), "{e}");
        let e = err(&|c| c.crowd.every_s = 60);
        assert!(e.contains("episodes.crowd.every_s"), "{e}");
        let e = err(&|c| c.crowd.crowd_size = 1);
        assert!(e.contains("episodes.crowd.crowd_size"), "{e}");
        let mut c = EpisodesConfig::default();
        c.crowd.cameras = vec!["harbour-cam-03".into()];
        assert_eq!(c.validate(), Ok(()), "harbour cameras see crowds too");
        // Switched off, an episode still has to make sense, but an empty list is fine.
        let mut c = EpisodesConfig::none();
        c.junction_fault.junctions.clear();
        c.silence.devices.clear();
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn only_keeps_the_named_episodes_and_none_plays_nothing() {
        let fleet = Fleet::da_nang(1);
        let c = EpisodesConfig::default().only(&[EpisodeKind::JunctionFault]);
        let plan = EpisodePlan::new(&c, &fleet, 1, 0);
        let kinds: Vec<EpisodeKind> = plan
            .windows(&fleet, 600_000_000)
            .iter()
            .map(|w| w.kind)
            .collect();
        assert!(!kinds.is_empty());
        assert!(
            kinds.iter().all(|k| *k == EpisodeKind::JunctionFault),
            "{kinds:?}"
        );
        let plan = EpisodePlan::new(&EpisodesConfig::none(), &fleet, 1, 0);
        assert!(plan.windows(&fleet, 600_000_000).is_empty());
        assert!(
            (0..fleet.devices.len()).all(|i| plan.effect(i, 1_800_000) == Effect::default()
                && plan.silent_until(i, 1_800_000).is_none())
        );
    }

    #[test]
    fn the_silent_share_is_seeded_and_spares_other_episodes() {
        let fleet = Fleet::da_nang(3);
        let mut c = EpisodesConfig::default();
        c.silence.devices.clear();
        c.silence.share = 0.2;
        let silent = |seed: u64| -> Vec<String> {
            let plan = EpisodePlan::new(&c, &fleet, seed, 0);
            plan.windows(&fleet, 3_600_000)
                .into_iter()
                .find(|w| w.kind == EpisodeKind::Silence)
                .map(|w| w.devices)
                .unwrap_or_default()
        };
        let a = silent(5);
        assert_eq!(a, silent(5));
        assert_ne!(a, silent(6));
        let share = a.len() as f64 / fleet.devices.len() as f64;
        assert!((0.15..0.25).contains(&share), "{share}");
        for id in [
            "tsc-hai_chau-001",
            "tsc-thanh_khe-005",
            "aq-cam_le",
            "flood-hoa_vang-01",
            "cam-hai_chau-039",
            "cam-son_tra-017",
        ] {
            assert!(!a.iter().any(|d| d == id), "{id} is in another episode");
        }
    }
}

/// The episodes as the readings show them.
#[cfg(test)]
mod reading_tests {
    use std::collections::BTreeMap;

    use ioc_schemas::{Body, CameraEventType, Reading, TrafficSignalBody};

    use super::*;
    use crate::{scenario_readings, Generator, SimulatorConfig};

    /// 2026-11-28T12:00:00+07:00: no rush hour, no night-time inversion.
    const MIDDAY: u64 = 1_795_842_000_000;
    const MIN: u64 = 60_000;

    fn cfg(episodes: EpisodesConfig) -> SimulatorConfig {
        SimulatorConfig {
            episodes,
            ..SimulatorConfig::default()
        }
    }

    fn only(kind: EpisodeKind) -> SimulatorConfig {
        cfg(EpisodesConfig::default().only(&[kind]))
    }

    fn ids(fleet: &Fleet, pred: impl Fn(&crate::SimDevice) -> bool) -> Vec<&str> {
        fleet
            .devices
            .iter()
            .filter(|d| pred(d))
            .map(|d| d.id.as_str())
            .collect()
    }

    /// Minutes since `start` of a reading.
    fn minute(r: &Reading, start: u64) -> f64 {
        (r.event_time.0 - start) as f64 / MIN as f64
    }

    fn signal(r: &Reading) -> &TrafficSignalBody {
        match &r.body {
            Body::TrafficSignal(b) => b,
            other => panic!("not a junction report: {other:?}"),
        }
    }

    /// A junction report's mean speed and occupancy over its approaches.
    fn speed_occupancy(b: &TrafficSignalBody) -> (f64, f64) {
        let n = b.approaches.len() as f64;
        let speed = b.approaches.iter().map(|a| a.mean_speed_kmh).sum::<f64>() / n;
        let occupancy = b.approaches.iter().map(|a| a.occupancy_pct).sum::<f64>() / n;
        (speed, occupancy)
    }

    /// Level of service from mean speed against a 50 km/h free flow (occupancy ≥ 80 % is F).
    fn los(speed: f64, occupancy: f64) -> char {
        let r = speed / 50.0;
        if occupancy >= 80.0 {
            'F'
        } else if r > 0.85 {
            'A'
        } else if r > 0.67 {
            'B'
        } else if r > 0.5 {
            'C'
        } else if r > 0.4 {
            'D'
        } else if r > 0.3 {
            'E'
        } else {
            'F'
        }
    }

    /// Each junction's level of service over the readings (means of its reports).
    fn levels(readings: &[Reading]) -> BTreeMap<String, char> {
        let mut sums: BTreeMap<String, (f64, f64, f64)> = BTreeMap::new();
        for r in readings {
            let (s, o) = speed_occupancy(signal(r));
            let e = sums.entry(r.device_id.clone()).or_default();
            *e = (e.0 + s, e.1 + o, e.2 + 1.0);
        }
        sums.into_iter()
            .map(|(id, (s, o, n))| (id, los(s / n, o / n)))
            .collect()
    }

    fn sensor_value(r: &Reading) -> f64 {
        match &r.body {
            Body::Sensor(b) => b.value,
            other => panic!("not a sensor reading: {other:?}"),
        }
    }

    fn measurement(r: &Reading, name: &str) -> f64 {
        match &r.body {
            Body::Environment(b) => b.measurements[name],
            other => panic!("not an environment reading: {other:?}"),
        }
    }

    #[test]
    fn rush_hours_bring_the_busiest_junctions_to_e_or_f_and_midday_does_not() {
        let fleet = Fleet::da_nang(42);
        let junctions = ids(&fleet, |d| matches!(d.role, DeviceRole::Junction { .. }));
        let c = cfg(EpisodesConfig::none());
        // Share of junctions at E or F, and how many at F, over 15 minutes from local time
        // `minute_of_day`.
        let congested_share = |minute_of_day: u64| {
            let start = MIDDAY - 12 * 60 * MIN + minute_of_day * MIN;
            let readings = scenario_readings(&c, &junctions, start, start + 15 * MIN).unwrap();
            let levels = levels(&readings);
            assert_eq!(levels.len(), 166);
            let count = |of: &[char]| levels.values().filter(|l| of.contains(l)).count();
            (count(&['E', 'F']) as f64 / 166.0, count(&['F']))
        };
        // About a third of the junctions at E or F, the busiest at F.
        for (minute_of_day, at) in [(7 * 60 + 30, "7:30"), (17 * 60, "17:00")] {
            let (share, f) = congested_share(minute_of_day);
            assert!(share > 0.2, "{at}: {share}");
            assert!(f > 0, "{at}: no junction at F");
        }
        assert_eq!(congested_share(12 * 60), (0.0, 0), "12:00");
    }

    #[test]
    fn congestion_jams_its_junctions_at_any_hour() {
        let c = only(EpisodeKind::Congestion);
        let jammed = [
            "tsc-hai_chau-001",
            "tsc-hai_chau-002",
            "tsc-hai_chau-003",
            "tsc-hai_chau-004",
        ];
        let others = [
            "tsc-hai_chau-005",
            "tsc-hai_chau-006",
            "tsc-hai_chau-007",
            "tsc-hai_chau-008",
        ];
        let devices: Vec<&str> = jammed.iter().chain(&others).copied().collect();
        // Midday and 3 am: no rush hour, yet the jam is there from the first report.
        for start in [MIDDAY, MIDDAY - 9 * 3_600_000] {
            let readings = scenario_readings(&c, &devices, start, start + 20 * MIN).unwrap();
            let mut jam_speeds = Vec::new();
            for r in &readings {
                let b = signal(r);
                let (speed, occupancy) = speed_occupancy(b);
                if jammed.contains(&r.device_id.as_str()) {
                    assert!(speed < 15.0, "{}: {speed} km/h", r.device_id);
                    assert!(b.approaches.iter().all(|a| a.occupancy_pct > 80.0), "{b:?}");
                    assert!(
                        b.approaches.iter().all(|a| a.queue_length_m >= 150.0),
                        "{b:?}"
                    );
                    assert_eq!(los(speed, occupancy), 'F');
                    jam_speeds.push(speed);
                } else {
                    assert!(speed > 25.0, "{}: {speed} km/h", r.device_id);
                    assert!(occupancy < 60.0, "{}: {occupancy} %", r.device_id);
                }
            }
            let mean = jam_speeds.iter().sum::<f64>() / jam_speeds.len() as f64;
            assert!((8.0..12.0).contains(&mean), "{mean}");
            // 4 junctions × 40 reports.
            assert_eq!(jam_speeds.len(), 160);
            let levels = levels(&readings);
            for id in jammed {
                assert_eq!(levels[id], 'F', "{id}");
            }
            for id in others {
                assert!(
                    matches!(levels[id], 'A' | 'B' | 'C'),
                    "{id}: {}",
                    levels[id]
                );
            }
        }
    }

    #[test]
    fn pollution_climbs_through_the_bands_into_bad_in_its_district_only() {
        let c = only(EpisodeKind::Pollution);
        let fleet = Fleet::da_nang(c.seed);
        let stations = ids(&fleet, |d| d.role == DeviceRole::AirStation);
        assert_eq!(stations.len(), 10);
        let readings = scenario_readings(&c, &stations, MIDDAY, MIDDAY + 170 * MIN).unwrap();
        let district = |id: &str| fleet.device(id).unwrap().district;
        let mut bands = [0u32; 4]; // <25, 25–50, 50–80, >80 in the rise
        let mut hold = Vec::new();
        for r in &readings {
            let (m, pm25, pm10) = (
                minute(r, MIDDAY),
                measurement(r, "pm25"),
                measurement(r, "pm10"),
            );
            if district(&r.device_id) != District::CamLe {
                assert!(pm25 < 50.0, "{} at {m} min: {pm25}", r.device_id);
                continue;
            }
            if !(5.0..145.0).contains(&m) {
                assert!(pm25 < 50.0, "{} at {m} min: {pm25}", r.device_id);
            } else if m < 25.0 {
                bands[[25.0, 50.0, 80.0].iter().filter(|b| pm25 >= **b).count()] += 1;
            } else if m < 115.0 {
                assert!(pm25 > 80.0, "{} at {m} min: {pm25}", r.device_id);
                assert!(pm10 > pm25 * 1.4, "{pm10} vs {pm25}");
                hold.push(pm25);
            }
        }
        assert!(
            bands.iter().all(|n| *n > 0),
            "the rise skipped a band: {bands:?}"
        );
        // Two stations, 90 minutes, one reading a minute.
        assert_eq!(hold.len(), 180);
        let mean = hold.iter().sum::<f64>() / hold.len() as f64;
        assert!((100.0..160.0).contains(&mean), "{mean}");
        assert!(hold.iter().all(|v| *v < 220.0), "{hold:?}");
    }

    #[test]
    fn the_flood_pours_on_its_district_and_raises_its_gauges() {
        let c = only(EpisodeKind::Flood);
        let fleet = Fleet::da_nang(c.seed);
        let gauges = ids(&fleet, |d| d.role == DeviceRole::RainGauge);
        let readings = scenario_readings(&c, &gauges, MIDDAY, MIDDAY + 150 * MIN).unwrap();
        // Rain over the last hour of the downpour (minutes 40 to 100).
        let mut hour: BTreeMap<&str, f64> = BTreeMap::new();
        for r in &readings {
            if (40.0..100.0).contains(&minute(r, MIDDAY)) {
                *hour.entry(r.device_id.as_str()).or_default() += sensor_value(r);
            }
        }
        let (mut storm, mut elsewhere) = (Vec::new(), Vec::new());
        for (id, mm) in hour {
            if fleet.device(id).unwrap().district == District::HoaVang {
                assert!((25.0..80.0).contains(&mm), "{id}: {mm} mm in an hour");
                storm.push(mm);
            } else {
                elsewhere.push(mm);
            }
        }
        assert_eq!(storm.len(), 6);
        let mean = storm.iter().sum::<f64>() / 6.0;
        assert!((35.0..55.0).contains(&mean), "{mean}");
        let mean_elsewhere = elsewhere.iter().sum::<f64>() / elsewhere.len() as f64;
        assert!(mean_elsewhere < 10.0, "{elsewhere:?}");
        // After the rain the gauges dry up (a shower may start, rarely).
        let after: f64 = readings
            .iter()
            .filter(|r| r.device_id.contains("hoa_vang") && minute(r, MIDDAY) >= 100.0)
            .map(sensor_value)
            .sum();
        assert!(after / 6.0 < 10.0, "{after} mm after the storm");

        // The water rises 0.3–0.6 m/h while it rains and is back once it has receded.
        let floods = ids(&fleet, |d| d.role == DeviceRole::FloodGauge);
        let end = MIDDAY + 240 * MIN;
        let wet = scenario_readings(&c, &floods, MIDDAY, end).unwrap();
        let dry = scenario_readings(&cfg(EpisodesConfig::none()), &floods, MIDDAY, end).unwrap();
        assert_eq!(wet.len(), dry.len());
        let mut ten_minutes: BTreeMap<(&str, u64), (f64, f64)> = BTreeMap::new();
        for (w, d) in wet.iter().zip(&dry) {
            assert_eq!((&w.device_id, w.event_time), (&d.device_id, d.event_time));
            let (m, rise) = (minute(w, MIDDAY), sensor_value(w) - sensor_value(d));
            if fleet.device(&w.device_id).unwrap().district != District::HoaVang {
                assert!(rise.abs() < 1e-9, "{} rose {rise} m", w.device_id);
                continue;
            }
            let expected = if m < 10.0 {
                0.0
            } else if m < 100.0 {
                0.45 * (m - 10.0) / 60.0
            } else {
                (0.675 * (1.0 - (m - 100.0) / 120.0)).max(0.0)
            };
            assert!(
                (rise - expected).abs() < 0.02,
                "{} at {m}: {rise}",
                w.device_id
            );
            let e = ten_minutes
                .entry((w.device_id.as_str(), (m / 10.0) as u64))
                .or_default();
            *e = (e.0 + sensor_value(w), e.1 + 1.0);
        }
        for id in ["flood-hoa_vang-01", "flood-hoa_vang-02"] {
            // Ten-minute means climb all through the rain, tide or not.
            let means: Vec<f64> = (1..10)
                .map(|k| {
                    let (s, n) = ten_minutes[&(id, k)];
                    s / n
                })
                .collect();
            assert!(means.windows(2).all(|w| w[1] > w[0]), "{id}: {means:?}");
            let per_hour = (means[8] - means[0]) / (80.0 / 60.0);
            assert!((0.3..0.6).contains(&per_hour), "{id}: {per_hour} m/h");
        }
    }

    #[test]
    fn a_faulted_junction_flashes_with_its_code_only_in_its_windows() {
        let end = MIDDAY + 150 * MIN;
        for state in [SignalState::Flashing, SignalState::Off] {
            let mut c = only(EpisodeKind::JunctionFault);
            c.episodes.junction_fault.state = state;
            let devices = ["tsc-thanh_khe-005", "tsc-thanh_khe-006"];
            let fleet = Fleet::da_nang(c.seed).subset(&devices).unwrap();
            let g = Generator::new(fleet, c.seed, &c, MIDDAY).unwrap();
            let windows = g.episode_windows(end);
            let spans: Vec<(u64, u64)> = windows
                .iter()
                .map(|w| {
                    assert_eq!(w.kind, EpisodeKind::JunctionFault);
                    assert_eq!(w.devices, ["tsc-thanh_khe-005"]);
                    (w.from_ms, w.to_ms.unwrap())
                })
                .collect();
            let at = |min: u64| MIDDAY + min * MIN;
            assert_eq!(
                spans,
                [(at(15), at(25)), (at(75), at(85)), (at(135), at(145))]
            );
            let readings = scenario_readings(&c, &devices, MIDDAY, end).unwrap();
            let mut faulted = 0;
            for r in &readings {
                let b = signal(r);
                let t = r.event_time.0;
                let inside = r.device_id == "tsc-thanh_khe-005"
                    && spans.iter().any(|(from, to)| (*from..*to).contains(&t));
                if inside {
                    assert_eq!(b.state, state);
                    assert_eq!(b.fault_code.as_deref(), Some("controller_fault"));
                    faulted += 1;
                } else {
                    // Other faults happen now and then, never this one.
                    assert_ne!(b.fault_code.as_deref(), Some("controller_fault"), "{r:?}");
                    assert_ne!(b.state, SignalState::Off, "{r:?}");
                }
            }
            // Three faults of 10 minutes, a report every 30 s.
            assert_eq!(faulted, 60);
        }
    }

    #[test]
    fn silent_devices_send_nothing_then_resume() {
        let mut c = only(EpisodeKind::Silence);
        c.episodes.silence.share = 0.0;
        c.episodes.silence.devices.push("wq-han_lower".into());
        c.episodes.silence.devices.push("tsc-son_tra-001".into());
        let silent = [
            "rain-son_tra-01",
            "flood-lien_chieu-01",
            "aq-thanh_khe",
            "wq-han_lower",
            "tsc-son_tra-001",
        ];
        let control = ["rain-son_tra-02", "aq-son_tra", "tsc-son_tra-002"];
        let devices: Vec<&str> = silent.iter().chain(&control).copied().collect();
        let end = 150.0;
        let readings = scenario_readings(&c, &devices, MIDDAY, MIDDAY + end as u64 * MIN).unwrap();
        let fleet = Fleet::da_nang(c.seed);
        let mut times: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for r in &readings {
            times
                .entry(r.device_id.as_str())
                .or_default()
                .push(minute(r, MIDDAY));
        }
        let quiet = |m: f64| {
            [20.0, 80.0, 140.0]
                .iter()
                .any(|s| (*s..s + 20.0).contains(&m))
        };
        for id in devices {
            let interval = f64::from(fleet.device(id).unwrap().interval_s) / 60.0;
            let t = &times[id];
            let mut last = 0.0;
            let mut silences = 0;
            for &m in t {
                let gap = m - last;
                if silent.contains(&id) {
                    assert!(!quiet(m), "{id} reported at {m} min");
                    if gap > interval + 1e-6 {
                        // The gap spans a whole silence and resumes within one interval.
                        assert!(quiet(last + interval) && !quiet(m));
                        assert!(
                            gap > 3.0 * interval && gap <= 20.0 + interval + 1e-6,
                            "{id}: {gap}"
                        );
                        silences += 1;
                    }
                } else {
                    assert!(gap <= interval + 1e-6, "{id}: {gap} min at {m}");
                }
                last = m;
            }
            if silent.contains(&id) {
                // Silences at 20, 80 and 140 minutes; the last lasts past the end.
                assert_eq!(silences, 2, "{id}: {t:?}");
                assert!(end - last > 10.0, "{id}");
            }
        }
        // The first report after a silence counts one interval's vehicles, not the silence's.
        let vehicles = |r: &Reading| signal(r).approaches.iter().map(|a| a.vehicles).sum::<u32>();
        let junction: Vec<&Reading> = readings
            .iter()
            .filter(|r| r.device_id == "tsc-son_tra-001")
            .collect();
        let most_before = junction
            .iter()
            .filter(|r| minute(r, MIDDAY) < 20.0)
            .map(|r| vehicles(r))
            .max()
            .unwrap();
        let first_after = junction.iter().find(|r| minute(r, MIDDAY) >= 40.0).unwrap();
        assert!(
            vehicles(first_after) <= 2 * most_before,
            "{} vs {most_before}",
            vehicles(first_after)
        );
    }

    #[test]
    fn some_water_stations_break_their_standard_sometimes() {
        let c = cfg(EpisodesConfig::none());
        let stations = [
            "wq-phu_loc_lower",
            "wq-han_lower",
            "wq-tien_sa",
            "wq-bau_trang",
        ];
        let start = MIDDAY - 12 * 3_600_000;
        let readings = scenario_readings(&c, &stations, start, start + 24 * 3_600_000).unwrap();
        let share = |id: &str, f: &dyn Fn(&Reading) -> bool| {
            let of: Vec<&Reading> = readings.iter().filter(|r| r.device_id == id).collect();
            assert_eq!(of.len(), 288, "{id}: every 5 minutes for a day");
            of.iter().filter(|r| f(r)).count() as f64 / of.len() as f64
        };
        // QCVN 08:2023: NH4 ≤ 0.3 mg/L everywhere (Bảng 1); level C asks DO ≥ 4, BOD5 ≤ 10.
        let nh4 = share("wq-phu_loc_lower", &|r| measurement(r, "nh4") > 0.9);
        assert!((0.2..0.8).contains(&nh4), "{nh4}");
        let low_do = share("wq-phu_loc_lower", &|r| measurement(r, "do") < 4.0);
        assert!((0.05..0.8).contains(&low_do), "{low_do}");
        let bod = share("wq-phu_loc_lower", &|r| measurement(r, "bod5") > 10.0);
        assert!((0.2..0.95).contains(&bod), "{bod}");
        // The lower Hàn mostly meets level B (DO ≥ 5, BOD5 ≤ 6, COD ≤ 15).
        let breaks_b = share("wq-han_lower", &|r| {
            measurement(r, "nh4") > 0.3
                || measurement(r, "do") < 5.0
                || measurement(r, "bod5") > 6.0
                || measurement(r, "cod") > 15.0
        });
        assert!(breaks_b < 0.1, "{breaks_b}");
        let lake = share("wq-bau_trang", &|r| measurement(r, "nh4") > 0.9);
        assert!(lake > 0.1, "{lake}");
        // The coastal zone (QCVN 10:2023): TSS ≤ 50 mg/L, NH4 ≤ 0.1 mg/L.
        let tss = share("wq-tien_sa", &|r| measurement(r, "tss") > 50.0);
        assert!((0.02..0.4).contains(&tss), "{tss}");
        let nh4 = share("wq-tien_sa", &|r| measurement(r, "nh4") > 0.1);
        assert!(nh4 < 0.05, "{nh4}");
    }

    #[test]
    fn the_default_config_shows_every_episode_within_45_minutes_every_time() {
        let c = SimulatorConfig::default();
        let now = MIDDAY + 1_234_567;
        let devices = [
            "tsc-hai_chau-001",
            "aq-cam_le",
            "rain-hoa_vang-01",
            "flood-hoa_vang-01",
            "tsc-thanh_khe-005",
            "aq-thanh_khe",
            "cam-hai_chau-039",
        ];
        let end = now + 45 * MIN;
        let readings = scenario_readings(&c, &devices, now, end).unwrap();
        assert!(readings == scenario_readings(&c, &devices, now, end).unwrap());
        assert!(readings
            .iter()
            .all(|r| (now..end).contains(&r.event_time.0)));
        let of = |id: &'static str| readings.iter().filter(move |r| r.device_id == id);
        let at = |r: &Reading| minute(r, now);
        assert!(of("tsc-hai_chau-001").all(|r| speed_occupancy(signal(r)).0 < 15.0));
        assert!(of("aq-cam_le").any(|r| measurement(r, "pm25") > 80.0 && at(r) < 30.0));
        let rain: f64 = of("rain-hoa_vang-01")
            .filter(|r| at(r) < 40.0)
            .map(sensor_value)
            .sum();
        assert!(rain > 15.0, "{rain} mm in the first 40 minutes");
        let level = |from: f64| {
            let v: Vec<f64> = of("flood-hoa_vang-01")
                .filter(|r| (from..from + 5.0).contains(&at(r)))
                .map(sensor_value)
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        assert!(level(40.0) > level(5.0) + 0.15);
        assert!(of("tsc-thanh_khe-005")
            .any(|r| signal(r).fault_code.as_deref() == Some("controller_fault") && at(r) < 30.0));
        assert!(!of("aq-thanh_khe").any(|r| (20.0..40.0).contains(&at(r))));
        assert!(of("aq-thanh_khe").any(|r| at(r) >= 40.0));
        let crowd: Vec<f64> = of("cam-hai_chau-039")
            .filter(|r| crowd_count(r).is_some())
            .map(at)
            .collect();
        assert!(
            !crowd.is_empty() && crowd.iter().all(|m| *m >= 40.0),
            "{crowd:?}"
        );
    }

    /// The people a crowd detection counts; `None` for any other reading.
    fn crowd_count(r: &Reading) -> Option<u32> {
        match &r.body {
            Body::CameraEvent(b) if b.event_type == CameraEventType::CrowdGathering => {
                Some(b.count.expect("a crowd detection counts its people"))
            }
            _ => None,
        }
    }

    /// The `crowd_gathering` alerts of `alert-engine/rules/da_nang.toml` on these readings: a
    /// detection counting more than 1 breaches (an alert opens, if none is open); the alert
    /// clears 900 s (`clear_after_s`) after the last detection. Per camera: (opened, cleared)
    /// in minutes from `start`, the last `None` while still open at `end`.
    fn crowd_alerts(
        readings: &[Reading],
        start: u64,
        end: u64,
    ) -> BTreeMap<String, Vec<(f64, Option<f64>)>> {
        const CLEAR_AFTER_MS: u64 = 900_000;
        let mut alerts: BTreeMap<String, Vec<(f64, Option<f64>)>> = BTreeMap::new();
        let mut last: BTreeMap<String, u64> = BTreeMap::new();
        let close = |alerts: &mut BTreeMap<String, Vec<(f64, Option<f64>)>>, id: &str, at: u64| {
            if let Some(open) = alerts.get_mut(id).and_then(|a| a.last_mut()) {
                open.1 = Some((at - start) as f64 / MIN as f64);
            }
        };
        for r in readings {
            let t = r.event_time.0;
            // Event time moving on clears the alerts whose cameras went quiet.
            let quiet: Vec<(String, u64)> = last
                .iter()
                .filter(|(_, l)| t >= **l + CLEAR_AFTER_MS)
                .map(|(id, l)| (id.clone(), *l))
                .collect();
            for (id, l) in quiet {
                close(&mut alerts, &id, l + CLEAR_AFTER_MS);
                last.remove(&id);
            }
            if crowd_count(r).is_some_and(|n| n > 1) {
                if !last.contains_key(&r.device_id) {
                    alerts
                        .entry(r.device_id.clone())
                        .or_default()
                        .push((minute(r, start), None));
                }
                last.insert(r.device_id.clone(), t);
            }
        }
        for (id, l) in last {
            if l + CLEAR_AFTER_MS <= end {
                close(&mut alerts, &id, l + CLEAR_AFTER_MS);
            }
        }
        alerts
    }

    #[test]
    fn a_crowd_by_the_dragon_bridge_opens_an_alert_per_camera_that_clears_after_it() {
        let c = only(EpisodeKind::Crowd);
        let crowd = &c.episodes.crowd;
        let cameras: Vec<&str> = crowd.cameras.iter().map(String::as_str).collect();
        let others = ["cam-hai_chau-001", "cam-son_tra-001", "harbour-cam-01"];
        let devices: Vec<&str> = cameras.iter().chain(&others).copied().collect();
        // From 21:00 local, when the bridge's show starts and evening crowds are likeliest.
        let start = MIDDAY + 9 * 3_600_000;
        let end = start + 240 * MIN;
        let fleet = Fleet::da_nang(c.seed).subset(&devices).unwrap();
        let spans: Vec<(f64, f64)> = Generator::new(fleet, c.seed, &c, start)
            .unwrap()
            .episode_windows(end)
            .iter()
            .map(|w| {
                assert_eq!(w.kind, EpisodeKind::Crowd);
                assert_eq!(w.devices.len(), 5);
                let m = |t: u64| (t - start) as f64 / MIN as f64;
                (m(w.from_ms), m(w.to_ms.unwrap()))
            })
            .collect();
        assert_eq!(spans, [(40.0, 55.0), (160.0, 175.0)]);
        let readings = scenario_readings(&c, &devices, start, end).unwrap();
        for id in &devices {
            let seen: Vec<(f64, u32)> = readings
                .iter()
                .filter(|r| r.device_id == *id)
                .filter_map(|r| Some((minute(r, start), crowd_count(r)?)))
                .collect();
            if others.contains(id) {
                assert!(seen.is_empty(), "{id}: {seen:?}");
                continue;
            }
            for (from, to) in &spans {
                let during: Vec<&(f64, u32)> = seen
                    .iter()
                    .filter(|(m, _)| (*from..*to).contains(m))
                    .collect();
                // Reported at once, then about once a minute.
                assert!(during[0].0 < from + 2.0, "{id}: {during:?}");
                assert!(during.last().unwrap().0 > to - 2.0, "{id}: {during:?}");
                assert!((10..=16).contains(&during.len()), "{id}: {during:?}");
                for w in during.windows(2) {
                    assert!((1.0..3.0).contains(&(w[1].0 - w[0].0)), "{id}: {during:?}");
                }
                // The crowd grows from about half its size over the first 5 minutes.
                let size = f64::from(crowd.crowd_size);
                for (m, n) in &during {
                    let n = f64::from(*n);
                    assert!((0.4 * size..=1.15 * size + 1.0).contains(&n), "{id}: {n}");
                    if *m >= from + 5.0 {
                        assert!(n >= 0.85 * size - 1.0, "{id} at {m}: {n}");
                    }
                }
                assert!(during.iter().any(|(m, _)| *m < from + 5.0));
            }
            assert_eq!(
                seen.iter()
                    .filter(|(m, _)| !spans.iter().any(|(f, t)| (*f..*t).contains(m)))
                    .count(),
                0,
                "{id}: a crowd outside the episode: {seen:?}"
            );
        }
        // The alert rule opens one alert per camera and episode, which clears 15 minutes
        // after the crowd has gone.
        let alerts = crowd_alerts(&readings, start, end);
        assert_eq!(alerts.keys().collect::<Vec<_>>(), {
            let mut ids: Vec<&String> = crowd.cameras.iter().collect();
            ids.sort();
            ids
        });
        for (id, a) in &alerts {
            assert_eq!(a.len(), 2, "{id}: {a:?}");
            for ((opened, cleared), (from, to)) in a.iter().zip(&spans) {
                assert!((*from..from + 2.0).contains(opened), "{id}: {a:?}");
                let cleared = cleared.expect("cleared before the end");
                assert!((to + 13.0..=to + 15.0).contains(&cleared), "{id}: {a:?}");
            }
        }
    }

    #[test]
    fn outside_the_episode_a_crowd_is_a_rare_sight() {
        // Every camera, an evening hour (the likeliest) and a midday one, no episode.
        let c = cfg(EpisodesConfig::none());
        let fleet = Fleet::da_nang(c.seed);
        let cameras = ids(&fleet, |d| d.role.is_event_driven());
        assert_eq!(cameras.len(), 234);
        let mut detections = 0;
        let mut events = 0;
        for start in [MIDDAY, MIDDAY + 8 * 3_600_000] {
            let readings = scenario_readings(&c, &cameras, start, start + 60 * MIN).unwrap();
            events += readings.len();
            detections += readings.iter().filter(|r| crowd_count(r).is_some()).count();
            let alerts = crowd_alerts(&readings, start, start + 60 * MIN);
            assert!(alerts.len() <= 2, "{alerts:?}");
        }
        // About 0.03 an hour at midday and 0.4 at 20:00 over the fleet (a few a day); the
        // cameras' former weights made 1 200 an hour at midday and 7 800 at 20:00 on the demo.
        assert!(events > 120_000, "{events}");
        assert!(detections <= 2, "{detections}");
    }
}
