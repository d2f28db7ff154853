//! The event-time watermark, tracked per input source (a Kafka partition, an MQTT connection).
//!
//! Each source's watermark is the newest event time it has delivered minus the allowed
//! lateness. The global watermark is the least over the sources that are not idle: a source
//! silent for `idle_timeout_ms` (wall clock) stops holding time back. When every source is
//! idle, event time runs on with the wall clock from the newest event time seen, so windows
//! still close when the whole city goes quiet. The global watermark never goes back; a reading
//! older than it is late.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy)]
struct Source {
    /// The newest event time delivered.
    newest_ms: u64,
    /// Wall time of the last delivery.
    arrived_at_ms: u64,
}

/// Watermarks of every source and the global one.
#[derive(Debug, Clone)]
pub struct Watermarks {
    lateness_ms: u64,
    idle_timeout_ms: u64,
    sources: BTreeMap<String, Source>,
    global_ms: u64,
}

impl Watermarks {
    /// No source yet; the watermark is 0.
    pub fn new(lateness_ms: u64, idle_timeout_ms: u64) -> Watermarks {
        Watermarks {
            lateness_ms,
            idle_timeout_ms,
            sources: BTreeMap::new(),
            global_ms: 0,
        }
    }

    /// The global watermark, epoch ms.
    pub fn watermark(&self) -> u64 {
        self.global_ms
    }

    /// Whether a reading at `event_ms` is later than the allowed lateness.
    pub fn is_late(&self, event_ms: u64) -> bool {
        event_ms < self.global_ms
    }

    /// Records a reading from `source` at `event_ms`, arriving at wall time `now_ms`, and moves
    /// the global watermark at once, so the next reading is judged against it.
    pub fn observe(&mut self, source: &str, event_ms: u64, now_ms: u64) {
        self.record(source, event_ms, now_ms);
        self.tick(now_ms);
    }

    fn record(&mut self, source: &str, event_ms: u64, now_ms: u64) {
        match self.sources.get_mut(source) {
            Some(s) => {
                s.newest_ms = s.newest_ms.max(event_ms);
                s.arrived_at_ms = now_ms;
            }
            None => {
                self.sources.insert(
                    source.to_owned(),
                    Source {
                        newest_ms: event_ms,
                        arrived_at_ms: now_ms,
                    },
                );
            }
        }
    }

    /// Raises the global watermark as if a reading at `event_ms` had been seen by every source
    /// (the restart replay, which stands for what the sources delivered before the stop).
    pub fn raise(&mut self, event_ms: u64) {
        self.global_ms = self
            .global_ms
            .max(event_ms.saturating_sub(self.lateness_ms));
    }

    /// Recomputes the global watermark at wall time `now_ms`.
    pub fn tick(&mut self, now_ms: u64) {
        let idle = |s: &Source| now_ms.saturating_sub(s.arrived_at_ms) >= self.idle_timeout_ms;
        let active = self
            .sources
            .values()
            .filter(|s| !idle(s))
            .map(|s| s.newest_ms)
            .min();
        let clock = match active {
            Some(least) => least,
            // All quiet: event time runs on with the wall clock from the newest reading.
            None => match self
                .sources
                .values()
                .map(|s| s.newest_ms + now_ms.saturating_sub(s.arrived_at_ms))
                .max()
            {
                Some(clock) => clock,
                None => return,
            },
        };
        self.raise(clock);
    }

    /// Each source's own watermark, for metrics.
    pub fn per_source(&self) -> impl Iterator<Item = (&str, u64)> {
        self.sources
            .iter()
            .map(|(name, s)| (name.as_str(), s.newest_ms.saturating_sub(self.lateness_ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_active_source_holds_time() {
        let mut w = Watermarks::new(10_000, 5_000);
        w.observe("p1", 60_000, 0);
        w.observe("p0", 100_000, 0);
        w.tick(1);
        assert_eq!(w.watermark(), 50_000);
        w.observe("p1", 130_000, 2);
        w.tick(2);
        assert_eq!(w.watermark(), 90_000, "now p0 is behind");
        w.observe("p1", 50_000, 3); // out of order: no step back
        w.tick(3);
        assert_eq!(w.watermark(), 90_000);
        assert!(w.is_late(89_999));
        assert!(!w.is_late(90_000));
    }

    #[test]
    fn an_idle_source_stops_holding_time_back() {
        let mut w = Watermarks::new(10_000, 5_000);
        w.observe("quiet", 100_000, 0);
        w.observe("busy", 100_000, 0);
        for i in 1..=10 {
            w.observe("busy", 100_000 + i * 60_000, i * 1_000);
            // While "quiet" still counts, it holds time at its own watermark.
            let expected = if i < 5 {
                90_000
            } else {
                100_000 + i * 60_000 - 10_000
            };
            assert_eq!(w.watermark(), expected, "after {i} s");
        }
        // "quiet" has been silent for 10 s (> 5 s): only "busy" counts.
        assert_eq!(w.watermark(), 100_000 + 600_000 - 10_000);
    }

    #[test]
    fn when_every_source_is_idle_the_wall_clock_drives_time() {
        let mut w = Watermarks::new(10_000, 5_000);
        w.observe("a", 100_000, 1_000);
        w.tick(5_999);
        assert_eq!(w.watermark(), 90_000);
        w.tick(6_000); // idle for the timeout: the clock runs on from the last arrival
        assert_eq!(w.watermark(), 95_000);
        w.tick(21_000);
        assert_eq!(w.watermark(), 110_000);
        // A new reading behind the advanced clock does not move it back.
        w.observe("a", 105_000, 21_001);
        w.tick(21_002);
        assert_eq!(w.watermark(), 110_000);
    }

    #[test]
    fn a_replay_raises_the_watermark_without_a_source() {
        let mut w = Watermarks::new(10_000, 5_000);
        w.raise(500_000);
        w.tick(0);
        assert_eq!(w.watermark(), 490_000);
        w.observe("p0", 400_000, 1);
        w.tick(1);
        assert_eq!(w.watermark(), 490_000, "never back");
    }
}
