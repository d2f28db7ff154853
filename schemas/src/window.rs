//! Window definitions and the results the dataflow emits.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::district::District;
use crate::event_time::EpochMs;
use crate::reading::Kind;

/// An event-time window: `size_ms` long, a new one starting every `slide_ms` (tumbling when
/// the slide is the size, or absent). Windows start at multiples of the slide since the epoch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// The window length in milliseconds.
    pub size_ms: u64,
    /// How often a window starts, in milliseconds; the size when absent (tumbling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slide_ms: Option<u64>,
}

impl WindowSpec {
    /// One minute, tumbling.
    pub const MINUTE: WindowSpec = WindowSpec::tumbling(60_000);
    /// Five minutes, tumbling.
    pub const FIVE_MINUTES: WindowSpec = WindowSpec::tumbling(300_000);

    /// Tumbling windows of `size_ms`.
    pub const fn tumbling(size_ms: u64) -> WindowSpec {
        WindowSpec {
            size_ms,
            slide_ms: None,
        }
    }

    /// Windows of `size_ms` starting every `slide_ms`.
    pub const fn sliding(size_ms: u64, slide_ms: u64) -> WindowSpec {
        WindowSpec {
            size_ms,
            slide_ms: Some(slide_ms),
        }
    }

    /// How often a window starts.
    pub fn slide(self) -> u64 {
        self.slide_ms.unwrap_or(self.size_ms)
    }

    /// The starts of every window holding `t`, latest first.
    pub fn starts_of(self, t: EpochMs) -> impl Iterator<Item = EpochMs> {
        let slide = self.slide().max(1);
        let latest = t - t % slide;
        let size = self.size_ms;
        (0..)
            .map(move |k: u64| k * slide)
            .take_while(move |back| *back <= latest && latest - back + size > t)
            .map(move |back| latest - back)
    }

    /// A short label such as `1m`, `5m`, `1h`, `90s`, or `15m/1m` for a sliding window.
    pub fn label(self) -> String {
        let size = duration_label(self.size_ms);
        if self.slide() == self.size_ms {
            size
        } else {
            format!("{size}/{}", duration_label(self.slide()))
        }
    }
}

fn duration_label(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        _ if !ms.is_multiple_of(1000) => format!("{ms}ms"),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
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
    /// Grows with every correction; a higher version supersedes (retracts) a lower one of the
    /// same window. `2 × count + 1` for the final result, `2 × count` before.
    pub version: u32,
    /// Whether the watermark has passed the window's end: no reading can change it any more.
    pub is_final: bool,
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
        let starts: Vec<_> = WindowSpec::FIVE_MINUTES
            .starts_of(1_795_827_659_999)
            .collect();
        assert_eq!(starts, vec![1_795_827_600_000]);
        assert_eq!(WindowSpec::MINUTE.label(), "1m");
        assert_eq!(WindowSpec::FIVE_MINUTES.label(), "5m");
        assert_eq!(WindowSpec::tumbling(3_600_000).label(), "1h");
        assert_eq!(WindowSpec::tumbling(1500).label(), "1500ms");
        assert_eq!(WindowSpec::sliding(900_000, 60_000).label(), "15m/1m");
    }

    #[test]
    fn a_time_is_in_size_over_slide_sliding_windows() {
        let w = WindowSpec::sliding(15, 5);
        assert_eq!(w.starts_of(17).collect::<Vec<_>>(), vec![15, 10, 5]);
        assert_eq!(w.starts_of(15).collect::<Vec<_>>(), vec![15, 10, 5]);
        assert_eq!(w.starts_of(14).collect::<Vec<_>>(), vec![10, 5, 0]);
        // Near the epoch there are fewer.
        assert_eq!(w.starts_of(3).collect::<Vec<_>>(), vec![0]);
    }
}
