//! The WebSocket protocol's messages (described in the crate docs).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use ioc_schemas::{AlertEvent, District, EpochMs, Kind, Kpi, KpiFamily, WindowResult};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::dead_letters::DeadLetterView;

/// The protocol version announced in `hello`.
pub const PROTOCOL_VERSION: u32 = 2;

/// A stream a client can subscribe to: `windows` (window results) or `kpi.<family>` (the
/// KPI rows of one family, such as `kpi.air`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// `windows`: window results.
    Windows,
    /// `kpi.<family>`: KPI rows of one family.
    Kpi(KpiFamily),
    /// `alerts`: every alert lifecycle event (opened, acknowledged, escalated, resolved, ...).
    Alerts,
    /// `dead_letters`: every rejected message (not for department tokens).
    DeadLetters,
}

impl Channel {
    /// Every channel: `windows`, then `kpi.<family>` in [`KpiFamily::ALL`] order, `alerts`
    /// and `dead_letters`.
    pub fn all() -> Vec<Channel> {
        std::iter::once(Channel::Windows)
            .chain(KpiFamily::ALL.into_iter().map(Channel::Kpi))
            .chain([Channel::Alerts, Channel::DeadLetters])
            .collect()
    }

    /// Parses `windows` or `kpi.<family>`.
    pub fn from_name(name: &str) -> Option<Channel> {
        if name == "windows" {
            return Some(Channel::Windows);
        }
        if name == "alerts" {
            return Some(Channel::Alerts);
        }
        if name == "dead_letters" {
            return Some(Channel::DeadLetters);
        }
        let family = name.strip_prefix("kpi.")?;
        KpiFamily::from_name(family).map(Channel::Kpi)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Windows => f.write_str("windows"),
            Channel::Kpi(family) => write!(f, "kpi.{}", family.as_str()),
            Channel::Alerts => f.write_str("alerts"),
            Channel::DeadLetters => f.write_str("dead_letters"),
        }
    }
}

impl Serialize for Channel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Channel::from_name(&name).ok_or_else(|| {
            let known: Vec<String> = Channel::all().iter().map(Channel::to_string).collect();
            D::Error::custom(format!(
                "unknown channel `{name}`, expected one of {}",
                known.join(", ")
            ))
        })
    }
}

/// Which updates a client wants. `channels` picks the streams (default `["windows"]`); the
/// other sets narrow them, each empty set meaning "all", and an update must match every
/// non-empty set that applies to it: `kinds`, `districts`, `devices` and `metrics` to window
/// results; `districts` and `devices` (matched against the row's entity id) to KPI rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filter {
    /// Streams wanted: `windows`, `kpi.traffic`, `kpi.air`, ...; never empty.
    #[serde(deserialize_with = "channels_or_windows")]
    pub channels: BTreeSet<Channel>,
    /// Kinds wanted (`traffic_signal`, ...); window results only.
    #[serde(deserialize_with = "null_as_empty")]
    pub kinds: BTreeSet<Kind>,
    /// Districts wanted, by slug (`hai_chau`, ...). A KPI row without a district (city or
    /// department scope) does not match a non-empty set.
    #[serde(deserialize_with = "null_as_empty")]
    pub districts: BTreeSet<District>,
    /// Device ids wanted; for KPI rows, entity ids (a device id, or for aggregate rows a
    /// district or department slug or `da_nang`).
    #[serde(deserialize_with = "null_as_empty")]
    pub devices: BTreeSet<String>,
    /// Metric names wanted (`vehicles`, `pm25`, ...); window results only.
    #[serde(deserialize_with = "null_as_empty")]
    pub metrics: BTreeSet<String>,
}

impl Default for Filter {
    /// Every window result, no KPI: what a client that names no channel gets.
    fn default() -> Self {
        Filter {
            channels: BTreeSet::from([Channel::Windows]),
            kinds: BTreeSet::new(),
            districts: BTreeSet::new(),
            devices: BTreeSet::new(),
            metrics: BTreeSet::new(),
        }
    }
}

