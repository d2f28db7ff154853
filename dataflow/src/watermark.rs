//! The event-time watermark, tracked per input source (a Kafka partition, an MQTT connection).
//!
//! Each source's watermark is the newest event time it has delivered minus the allowed
//! lateness; the global watermark is the least over the sources that hold time back, and it
//! never goes back. A reading older than it is late.
//!
//! Which sources hold time back:
//! - a Kafka partition from the moment it is assigned: until it delivers its first reading it
//!   holds time where it is (it may still deliver anything), and while it is behind its end it
//!   holds time at its newest reading however long it takes, so a backlog read partition by
//!   partition is judged in event-time order, as if it had arrived live;
//! - a partition that has caught up with its end, and any other source (MQTT), holds time at
//!   its newest reading until it has been silent for `idle_timeout_ms` of wall time; an empty
//!   partition holds nothing.
//!
//! When no source holds time back, event time runs on with the wall clock from the newest
//! reading, so windows still close when the whole city goes quiet.

use ioc_schemas::{SourceMark, SourceState};

#[derive(Debug, Clone, Copy)]
struct Source {
    /// The newest event time delivered; none yet.
    newest_ms: Option<u64>,
    /// Wall time of the last delivery (or of the assignment).
    arrived_at_ms: u64,
    /// A Kafka partition with more to deliver (or that has not said otherwise): never idle.
    behind: bool,
    /// The offset a caught-up mark covers: a reading at or after it means there was more.
    caught_up_until: Option<i64>,
}

impl Source {
    /// Assigned and not yet heard from: it may deliver anything.
    fn pending(&self) -> bool {
        self.behind && self.newest_ms.is_none()
    }
}

/// Watermarks of every source and the global one.
#[derive(Debug, Clone)]
pub struct Watermarks {
    lateness_ms: u64,
    idle_timeout_ms: u64,
    /// Every reading looks its source up and the watermark is recomputed over all of them, so
    /// they are kept in a vector (a worker feeds a few partitions) with an index by name.
    sources: Vec<(String, Source)>,
    by_name: crate::FastMap<String, usize>,
    /// The source looked up last: a batch's readings mostly come from one partition.
    last: usize,
    global_ms: u64,
}

