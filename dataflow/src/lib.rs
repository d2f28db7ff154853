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
pub use driver::{feed, spawn, DataflowHandle, Outputs, RunOptions};
pub use ioc_schemas::{Feed, FeedQueues, Topology};
pub use metrics::{ByKind, DataflowMetrics};
pub use name::{device_route, Name, NAME_LIMIT};
pub use registry::{
    join_registry, registry_changes, DeviceMeta, Enriched, Observation, RegistryChanges,
    RegistryFeed, Samples,
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
    /// The configuration does not fit together.
    #[error("invalid dataflow config: {0}")]
    Config(String),
    /// A thread of the dataflow could not be started.
    #[error("cannot start the {thread} thread")]
    Thread {
        /// The thread's name.
        thread: &'static str,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// timely could not start the workers: in a cluster, its network (a port to listen on, a
    /// peer's handshake). timely reports the cause as text only.
    #[error("cannot start the timely workers: {reason}")]
    Start {
        /// timely's account of it.
        reason: String,
    },
    /// A worker panicked.
    #[error("a dataflow worker panicked: {message}")]
    Panicked {
        /// The panic's message, when it has one.
        message: String,
    },
}

impl DataflowError {
    /// Whether retrying may succeed, per variant:
    ///
    /// - `Config`: the same settings fail again.
    /// - `Thread`: the system refuses a thread when it is short of threads or memory, which
    ///   passes as others end.
    /// - `Start`: in a cluster, mostly a port still held by the previous run, or a peer
    ///   restarting during the handshake, which pass (timely already waits for peers that are
    ///   not up yet); a wrong address is caught as `Config` first.
    /// - `Panicked`: a program fault; the same input panics again.
    pub fn is_retryable(&self) -> bool {
        match self {
            DataflowError::Thread { .. } | DataflowError::Start { .. } => true,
            DataflowError::Config(_) | DataflowError::Panicked { .. } => false,
        }
    }

    /// A worker's panic, with its message when it is text.
    pub(crate) fn panicked(payload: &(dyn std::any::Any + Send)) -> DataflowError {
        let message = payload
            .downcast_ref::<&str>()
            .map(|m| (*m).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        DataflowError::Panicked { message }
    }
}