/// `"channels": null` means `["windows"]`, like leaving it out; an empty list is refused.
fn channels_or_windows<'de, D>(deserializer: D) -> Result<BTreeSet<Channel>, D::Error>
where
    D: Deserializer<'de>,
{
    match Option::<BTreeSet<Channel>>::deserialize(deserializer)? {
        None => Ok(Filter::default().channels),
        Some(channels) if channels.is_empty() => Err(D::Error::custom(
            "channels must name at least one channel (leave it out for [\"windows\"])",
        )),
        Some(channels) => Ok(channels),
    }
}

/// `"kinds": null` means the same as leaving the list out.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl Filter {
    /// Whether `result` passes the filter (the `windows` channel included).
    pub fn matches(&self, result: &WindowResult) -> bool {
        self.wants_windows()
            && (self.kinds.is_empty() || self.kinds.contains(&result.kind))
            && (self.districts.is_empty() || self.districts.contains(&result.district))
            && (self.devices.is_empty() || self.devices.contains(&result.device_id))
            && (self.metrics.is_empty() || self.metrics.contains(&result.metric))
    }

    /// Whether `kpi` passes the filter: its family's channel is subscribed and it matches
    /// `districts` (by [`Kpi::district`]) and `devices` (by [`Kpi::entity_id`]).
    pub fn matches_kpi(&self, kpi: &Kpi) -> bool {
        self.channels.contains(&Channel::Kpi(kpi.family()))
            && (self.districts.is_empty()
                || kpi.district().is_some_and(|d| self.districts.contains(&d)))
            && (self.devices.is_empty() || self.devices.contains(kpi.entity_id()))
    }

    /// Whether the `windows` channel is subscribed.
    pub fn wants_windows(&self) -> bool {
        self.channels.contains(&Channel::Windows)
    }

    /// Whether `event` passes the filter: the `alerts` channel is subscribed and the alert
    /// matches `districts` and `devices` (its entity id).
    pub fn matches_alert(&self, event: &AlertEvent) -> bool {
        let alert = &event.alert;
        self.channels.contains(&Channel::Alerts)
            && (self.districts.is_empty()
                || alert.district.is_some_and(|d| self.districts.contains(&d)))
            && (self.devices.is_empty() || self.devices.contains(&alert.entity_id))
    }

    /// Whether the `alerts` channel is subscribed.
    pub fn wants_alerts(&self) -> bool {
        self.channels.contains(&Channel::Alerts)
    }

    /// Whether the `dead_letters` channel is subscribed.
    pub fn wants_dead_letters(&self) -> bool {
        self.channels.contains(&Channel::DeadLetters)
    }

    /// Whether any `kpi.<family>` channel is subscribed.
    pub fn wants_kpis(&self) -> bool {
        self.channels.iter().any(|c| matches!(c, Channel::Kpi(_)))
    }

    /// Whether the filter lets every update of its channels through.
    pub fn is_all(&self) -> bool {
        self.kinds.is_empty()
            && self.districts.is_empty()
            && self.devices.is_empty()
            && self.metrics.is_empty()
    }
}

/// A message from client to server (JSON text frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Start (or replace the filter of) the stream of updates.
    Subscribe(Filter),
    /// Stop every stream.
    Unsubscribe,
    /// Ask for a `pong`.
    Ping,
}

