//! Wire and storage types of the Da Nang IOC backend, and (feature `feed`) the in-memory
//! `Feed` from ingest into the dataflow. No I/O lives here.
//!
//! The wire format is one JSON envelope for every reading (see [`Reading`]); the JSON Schema
//! files under `schemas/json/` are generated from these types by [`wire_schemas`].

mod alert;
#[cfg(feature = "http")]
pub mod api_error;
mod auth;
mod district;
mod event_time;
#[cfg(feature = "feed")]
mod feed;
mod ingested;
mod kpi;
pub mod openapi;
pub mod query;
mod reading;
mod registry;
mod reject;
mod topic;
mod window;

pub use alert::{Alert, AlertEvent, AlertState, Category, Comment, Severity, Transition};
pub use auth::{Principal, Role};
pub use district::District;
pub use event_time::{format_rfc3339_ms, now_ms, EpochMs, EventTime};
#[cfg(feature = "feed")]
pub use feed::{Admission, Feed, FeedClosed, FeedPermit, FeedQueues, Topology};
pub use ingested::{
    Ack, DeadLetter, Ingested, IngestedReading, KafkaSource, SourceMark, SourceState, Transport,
};
pub use kpi::{
    AqiAdvice, AqiBand, AqiKpi, AqiPeriod, BridgeKpi, CameraKpi, Congestion, DeviceStatus,
    HealthKpi, HydrologyKpi, Kpi, KpiFamily, Scope, TrafficKpi, WaterKpi,
};
pub use reading::{
    Approach, Body, CameraEventBody, CameraEventType, ControlMode, EnvironmentBody, Kind, Medium,
    Reading, SensorBody, SignalState, TrafficSignalBody, ValidationLimits,
};
pub use registry::{
    fleet_json, parse_fleet, Department, Device, DeviceChange, FleetError, InvalidDevice,
    WaterClass,
};
pub use reject::{RejectCode, Rejection};
pub use topic::{parse_topic, reading_topic, TopicParts, TOPIC_PREFIX};
pub use window::{WindowResult, WindowSpec};

/// The published JSON Schema files: `(file name, pretty JSON)`.
///
/// `reading.schema.json` validates any reading; the per-kind files validate one kind's body,
/// for vendors that build one kind of device.
pub fn wire_schemas() -> Vec<(&'static str, String)> {
    fn pretty(schema: &schemars::Schema) -> String {
        let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
        text.push('\n');
        text
    }
    vec![
        (
            "reading.schema.json",
            pretty(&schemars::schema_for!(Reading)),
        ),
        (
            "sensor-body.schema.json",
            pretty(&schemars::schema_for!(SensorBody)),
        ),
        (
            "traffic-signal-body.schema.json",
            pretty(&schemars::schema_for!(TrafficSignalBody)),
        ),
        (
            "camera-event-body.schema.json",
            pretty(&schemars::schema_for!(CameraEventBody)),
        ),
        (
            "environment-body.schema.json",
            pretty(&schemars::schema_for!(EnvironmentBody)),
        ),
        ("device.schema.json", pretty(&schemars::schema_for!(Device))),
        (
            "alert-event.schema.json",
            pretty(&schemars::schema_for!(AlertEvent)),
        ),
        ("kpi.schema.json", pretty(&schemars::schema_for!(Kpi))),
        (
            "window-result.schema.json",
            pretty(&schemars::schema_for!(WindowResult)),
        ),
    ]
}
