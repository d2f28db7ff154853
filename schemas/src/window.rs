//! Window definitions and the results the dataflow emits.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::district::District;
use crate::event_time::EpochMs;
use crate::reading::Kind;

/// A tumbling event-time window length.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct WindowSpec {
    /// The window length in milliseconds; windows start at multiples of it since the epoch.
    pub size_ms: u64,
}

impl WindowSpec {
    /// One minute.
    pub const MINUTE: WindowSpec = WindowSpec { size_ms: 60_000 };
    /// Five minutes.
    pub const FIVE_MINUTES: WindowSpec = WindowSpec { size_ms: 300_000 };

    /// The start of the window holding `t`.
    pub fn start_of(self, t: EpochMs) -> EpochMs {
        t - t % self.size_ms
    }

    /// A short label such as `1m`, `5m`, `1h` or `90s`.
    pub fn label(self) -> String {
        let s = self.size_ms / 1000;
        match s {
            _ if self.size_ms % 1000 != 0 => format!("{}ms", self.size_ms),
            _ if s % 3600 == 0 => format!("{}h", s / 3600),
            _ if s % 60 == 0 => format!("{}m", s / 60),
            _ => format!("{s}s"),
        }
    }
}

/// The aggregate of one metric of one device over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WindowResult {
    /// The kind of the readings.
    pub kind: Kind,
    /// The device's district.
    pub district: District,
    /// The device.
    pub device_id: String,
    /// The metric aggregated (see `Reading::samples`).
    pub metric: String,
    /// Window start, epoch ms (inclusive).
    pub window_start_ms: EpochMs,
    /// Window length in ms; the window ends (exclusive) at start + size.
    pub window_size_ms: u64,
    /// Number of samples.
    pub count: u64,
    /// Sum of the samples.
    pub sum: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// `sum / count`.
    pub mean: f64,
    /// When the dataflow emitted this result, epoch ms (wall clock).
    pub emitted_at_ms: EpochMs,
}

impl WindowResult {
    /// The window's exclusive end.
    pub fn window_end_ms(&self) -> EpochMs {
        self.window_start_ms + self.window_size_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_the_epoch() {
        assert_eq!(
            WindowSpec::FIVE_MINUTES.start_of(1_795_827_659_999),
            1_795_827_600_000
        );
        assert_eq!(WindowSpec::MINUTE.label(), "1m");
        assert_eq!(WindowSpec::FIVE_MINUTES.label(), "5m");
        assert_eq!(WindowSpec { size_ms: 3_600_000 }.label(), "1h");
        assert_eq!(WindowSpec { size_ms: 1500 }.label(), "1500ms");
    }
}
