//! Dataflow configuration.

use ioc_schemas::WindowSpec;
use serde::{Deserialize, Serialize};

/// How the event-time dataflow runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// The windows: `{ size_ms = 60000 }` is tumbling, `{ size_ms = 900000, slide_ms = 60000 }`
    /// a 15-minute window starting every minute.
    pub windows: Vec<WindowSpec>,
    /// Most records a worker takes from its queue per dataflow step.
    pub input_batch: usize,
    /// Capacity of each worker's queue from ingest, in records.
    pub input_capacity: usize,
}

impl Default for DataflowConfig {
    fn default() -> Self {
        DataflowConfig {
            workers: 2,
            epoch_ms: 1_000,
            allowed_lateness_ms: 10_000,
            idle_timeout_ms: 5_000,
            windows: vec![WindowSpec::MINUTE, WindowSpec::FIVE_MINUTES],
            input_batch: 8_192,
            input_capacity: 65_536,
        }
    }
}

impl DataflowConfig {
    /// The size of the longest of the [`effective_windows`](Self::effective_windows).
    pub fn longest_window_ms(&self) -> u64 {
        self.effective_windows()
            .iter()
            .map(|w| w.size_ms)
            .max()
            .unwrap_or(0)
    }

    /// The distinct windows to compute: one per size, sliding by the finest slide asked for
    /// that size (a 15-minute tumbling window is one of the 15-minute windows sliding by a
    /// minute, so it is computed once), smallest first. The 5-minute tumbling windows the KPIs
    /// are built on are always among them.
    pub fn effective_windows(&self) -> Vec<WindowSpec> {
        let mut by_size: std::collections::BTreeMap<u64, u64> = Default::default();
        let base = WindowSpec::tumbling(crate::kpi::device::BASE_WINDOW_MS);
        for w in self.windows.iter().chain([&base]) {
            let slide = by_size.entry(w.size_ms).or_insert(w.slide());
            *slide = gcd(*slide, w.slide());
        }
        by_size
            .into_iter()
            .map(|(size, slide)| {
                if slide == size {
                    WindowSpec::tumbling(size)
                } else {
                    WindowSpec::sliding(size, slide)
                }
            })
            .collect()
    }

    /// Where a restart's rebuild of the windows open at the last stop starts, given the newest
    /// stored on-time event time: early enough that every window ending after `margin_ms`
    /// before the watermark the stored readings imply starts after it, aligned down to every
    /// window's slide. Windows starting before it are left out of the rebuild (they closed
    /// before the stop).
    pub fn rebuild_from(&self, newest_ms: u64, margin_ms: u64) -> u64 {
        let windows = self.effective_windows();
        let span = windows
            .iter()
            .fold(1, |lcm, w| lcm / gcd(lcm, w.slide()) * w.slide());
        let longest = windows.iter().map(|w| w.size_ms).max().unwrap_or(0);
        let t = newest_ms
            .saturating_sub(self.allowed_lateness_ms)
            .saturating_sub(margin_ms)
            .saturating_sub(longest);
        t - t % span
    }

    /// Checks the settings fit together.
    pub fn validate(&self) -> Result<(), crate::DataflowError> {
        let bad = |m: String| Err(crate::DataflowError::Config(m));
        if self.workers == 0 {
            return bad("dataflow.workers must be at least 1".into());
        }
        if self.epoch_ms == 0 {
            return bad("dataflow.epoch_ms must be at least 1".into());
        }
        if self.windows.is_empty() {
            return bad("dataflow.windows must name at least one window".into());
        }
        for w in &self.windows {
            let (size, slide) = (w.size_ms, w.slide());
            if size == 0 || slide == 0 || size % slide != 0 || slide % self.epoch_ms != 0 {
                return bad(format!(
                    "dataflow.windows entry {}: size_ms ({size}) must be a positive multiple of \
                     slide_ms ({slide}), itself a multiple of epoch_ms ({})",
                    w.label(),
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

/// The greatest common divisor: window slides and sizes are combined by it (the dataflow's
/// one copy).
pub(crate) fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Where this process sits in a timely cluster: `iocd run` on every machine with the same
/// file, each with its own `process`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// One `host:port` per process, in process-id order, where the processes' workers reach
    /// each other; empty for a single process.
    pub addresses: Vec<String>,
    /// This process's id, its index in `addresses` (also `IOC__CLUSTER__PROCESS`).
    pub process: usize,
}

impl ClusterConfig {
    /// This process's place in the cluster, with `workers` workers a process: how ingest's
    /// records are routed to the workers (see [`ioc_schemas::Feed`]).
    pub fn topology(&self, workers: usize) -> ioc_schemas::Topology {
        ioc_schemas::Topology {
            processes: self.processes(),
            process: self.process,
            workers,
        }
    }

    /// How many processes run the dataflow.
    pub fn processes(&self) -> usize {
        self.addresses.len().max(1)
    }

    /// Whether this process is one of several.
    pub fn is_cluster(&self) -> bool {
        self.addresses.len() > 1
    }

    /// Whether this process is the first: the one whose workers put out windows, KPIs and
    /// alerts, and take the registry's changes.
    pub fn is_first(&self) -> bool {
        self.process == 0
    }

    /// Checks that `process` names one of the addresses.
    pub fn validate(&self) -> Result<(), crate::DataflowError> {
        if self.is_cluster() && self.process >= self.addresses.len() {
            return Err(crate::DataflowError::Config(format!(
                "cluster.process ({}) must be below the number of cluster.addresses ({})",
                self.process,
                self.addresses.len()
            )));
        }
        if !self.is_cluster() && self.process != 0 {
            return Err(crate::DataflowError::Config(format!(
                "cluster.process is {} but cluster.addresses names fewer than two processes",
                self.process
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rebuild_starts_a_window_before_the_watermark_on_every_slide() {
        let t = |h: u64, m: u64, s: u64| ((h * 60 + m) * 60 + s) * 1000;
        let tumbling = DataflowConfig {
            allowed_lateness_ms: 10_000,
            windows: vec![WindowSpec::MINUTE, WindowSpec::tumbling(900_000)],
            ..DataflowConfig::default()
        };
        // Newest 10:37:30 → watermark 10:37:20 → minus the 60 s margin and the 15-minute
        // window 10:21:20 → on a 15-minute boundary 10:15:00.
        assert_eq!(tumbling.rebuild_from(t(10, 37, 30), 60_000), t(10, 15, 0));
        assert_eq!(tumbling.rebuild_from(5_000, 60_000), 0);
        let sliding = DataflowConfig {
            windows: vec![WindowSpec::sliding(900_000, 60_000)],
            ..tumbling
        };
        // The same, on a boundary of both the minute slide and the 5-minute KPI base windows
        // that are always computed: 10:20:00.
        assert_eq!(sliding.rebuild_from(t(10, 37, 30), 60_000), t(10, 20, 0));
    }

    #[test]
    fn gcd_of_window_lengths() {
        assert_eq!(gcd(900_000, 60_000), 60_000);
        assert_eq!(gcd(300_000, 120_000), 60_000);
        assert_eq!(gcd(7, 0), 7);
    }
}