/// A message from server to client (JSON text frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First message on every connection.
    Hello {
        /// [`PROTOCOL_VERSION`].
        protocol: u32,
        /// The channels the server offers ([`Channel::all`]).
        channels: Vec<Channel>,
    },
    /// The filter now in force after a subscribe; `null` after an unsubscribe.
    Subscribed {
        /// The filter, normalised (sorted, duplicates removed).
        filter: Option<Filter>,
    },
    /// A window result that passed the filter.
    Window {
        /// The connection's sequence number (see [`ServerMessage::Snapshot`]).
        #[serde(default)]
        seq: u64,
        /// The result.
        data: WindowResult,
    },
    /// A KPI row that passed the filter.
    Kpi {
        /// The connection's sequence number.
        #[serde(default)]
        seq: u64,
        /// Its family (also inside `kpi`).
        family: KpiFamily,
        /// The row.
        kpi: Kpi,
    },
    /// An alert event that passed the filter.
    Alert {
        /// The connection's sequence number.
        #[serde(default)]
        seq: u64,
        /// The event.
        event: AlertEvent,
    },
    /// A rejected message (channel `dead_letters`).
    DeadLetter {
        /// The connection's sequence number.
        #[serde(default)]
        seq: u64,
        /// The letter.
        dead_letter: DeadLetterView,
    },
    /// The latest value of each key matching the filter, sent right after every
    /// `subscribed` (with a filter) and after every `lagged`; the client replaces what it
    /// holds with it, then applies the updates that follow.
    ///
    /// `seq` numbers the messages carrying one (`window`, `kpi`, `alert`, `snapshot`,
    /// `heartbeat`) on one connection: 1, 2, 3, ... without gaps.
    Snapshot {
        /// The connection's sequence number.
        seq: u64,
        /// Newest window result per (device, metric, window size); empty unless `windows`
        /// is subscribed.
        windows: Vec<WindowResult>,
        /// Newest KPI row per (family, entity, window size; camera rows also per event
        /// type) of the subscribed families.
        kpis: Vec<Kpi>,
        /// Newest event of each open (active or acknowledged) alert; empty unless `alerts`
        /// is subscribed.
        alerts: Vec<AlertEvent>,
        /// The newest dead letters (at most 50), oldest first; absent unless `dead_letters`
        /// is subscribed and there are some.
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        dead_letters: Vec<DeadLetterView>,
    },
    /// Sent to a subscribed client every `ws_ping_interval_ms`, so a client that cannot see
    /// WebSocket pings (a browser) can tell the link is alive.
    Heartbeat {
        /// The connection's sequence number.
        seq: u64,
        /// The server's wall clock, epoch ms.
        at_ms: EpochMs,
    },
    /// The client fell behind on one feed and `skipped` updates (before filtering) were
    /// dropped for it; a `snapshot` follows, then the updates published after it.
    Lagged {
        /// Which feed: `windows`, `kpi` (every KPI family shares one) or `alerts`.
        feed: Feed,
        /// Updates skipped.
        skipped: u64,
    },
    /// The answer to a `ping`.
    Pong,
    /// The client's last message was refused; the connection stays open.
    Error {
        /// What was wrong, lowercase.
        message: String,
    },
}

/// The server's three broadcast feeds, named in `lagged`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feed {
    /// Window results.
    Windows,
    /// KPI rows of every family.
    Kpi,
    /// Alert events.
    Alerts,
    /// Dead letters.
    DeadLetters,
}

/// The latest values matching a filter, taken for a `snapshot` message.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// Newest window result per (device, metric, window size).
    pub(crate) windows: Vec<Arc<WindowResult>>,
    /// Newest KPI row per (family, entity, window size).
    pub(crate) kpis: Vec<Arc<Kpi>>,
    /// Newest event of each open alert.
    pub(crate) alerts: Vec<Arc<AlertEvent>>,
    /// The newest dead letters, oldest first.
    pub(crate) dead_letters: Vec<Arc<DeadLetterView>>,
}

/// `ServerMessage::Window` without cloning the result (one serialisation per client).
#[derive(Serialize)]
#[serde(tag = "type", rename = "window")]
struct WindowRef<'a> {
    seq: u64,
    data: &'a WindowResult,
}

/// `ServerMessage::Kpi` without cloning the row.
#[derive(Serialize)]
#[serde(tag = "type", rename = "kpi")]
struct KpiRef<'a> {
    seq: u64,
    family: KpiFamily,
    kpi: &'a Kpi,
}

/// `ServerMessage::Snapshot` without cloning the values.
#[derive(Serialize)]
#[serde(tag = "type", rename = "snapshot")]
struct SnapshotRef<'a> {
    seq: u64,
    windows: Vec<&'a WindowResult>,
    kpis: Vec<&'a Kpi>,
    alerts: Vec<&'a AlertEvent>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dead_letters: Vec<&'a DeadLetterView>,
}

