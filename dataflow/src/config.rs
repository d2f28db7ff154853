//! Dataflow configuration.

use serde::{Deserialize, Serialize};

/// How the event-time dataflow runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataflowConfig {
    /// Timely worker threads in this process; readings are exchanged between them by device.
    pub workers: usize,
    /// Epoch granularity in ms: event times are rounded down to it to form timely timestamps,
    /// so readings of one epoch travel as one batch. Must divide every window size.
    pub epoch_ms: u64,
    /// How late (ms behind the newest event time seen) a reading may arrive and still count in
    /// its window. A window is emitted once the watermark (newest event time minus this) passes
    /// its end.
    pub allowed_lateness_ms: u64,
    /// After this long (ms, wall clock) without any reading, event time is taken to advance
    /// with the wall clock, so windows still close when every source is quiet.
    pub idle_timeout_ms: u64,
    /// Tumbling window sizes in ms.
    pub window_sizes_ms: Vec<u64>,
    /// Most records taken from the input queue per dataflow step.
    pub input_batch: usize,
    /// Capacity of the queue from ingest into the dataflow, in records.
    pub input_capacity: usize,
}

impl Default for DataflowConfig {
    fn default() -> Self {
        DataflowConfig {
            workers: 2,
            epoch_ms: 1_000,
            allowed_lateness_ms: 10_000,
            idle_timeout_ms: 5_000,
            window_sizes_ms: vec![60_000, 300_000],
            input_batch: 8_192,
            input_capacity: 65_536,
        }
    }
}

impl DataflowConfig {
    /// Checks the settings fit together.
    pub fn validate(&self) -> Result<(), crate::DataflowError> {
        let bad = |m: String| Err(crate::DataflowError::Config(m));
        if self.workers == 0 {
            return bad("dataflow.workers must be at least 1".into());
        }
        if self.epoch_ms == 0 {
            return bad("dataflow.epoch_ms must be at least 1".into());
        }
        if self.window_sizes_ms.is_empty() {
            return bad("dataflow.window_sizes_ms must name at least one window".into());
        }
        for &size in &self.window_sizes_ms {
            if size == 0 || size % self.epoch_ms != 0 {
                return bad(format!(
                    "dataflow.window_sizes_ms entry {size} must be a positive multiple of epoch_ms ({})",
                    self.epoch_ms
                ));
            }
        }
        if self.input_batch == 0 || self.input_capacity == 0 {
            return bad("dataflow.input_batch and input_capacity must be at least 1".into());
        }
        Ok(())
    }
}
