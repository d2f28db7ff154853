//! MQTT topics: `ioc/v1/<kind>/<district>/<device_id>`.

use crate::district::District;
use crate::reading::Kind;
use crate::reject::{RejectCode, Rejection};

/// The first two levels of every reading topic.
pub const TOPIC_PREFIX: &str = "ioc/v1";

/// What a reading's topic says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicParts<'a> {
    /// The kind level.
    pub kind: Kind,
    /// The district level.
    pub district: District,
    /// The device level.
    pub device_id: &'a str,
}

/// The topic a device publishes its readings to.
pub fn reading_topic(kind: Kind, district: District, device_id: &str) -> String {
    format!("{TOPIC_PREFIX}/{kind}/{district}/{device_id}")
}

/// Parses a reading topic, naming the level that is wrong.
pub fn parse_topic(topic: &str) -> Result<TopicParts<'_>, Rejection> {
    let mismatch = |detail: String| Rejection::new(RejectCode::SourceMismatch, detail);
    let rest = topic
        .strip_prefix(TOPIC_PREFIX)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| {
            mismatch(format!(
                "topic `{topic}` does not start with `{TOPIC_PREFIX}/`"
            ))
        })?;
    let mut levels = rest.split('/');
    let (Some(kind), Some(district), Some(device_id), None) =
        (levels.next(), levels.next(), levels.next(), levels.next())
    else {
        return Err(mismatch(format!(
            "topic `{topic}` is not of the form `{TOPIC_PREFIX}/<kind>/<district>/<device_id>`"
        )));
    };
    let kind = Kind::from_name(kind)
        .ok_or_else(|| mismatch(format!("topic `{topic}` names the unknown kind `{kind}`")))?;
    let district = District::from_slug(district).ok_or_else(|| {
        mismatch(format!(
            "topic `{topic}` names the unknown district `{district}`"
        ))
    })?;
    if device_id.is_empty() {
        return Err(mismatch(format!("topic `{topic}` has an empty device id")));
    }
    Ok(TopicParts {
        kind,
        district,
        device_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_builds_topics() {
        let t = reading_topic(Kind::Environment, District::SonTra, "aq-son_tra");
        assert_eq!(t, "ioc/v1/environment/son_tra/aq-son_tra");
        let p = parse_topic(&t).unwrap();
        assert_eq!(p.kind, Kind::Environment);
        assert_eq!(p.district, District::SonTra);
        assert_eq!(p.device_id, "aq-son_tra");
    }

    #[test]
    fn names_the_wrong_level() {
        let e = parse_topic("ioc/v1/radar/son_tra/x").unwrap_err();
        assert!(e.detail.contains("unknown kind `radar`"), "{}", e.detail);
        let e = parse_topic("ioc/v1/sensor/quang_nam/x").unwrap_err();
        assert!(e.detail.contains("unknown district `quang_nam`"));
        let e = parse_topic("ioc/v1/sensor/son_tra").unwrap_err();
        assert!(e.detail.contains("is not of the form"));
        let e = parse_topic("other/sensor").unwrap_err();
        assert!(e.detail.contains("does not start with"));
    }
}