impl ServerMessage {
    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        // Plain structs with string keys: serialisation cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `{"type":"window","seq":n,"data":...}` for `result`.
pub(crate) fn window_json(result: &WindowResult, seq: u64) -> String {
    serde_json::to_string(&WindowRef { seq, data: result }).unwrap_or_default()
}

/// `{"type":"alert","seq":n,"event":...}` for `event`.
pub(crate) fn alert_json(event: &AlertEvent, seq: u64) -> String {
    #[derive(Serialize)]
    #[serde(tag = "type", rename = "alert")]
    struct AlertRef<'a> {
        seq: u64,
        event: &'a AlertEvent,
    }
    serde_json::to_string(&AlertRef { seq, event }).unwrap_or_default()
}

/// `{"type":"dead_letter","seq":n,"dead_letter":...}` for `letter`.
pub(crate) fn dead_letter_json(letter: &DeadLetterView, seq: u64) -> String {
    #[derive(Serialize)]
    #[serde(tag = "type", rename = "dead_letter")]
    struct DeadLetterRef<'a> {
        seq: u64,
        dead_letter: &'a DeadLetterView,
    }
    serde_json::to_string(&DeadLetterRef {
        seq,
        dead_letter: letter,
    })
    .unwrap_or_default()
}

/// `{"type":"kpi","seq":n,"family":"air","kpi":...}` for `kpi`.
pub(crate) fn kpi_json(kpi: &Kpi, seq: u64) -> String {
    serde_json::to_string(&KpiRef {
        seq,
        family: kpi.family(),
        kpi,
    })
    .unwrap_or_default()
}

