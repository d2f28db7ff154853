//! The WebSocket protocol's messages (described in the crate docs).

use std::collections::BTreeSet;

use ioc_schemas::{District, Kind, WindowResult};
use serde::{Deserialize, Deserializer, Serialize};

/// The protocol version announced in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Which window results a client wants. Each empty set means "all"; a result must match
/// every non-empty set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filter {
    /// Kinds wanted (`traffic_signal`, ...).
    #[serde(deserialize_with = "null_as_empty")]
    pub kinds: BTreeSet<Kind>,
    /// Districts wanted, by slug (`hai_chau`, ...).
    #[serde(deserialize_with = "null_as_empty")]
    pub districts: BTreeSet<District>,
    /// Device ids wanted.
    #[serde(deserialize_with = "null_as_empty")]
    pub devices: BTreeSet<String>,
    /// Metric names wanted (`vehicles`, `pm25`, ...).
    #[serde(deserialize_with = "null_as_empty")]
    pub metrics: BTreeSet<String>,
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
    /// Whether `result` passes the filter.
    pub fn matches(&self, result: &WindowResult) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&result.kind))
            && (self.districts.is_empty() || self.districts.contains(&result.district))
            && (self.devices.is_empty() || self.devices.contains(&result.device_id))
            && (self.metrics.is_empty() || self.metrics.contains(&result.metric))
    }

    /// Whether the filter lets everything through.
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
    /// Start (or replace the filter of) the stream of window results.
    Subscribe(Filter),
    /// Stop the stream.
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
    },
    /// The filter now in force after a subscribe; `null` after an unsubscribe.
    Subscribed {
        /// The filter, normalised (sorted, duplicates removed).
        filter: Option<Filter>,
    },
    /// A window result that passed the filter.
    Window {
        /// The result.
        data: WindowResult,
    },
    /// The client fell behind and `skipped` results (before filtering) were dropped for it;
    /// updates continue with the newest the server still holds.
    Lagged {
        /// Results skipped.
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

/// `ServerMessage::Window` without cloning the result (one serialisation per client).
#[derive(Serialize)]
#[serde(tag = "type", rename = "window")]
struct WindowRef<'a> {
    data: &'a WindowResult,
}

impl ServerMessage {
    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        // Plain structs with string keys: serialisation cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `{"type":"window","data":...}` for `result`.
pub(crate) fn window_json(result: &WindowResult) -> String {
    serde_json::to_string(&WindowRef { data: result }).unwrap_or_default()
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
        let borrowed: serde_json::Value = serde_json::from_str(&window_json(&r)).unwrap();
        let owned = serde_json::to_value(ServerMessage::Window { data: r.clone() }).unwrap();
        assert_eq!(borrowed, owned);
        assert_eq!(borrowed["type"], "window");
        assert_eq!(borrowed["data"]["device_id"], "tsc-hai_chau-001");
        assert_eq!(
            ServerMessage::Hello { protocol: 1 }.to_json(),
            r#"{"type":"hello","protocol":1}"#
        );
        assert_eq!(ServerMessage::Pong.to_json(), r#"{"type":"pong"}"#);
        assert_eq!(
            ServerMessage::Lagged { skipped: 3 }.to_json(),
            r#"{"type":"lagged","skipped":3}"#
        );
        assert_eq!(
            ServerMessage::Subscribed { filter: None }.to_json(),
            r#"{"type":"subscribed","filter":null}"#
        );
        let f = subscribe(r#"{"type":"subscribe","districts":["son_tra","hai_chau","son_tra"]}"#);
        assert_eq!(
            ServerMessage::Subscribed { filter: Some(f) }.to_json(),
            r#"{"type":"subscribed","filter":{"kinds":[],"districts":["hai_chau","son_tra"],"devices":[],"metrics":[]}}"#
        );
    }
}