impl Watermarks {
    /// No source yet; the watermark is 0.
    pub fn new(lateness_ms: u64, idle_timeout_ms: u64) -> Watermarks {
        Watermarks {
            lateness_ms,
            idle_timeout_ms,
            sources: Vec::new(),
            by_name: crate::FastMap::default(),
            last: 0,
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
    /// the global watermark at once, so the next reading is judged against it. `offset` is the
    /// reading's Kafka offset, if it has one.
    pub fn observe(&mut self, source: &str, offset: Option<i64>, event_ms: u64, now_ms: u64) {
        match self.find(source).map(|at| &mut self.sources[at].1) {
            Some(s) => {
                s.newest_ms = Some(s.newest_ms.map_or(event_ms, |n| n.max(event_ms)));
                s.arrived_at_ms = now_ms;
                if let (Some(offset), Some(until)) = (offset, s.caught_up_until) {
                    s.behind |= offset >= until;
                }
            }
            None => {
                // A source that was never announced (MQTT, or Kafka without marks) follows the
                // wall-clock idle rule.
                self.insert(
                    source,
                    Source {
                        newest_ms: Some(event_ms),
                        arrived_at_ms: now_ms,
                        behind: false,
                        caught_up_until: None,
                    },
                );
            }
        }
        self.tick(now_ms);
    }

    /// Applies a source's change of standing at wall time `now_ms`.
    pub fn mark(&mut self, mark: &SourceMark, now_ms: u64) {
        match mark.state {
            SourceState::Assigned => {
                self.insert(
                    &mark.source,
                    Source {
                        newest_ms: None,
                        arrived_at_ms: now_ms,
                        behind: true,
                        caught_up_until: None,
                    },
                );
            }
            SourceState::CaughtUp { next_offset } => {
                if let Some(at) = self.find(&mark.source) {
                    let s = &mut self.sources[at].1;
                    s.behind = false;
                    s.caught_up_until = Some(next_offset);
                }
            }
            SourceState::Revoked => {
                if let Some(at) = self.find(&mark.source) {
                    self.sources.swap_remove(at);
                    self.by_name = self.index();
                }
            }
        }
        self.tick(now_ms);
    }

    /// Recomputes the global watermark at wall time `now_ms`.
    pub fn tick(&mut self, now_ms: u64) {
        // One pass: the least newest reading of the sources holding time back, and the clock
        // run on from the newest one for when none does.
        let mut holding = None::<u64>;
        let mut running = None::<u64>;
        for (_, s) in &self.sources {
            if s.pending() {
                return;
            }
            let Some(newest) = s.newest_ms else {
                continue;
            };
            let silent = now_ms.saturating_sub(s.arrived_at_ms);
            if s.behind || silent < self.idle_timeout_ms {
                holding = Some(holding.map_or(newest, |h| h.min(newest)));
            }
            running = running.max(Some(newest + silent));
        }
        // All quiet: event time runs on with the wall clock from the newest reading.
        let Some(clock) = holding.or(running) else {
            return;
        };
        self.global_ms = self.global_ms.max(clock.saturating_sub(self.lateness_ms));
    }

    /// Whether a source holds time back at wall time `now_ms`: one that has delivered nothing
    /// yet, is behind its end, or has not been idle for the idle timeout.
    pub fn holds_time(&self, now_ms: u64) -> bool {
        self.sources
            .iter()
            .any(|(_, s)| s.behind || now_ms.saturating_sub(s.arrived_at_ms) < self.idle_timeout_ms)
    }

    /// Moves the watermark up to `watermark_ms`, for a worker whose sources hold nothing back
    /// and that follows the others.
    pub fn follow(&mut self, watermark_ms: u64) {
        self.global_ms = self.global_ms.max(watermark_ms);
    }

    /// Each source's own watermark (none while it has delivered nothing), for metrics.
    pub fn per_source(&self) -> impl Iterator<Item = (&str, Option<u64>)> {
        self.sources.iter().map(|(name, s)| {
            (
                name.as_str(),
                s.newest_ms.map(|n| n.saturating_sub(self.lateness_ms)),
            )
        })
    }

    /// Sources that hold the watermark where it is because they have delivered nothing yet.
    pub fn pending(&self) -> usize {
        self.sources.iter().filter(|(_, s)| s.pending()).count()
    }

    /// Where `source` is in `sources`.
    fn find(&mut self, source: &str) -> Option<usize> {
        if self
            .sources
            .get(self.last)
            .is_some_and(|(name, _)| name == source)
        {
            return Some(self.last);
        }
        let at = *self.by_name.get(source)?;
        self.last = at;
        Some(at)
    }

    /// Adds `source`, or replaces what is known of it.
    fn insert(&mut self, source: &str, state: Source) {
        match self.find(source) {
            Some(at) => self.sources[at].1 = state,
            None => {
                self.by_name.insert(source.to_owned(), self.sources.len());
                self.sources.push((source.to_owned(), state));
            }
        }
    }

    /// The index by name of `sources`.
    fn index(&self) -> crate::FastMap<String, usize> {
        self.sources
            .iter()
            .enumerate()
            .map(|(at, (name, _))| (name.clone(), at))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_active_source_holds_time() {
        let mut w = Watermarks::new(10_000, 5_000);
        w.observe("p1", None, 60_000, 0);
        w.observe("p0", None, 100_000, 0);
        w.tick(1);
        assert_eq!(w.watermark(), 50_000);
        w.observe("p1", None, 130_000, 2);
        w.tick(2);
        assert_eq!(w.watermark(), 90_000, "now p0 is behind");
        w.observe("p1", None, 50_000, 3); // out of order: no step back
        w.tick(3);
        assert_eq!(w.watermark(), 90_000);
        assert!(w.is_late(89_999));
        assert!(!w.is_late(90_000));
    }

    #[test]
    fn an_idle_source_stops_holding_time_back() {
        let mut w = Watermarks::new(10_000, 5_000);
        w.observe("quiet", None, 100_000, 0);
        w.observe("busy", None, 100_000, 0);
        for i in 1..=10 {
            w.observe("busy", None, 100_000 + i * 60_000, i * 1_000);
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
        w.observe("a", None, 100_000, 1_000);
        w.tick(5_999);
        assert_eq!(w.watermark(), 90_000);
        w.tick(6_000); // idle for the timeout: the clock runs on from the last arrival
        assert_eq!(w.watermark(), 95_000);
        w.tick(21_000);
        assert_eq!(w.watermark(), 110_000);
        // A new reading behind the advanced clock does not move it back.
        w.observe("a", None, 105_000, 21_001);
        w.tick(21_002);
        assert_eq!(w.watermark(), 110_000);
    }

    fn mark(source: &str, state: SourceState) -> SourceMark {
        SourceMark {
            source: source.into(),
            state,
        }
    }

    #[test]
    fn mqtt_cannot_move_time_before_the_kafka_group_assigns_its_partitions() {
        let mut w = Watermarks::new(10_000, 5_000);
        w.mark(&SourceMark::kafka_group(SourceState::Assigned), 0);
        // MQTT connects at once and redelivers what it holds, minutes ahead of Kafka's backlog.
        w.observe("mqtt", None, 2_000_000, 1);
        w.tick(6_000);
        assert_eq!(w.watermark(), 0);
        // The group assigns a partition, then withdraws its own hold.
        w.mark(&mark("t/0", SourceState::Assigned), 6_000);
        w.mark(&SourceMark::kafka_group(SourceState::Revoked), 6_000);
        assert_eq!(w.watermark(), 0, "t/0 holds until it delivers");
        w.observe("t/0", Some(0), 1_900_000, 6_001);
        assert!(!w.is_late(1_900_000), "the backlog is not late");
        assert_eq!(w.watermark(), 1_890_000);
    }

    #[test]
    fn an_assigned_partition_holds_time_until_it_delivers_or_catches_up() {
        let mut w = Watermarks::new(10_000, 5_000);
        w.mark(&mark("t/0", SourceState::Assigned), 0);
        w.mark(&mark("t/1", SourceState::Assigned), 0);
        w.mark(&mark("t/2", SourceState::Assigned), 0);
        // t/0's whole backlog arrives first: nothing moves while t/1 and t/2 are unheard.
        for i in 0..150 {
            w.observe("t/0", Some(i), 1_000_000 + (i as u64) * 1_000, 1);
        }
        assert_eq!(w.watermark(), 0);
        assert_eq!(w.pending(), 2);
        // t/1 starts at the beginning; t/2 turns out to be empty.
        w.observe("t/1", Some(0), 1_000_000, 2);
        w.mark(&mark("t/2", SourceState::CaughtUp { next_offset: 0 }), 2);
        assert_eq!(
            w.watermark(),
            990_000,
            "t/1 holds time at its first reading"
        );
        assert!(!w.is_late(1_000_000));
        // Behind, t/1 holds time however long it is silent (a partition held back, say).
        w.tick(60_000);
        assert_eq!(w.watermark(), 990_000);
        w.observe("t/1", Some(1), 1_100_000, 60_001);
        assert_eq!(w.watermark(), 1_090_000);
    }

    #[test]
    fn a_caught_up_partition_is_a_live_tail_until_it_has_more() {
        let mut w = Watermarks::new(10_000, 5_000);
        w.mark(&mark("t/0", SourceState::Assigned), 0);
        w.mark(&mark("t/1", SourceState::Assigned), 0);
        w.observe("t/0", Some(9), 100_000, 0);
        w.observe("t/1", Some(4), 300_000, 0);
        w.mark(&mark("t/0", SourceState::CaughtUp { next_offset: 10 }), 0);
        assert_eq!(
            w.watermark(),
            90_000,
            "a live tail holds for the idle timeout"
        );
        w.tick(5_000);
        assert_eq!(w.watermark(), 290_000, "then only t/1, still behind, holds");
        // A reading the caught-up mark covered does not make t/0 behind; one after it does.
        w.observe("t/0", Some(9), 100_000, 5_001);
        w.tick(20_000);
        assert_eq!(w.watermark(), 290_000);
        w.observe("t/0", Some(10), 295_000, 20_001);
        w.tick(40_000);
        assert_eq!(w.watermark(), 290_000, "t/0 behind again: no idle rule");
        w.mark(&mark("t/1", SourceState::Revoked), 40_000);
        w.observe("t/0", Some(11), 320_000, 40_001);
        assert_eq!(w.watermark(), 310_000);
    }
}