/// `{"type":"snapshot","seq":n,"windows":[...],"kpis":[...],"alerts":[...]}`.
pub(crate) fn snapshot_json(snapshot: &Snapshot, seq: u64) -> String {
    serde_json::to_string(&SnapshotRef {
        seq,
        windows: snapshot.windows.iter().map(AsRef::as_ref).collect(),
        kpis: snapshot.kpis.iter().map(AsRef::as_ref).collect(),
        alerts: snapshot.alerts.iter().map(AsRef::as_ref).collect(),
        dead_letters: snapshot.dead_letters.iter().map(AsRef::as_ref).collect(),
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(kind: Kind, district: District, device: &str, metric: &str) -> WindowResult {
        WindowResult {
            kind,
            district,
            device_id: device.to_owned(),
            metric: metric.to_owned(),
            window_start_ms: 1_795_827_600_000,
            window_size_ms: 60_000,
            count: 2,
            sum: 3.0,
            min: 1.0,
            max: 2.0,
            mean: 1.5,
            emitted_at_ms: 1_795_827_661_000,
            version: 3,
            is_final: true,
        }
    }

    fn subscribe(json: &str) -> Filter {
        match serde_json::from_str::<ClientMessage>(json).unwrap() {
            ClientMessage::Subscribe(f) => f,
            other => panic!("not a subscribe: {other:?}"),
        }
    }

    #[test]
    fn empty_filter_matches_everything() {
        let f = subscribe(r#"{"type":"subscribe"}"#);
        assert!(f.is_all());
        for kind in Kind::ALL {
            for district in District::ALL {
                assert!(f.matches(&result(kind, district, "d", "m")));
            }
        }
        let f = subscribe(r#"{"type":"subscribe","kinds":[],"districts":null}"#);
        assert!(f.is_all());
    }

    #[test]
    fn every_non_empty_list_must_match() {
        let f = subscribe(
            r#"{"type":"subscribe","kinds":["traffic_signal"],"districts":["hai_chau","son_tra"],
                "devices":["tsc-hai_chau-001","tsc-son_tra-002"],"metrics":["vehicles"]}"#,
        );
        let hit = result(
            Kind::TrafficSignal,
            District::HaiChau,
            "tsc-hai_chau-001",
            "vehicles",
        );
        assert!(f.matches(&hit));
        assert!(f.matches(&WindowResult {
            district: District::SonTra,
            device_id: "tsc-son_tra-002".into(),
            ..hit.clone()
        }));
        assert!(!f.matches(&WindowResult {
            kind: Kind::Sensor,
            ..hit.clone()
        }));
        assert!(!f.matches(&WindowResult {
            district: District::CamLe,
            ..hit.clone()
        }));
        assert!(!f.matches(&WindowResult {
            device_id: "tsc-hai_chau-002".into(),
            ..hit.clone()
        }));
        assert!(!f.matches(&WindowResult {
            metric: "occupancy".into(),
            ..hit.clone()
        }));
    }

    #[test]
    fn single_dimension_filters() {
        let by_district = subscribe(r#"{"type":"subscribe","districts":["hoa_vang"]}"#);
        assert!(by_district.matches(&result(Kind::Environment, District::HoaVang, "x", "pm25")));
        assert!(!by_district.matches(&result(Kind::Environment, District::HaiChau, "x", "pm25")));
        let by_metric = subscribe(r#"{"type":"subscribe","metrics":["pm25"]}"#);
        assert!(by_metric.matches(&result(Kind::Environment, District::HaiChau, "x", "pm25")));
        assert!(!by_metric.matches(&result(Kind::Environment, District::HaiChau, "x", "pm10")));
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        let err = |json: &str| {
            serde_json::from_str::<ClientMessage>(json)
                .unwrap_err()
                .to_string()
        };
        assert!(err(r#"{"type":"subscribe","kinds":["bus"]}"#).contains("unknown variant `bus`"));
        assert!(err(r#"{"type":"subscribe","district":["hai_chau"]}"#)
            .contains("unknown field `district`"));
        assert!(err(r#"{"type":"subscribe","districts":["da_nang"]}"#).contains("da_nang"));
        assert!(err(r#"{"type":"shout"}"#).contains("unknown variant `shout`"));
        assert!(err(r#"{"kinds":[]}"#).contains("missing field `type`"));
        assert!(err("not json").contains("expected"));
    }

    #[test]
    fn server_messages_have_the_documented_shape() {
        let r = result(
            Kind::TrafficSignal,
            District::HaiChau,
            "tsc-hai_chau-001",
            "vehicles",
        );
        let borrowed: serde_json::Value = serde_json::from_str(&window_json(&r, 7)).unwrap();
        let owned = serde_json::to_value(ServerMessage::Window {
            seq: 7,
            data: r.clone(),
        })
        .unwrap();
        assert_eq!(borrowed, owned);
        assert_eq!(borrowed["type"], "window");
        assert_eq!(borrowed["seq"], 7);
        assert_eq!(borrowed["data"]["device_id"], "tsc-hai_chau-001");
        assert_eq!(
            ServerMessage::Hello {
                protocol: 1,
                channels: Channel::all()
            }
            .to_json(),
            r#"{"type":"hello","protocol":1,"channels":["windows","kpi.traffic","kpi.camera","kpi.air","kpi.water","kpi.hydrology","kpi.bridge","kpi.health","alerts","dead_letters"]}"#
        );
        assert_eq!(ServerMessage::Pong.to_json(), r#"{"type":"pong"}"#);
        assert_eq!(
            ServerMessage::Lagged {
                feed: Feed::Kpi,
                skipped: 3
            }
            .to_json(),
            r#"{"type":"lagged","feed":"kpi","skipped":3}"#
        );
        assert_eq!(
            ServerMessage::Subscribed { filter: None }.to_json(),
            r#"{"type":"subscribed","filter":null}"#
        );
        let f = subscribe(r#"{"type":"subscribe","districts":["son_tra","hai_chau","son_tra"]}"#);
        assert_eq!(
            ServerMessage::Subscribed { filter: Some(f) }.to_json(),
            r#"{"type":"subscribed","filter":{"channels":["windows"],"kinds":[],"districts":["hai_chau","son_tra"],"devices":[],"metrics":[]}}"#
        );
        let kpi = air("da-st-01", District::SonTra);
        let borrowed: serde_json::Value = serde_json::from_str(&kpi_json(&kpi, 8)).unwrap();
        let owned = serde_json::to_value(ServerMessage::Kpi {
            seq: 8,
            family: KpiFamily::Air,
            kpi: kpi.clone(),
        })
        .unwrap();
        assert_eq!(borrowed, owned);
        assert_eq!(borrowed["type"], "kpi");
        assert_eq!(borrowed["family"], "air");
        assert_eq!(borrowed["kpi"]["station_id"], "da-st-01");
    }

    #[test]
    fn v2_messages_have_the_documented_shape() {
        let r = result(Kind::Sensor, District::CamLe, "s-1", "pm25");
        let kpi = air("da-st-01", District::SonTra);
        let snapshot = Snapshot {
            windows: vec![Arc::new(r.clone())],
            kpis: vec![Arc::new(kpi.clone())],
            alerts: Vec::new(),
            dead_letters: Vec::new(),
        };
        let borrowed: serde_json::Value =
            serde_json::from_str(&snapshot_json(&snapshot, 4)).unwrap();
        let owned = serde_json::to_value(ServerMessage::Snapshot {
            seq: 4,
            windows: vec![r],
            kpis: vec![kpi],
            alerts: Vec::new(),
            dead_letters: Vec::new(),
        })
        .unwrap();
        assert_eq!(borrowed, owned);
        assert_eq!(borrowed["type"], "snapshot");
        assert_eq!(
            ServerMessage::Heartbeat { seq: 9, at_ms: 12 }.to_json(),
            r#"{"type":"heartbeat","seq":9,"at_ms":12}"#
        );
        assert_eq!(PROTOCOL_VERSION, 2);
    }

    fn air(station: &str, district: District) -> Kpi {
        Kpi::Air(ioc_schemas::AqiKpi {
            station_id: station.into(),
            district,
            period: ioc_schemas::AqiPeriod::Hour,
            window_start_ms: 1_795_827_600_000,
            window_size_ms: 3_600_000,
            pm25: Some(30.0),
            pm10: None,
            o3: None,
            no2: None,
            so2: None,
            co: None,
            o3_8h: None,
            aqi_pm25: Some(60),
            aqi_pm10: None,
            aqi_o3: None,
            aqi_no2: None,
            aqi_so2: None,
            aqi_co: None,
            aqi: Some(60),
            dominant: Some("pm25".into()),
            band: Some(ioc_schemas::AqiBand::Moderate),
            colour: Some("#ffff00".into()),
            advice: None,
            coverage: 12,
        })
    }

    #[test]
    fn channels_default_to_windows_and_pick_kpi_families() {
        let f = subscribe(r#"{"type":"subscribe"}"#);
        assert_eq!(f.channels, BTreeSet::from([Channel::Windows]));
        assert!(!f.matches_kpi(&air("s", District::SonTra)));
        let f = subscribe(r#"{"type":"subscribe","channels":null}"#);
        assert!(f.wants_windows() && !f.wants_kpis());

        let f = subscribe(
            r#"{"type":"subscribe","channels":["kpi.air","kpi.air"],"districts":["son_tra"]}"#,
        );
        assert_eq!(f.channels, BTreeSet::from([Channel::Kpi(KpiFamily::Air)]));
        assert!(!f.wants_windows() && f.wants_kpis());
        assert!(f.matches_kpi(&air("s", District::SonTra)));
        assert!(!f.matches_kpi(&air("s", District::CamLe)));
        assert!(!f.matches(&result(Kind::Environment, District::SonTra, "s", "pm25")));

        let f =
            subscribe(r#"{"type":"subscribe","channels":["windows","kpi.air"],"devices":["s"]}"#);
        assert!(f.matches_kpi(&air("s", District::CamLe)));
        assert!(!f.matches_kpi(&air("t", District::CamLe)));
        assert!(f.matches(&result(Kind::Environment, District::CamLe, "s", "pm25")));

        for name in Channel::all().iter().map(Channel::to_string) {
            assert_eq!(Channel::from_name(&name).map(|c| c.to_string()), Some(name));
        }
        let err = |json: &str| {
            serde_json::from_str::<ClientMessage>(json)
                .unwrap_err()
                .to_string()
        };
        let e = err(r#"{"type":"subscribe","channels":["kpi.noise"]}"#);
        assert!(e.contains("unknown channel `kpi.noise`"), "{e}");
        assert!(e.contains("kpi.hydrology"), "{e}");
        assert!(err(r#"{"type":"subscribe","channels":["air"]}"#).contains("unknown channel `air`"));
        assert!(err(r#"{"type":"subscribe","channels":[]}"#).contains("at least one channel"));
    }
}
