//! The event-time dataflow of the Da Nang IOC backend, on timely dataflow.
//!
//! Event time is the timely timestamp: a reading's event time, rounded down to the epoch
//! (`epoch_ms`), is the time its samples travel at, so one epoch's readings move as one batch.
//! The input frontier follows the watermark — the newest event time seen minus the allowed
//! lateness, pushed on by the wall clock when input is idle — and a window is emitted once the
//! frontier passes its end. Readings older than the watermark are late: stored raw, counted,
//! and left out of windows. State is bounded by the lateness horizon: windows leave memory when
//! they close and message ids are forgotten once a repeat would be late anyway.

mod clock;
mod collect;
mod config;
mod dedupe;
mod driver;
mod input;
pub mod kpi;
mod metrics;
mod name;
mod registry;
mod watermark;
mod window;
mod wire;

pub use clock::{Clock, ManualClock, SystemClock};
pub use collect::{Collected, Emitted};
pub use config::{ClusterConfig, DataflowConfig};
pub use dedupe::RecentIds;
pub use driver::{spawn, DataflowHandle, Outputs, RunOptions};
pub use input::Topology;
pub use metrics::DataflowMetrics;
pub use name::{Name, NAME_LIMIT};
pub use registry::{
    device_route, join_registry, registry_changes, DeviceMeta, Enriched, Observation,
    RegistryChanges, RegistryFeed,
};
pub use watermark::Watermarks;
pub use window::{event_time_windows, result_version, Agg, Sample, SeriesKey};

/// A hash map for the per-reading paths: foldhash instead of SipHash (keys are device ids
/// and metric names; the per-process random seed still spreads crafted ones).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The set of [`FastMap`].
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// What can go wrong running the dataflow.
#[derive(Debug, thiserror::Error)]
pub enum DataflowError {
    /// The configuration does not fit together. Permanent.
    #[error("invalid dataflow config: {0}")]
    Config(String),
    /// A worker could not start or failed. Permanent for this run.
    #[error("dataflow worker failed: {0}")]
    Worker(String),
}

impl DataflowError {
    /// Whether retrying may succeed: never, both are configuration or program faults.
    pub fn is_retryable(&self) -> bool {
        false
    }
}
