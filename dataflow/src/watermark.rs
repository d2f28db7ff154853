//! The event-time watermark: the newest event time seen minus the allowed lateness, pushed on
//! by the wall clock while input is idle.

/// Tracks the watermark of one input.
///
/// A reading with event time `t` is on time when `t >= watermark()`; otherwise it is late.
/// The watermark never goes back.
#[derive(Debug, Clone)]
pub struct Watermark {
    lateness_ms: u64,
    idle_timeout_ms: u64,
    /// The newest event time seen, or advanced to while idle.
    event_clock_ms: Option<u64>,
    /// Wall time of the last reading and the event clock at that moment.
    last_arrival: Option<(u64, u64)>,
}

impl Watermark {
    /// A watermark with the given lateness and idle timeout.
    pub fn new(lateness_ms: u64, idle_timeout_ms: u64) -> Watermark {
        Watermark {
            lateness_ms,
            idle_timeout_ms,
            event_clock_ms: None,
            last_arrival: None,
        }
    }

    /// The current watermark in epoch ms; 0 before any reading.
    pub fn watermark(&self) -> u64 {
        self.event_clock_ms
            .map_or(0, |c| c.saturating_sub(self.lateness_ms))
    }

    /// Whether a reading at `event_ms` is later than the allowed lateness.
    pub fn is_late(&self, event_ms: u64) -> bool {
        event_ms < self.watermark()
    }

    /// Records an on-time reading's event time, arriving at wall time `now_ms`.
    pub fn observe(&mut self, event_ms: u64, now_ms: u64) {
        let clock = self.event_clock_ms.map_or(event_ms, |c| c.max(event_ms));
        self.event_clock_ms = Some(clock);
        self.last_arrival = Some((now_ms, clock));
    }

    /// Advances the event clock with the wall clock once input has been idle for the idle
    /// timeout: the clock then runs on from where it stood at the last arrival, at wall speed.
    pub fn tick(&mut self, now_ms: u64) {
        let Some((arrived_at, clock_then)) = self.last_arrival else {
            return;
        };
        let idle = now_ms.saturating_sub(arrived_at);
        if idle >= self.idle_timeout_ms {
            let advanced = clock_then + idle;
            self.event_clock_ms = Some(self.event_clock_ms.map_or(advanced, |c| c.max(advanced)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_newest_event_time_minus_lateness() {
        let mut w = Watermark::new(10_000, 5_000);
        assert_eq!(w.watermark(), 0);
        w.observe(100_000, 1);
        assert_eq!(w.watermark(), 90_000);
        w.observe(95_000, 2); // out of order: no step back
        assert_eq!(w.watermark(), 90_000);
        assert!(w.is_late(89_999));
        assert!(!w.is_late(90_000));
    }

    #[test]
    fn idle_input_lets_the_wall_clock_advance_time() {
        let mut w = Watermark::new(10_000, 5_000);
        w.observe(100_000, 1_000);
        w.tick(5_999); // idle for less than the timeout
        assert_eq!(w.watermark(), 90_000);
        w.tick(6_000); // idle for exactly the timeout: clock runs on from the last arrival
        assert_eq!(w.watermark(), 95_000);
        w.tick(21_000);
        assert_eq!(w.watermark(), 110_000);
        // A new reading behind the advanced clock does not move it back.
        w.observe(105_000, 21_001);
        assert_eq!(w.watermark(), 110_000);
        w.tick(21_002);
        assert_eq!(w.watermark(), 110_000);
    }
}
