//! The standing of each assigned Kafka partition as a source of event time: where it starts,
//! what was taken from it, whether it has caught up with its end, and whether it is held back
//! because it runs ahead of the others in event time (watermark alignment, as Flink's FLIP-182
//! and Kafka Streams do). The changes the dataflow must know of leave as [`SourceMark`]s, in
//! order with the partition's readings.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use ioc_schemas::{SourceMark, SourceState};

/// A topic and partition.
pub(crate) type Tp = (String, i32);

#[derive(Debug, Default)]
struct Part {
    /// Where consumption starts in this assignment (the committed offset, or the log's start
    /// or end by `auto.offset.reset`), once known.
    start: Option<i64>,
    /// The offset after the last message taken in this assignment.
    next: Option<i64>,
    /// The newest event time of a reading taken.
    newest_event_ms: Option<u64>,
    /// Held back by alignment since then.
    aligned_since: Option<Instant>,
    /// Every message before this offset was taken and the log ended there: caught up.
    caught_up_at: Option<i64>,
    /// The log's end when last asked (it only grows).
    known_end: Option<i64>,
}

impl Part {
    fn caught_up(&self) -> bool {
        self.caught_up_at.is_some()
    }

    fn position(&self) -> Option<i64> {
        self.next.or(self.start)
    }
}

#[derive(Debug, Default)]
struct Inner {
    parts: BTreeMap<Tp, Part>,
    marks: Vec<SourceMark>,
    /// Whether the group has assigned (or given up waiting for) partitions at least once.
    joined: bool,
    /// Grows with every assignment and revocation.
    generation: u64,
}

/// What alignment decided: partitions to hold back, and partitions to let go with how long
/// each was held, in seconds.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Alignment {
    pub hold: Vec<Tp>,
    pub release: Vec<(Tp, f64)>,
}

/// Every assigned partition's standing; shared by the consume loop, the rebalance callbacks
/// and the progress check.
#[derive(Debug, Default)]
pub(crate) struct Partitions {
    inner: Mutex<Inner>,
}

impl Partitions {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the map half-updated: recover it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A partition was assigned: it holds event time until it delivers or catches up.
    pub(crate) fn assigned(&self, topic: &str, partition: i32) {
        let mut inner = self.lock();
        inner
            .parts
            .insert((topic.to_owned(), partition), Part::default());
        inner.generation += 1;
        inner
            .marks
            .push(SourceMark::new(topic, partition, SourceState::Assigned));
    }

    /// The group has made its first assignment (announced just before), or waiting for it
    /// was given up: the consumer no longer holds event time as a whole. Once only.
    pub(crate) fn joined(&self) {
        let mut inner = self.lock();
        if !inner.joined {
            inner.joined = true;
            inner
                .marks
                .push(SourceMark::kafka_group(SourceState::Revoked));
        }
    }

    /// Whether [`joined`](Self::joined) has happened.
    pub(crate) fn has_joined(&self) -> bool {
        self.lock().joined
    }

    /// A partition was revoked.
    pub(crate) fn revoked(&self, topic: &str, partition: i32) {
        let mut inner = self.lock();
        inner.parts.remove(&(topic.to_owned(), partition));
        inner.generation += 1;
        inner
            .marks
            .push(SourceMark::new(topic, partition, SourceState::Revoked));
    }

    /// The assigned partitions, each with whether alignment holds it, if anything was
    /// assigned or revoked since `generation`; and the generation they are of.
    pub(crate) fn assigned_since(&self, generation: u64) -> Option<(u64, Vec<(Tp, bool)>)> {
        let inner = self.lock();
        (inner.generation != generation).then(|| {
            let parts = inner.parts.iter();
            let assigned = parts.map(|(tp, p)| (tp.clone(), p.aligned_since.is_some()));
            (inner.generation, assigned.collect())
        })
    }

    /// A message was taken; `event_ms` is its reading's event time (none for a dead letter).
    pub(crate) fn taken(&self, topic: &str, partition: i32, offset: i64, event_ms: Option<u64>) {
        let mut inner = self.lock();
        if let Some(p) = inner.parts.get_mut(&(topic.to_owned(), partition)) {
            p.next = Some(p.next.map_or(offset + 1, |n| n.max(offset + 1)));
            if let Some(t) = event_ms {
                p.newest_event_ms = Some(p.newest_event_ms.map_or(t, |n| n.max(t)));
            }
            if p.caught_up_at.is_some_and(|at| offset >= at) {
                p.caught_up_at = None;
            }
        }
    }

    /// The marks to hand to the dataflow, in the order they happened.
    pub(crate) fn drain_marks(&self) -> Vec<SourceMark> {
        std::mem::take(&mut self.lock().marks)
    }

    /// Partitions whose start offset is still unknown.
    pub(crate) fn without_start(&self) -> Vec<Tp> {
        let inner = self.lock();
        inner
            .parts
            .iter()
            .filter(|(_, p)| p.start.is_none() && p.next.is_none())
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Records where a partition's consumption starts.
    pub(crate) fn set_start(&self, tp: &Tp, offset: i64) {
        if let Some(p) = self.lock().parts.get_mut(tp) {
            p.start.get_or_insert(offset);
        }
    }

    /// Partitions not caught up whose position is known and has reached the end last seen:
    /// those whose end is worth asking. One still short of an end already seen cannot have
    /// caught up, so a backlog costs the broker no request per partition and check.
    pub(crate) fn behind(&self) -> Vec<Tp> {
        let inner = self.lock();
        inner
            .parts
            .iter()
            .filter(|(_, p)| {
                !p.caught_up()
                    && p.position()
                        .is_some_and(|at| p.known_end.is_none_or(|end| at >= end))
            })
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// The partition's log ends at `end` (its high watermark): if everything before it has
    /// been taken, it has caught up. Returns whether it has.
    pub(crate) fn ends_at(&self, tp: &Tp, end: i64) -> bool {
        let mut inner = self.lock();
        let Some(p) = inner.parts.get_mut(tp) else {
            return false;
        };
        p.known_end = Some(p.known_end.map_or(end, |known| known.max(end)));
        let Some(position) = p.position() else {
            return false;
        };
        if position < end || p.caught_up() {
            return p.caught_up();
        }
        p.caught_up_at = Some(position);
        inner.marks.push(SourceMark::new(
            &tp.0,
            tp.1,
            SourceState::CaughtUp {
                next_offset: position,
            },
        ));
        true
    }

    /// Watermark alignment: a partition whose newest event time is more than `max_drift_ms`
    /// ahead of the slowest partition still behind its end is held back; it is let go once it is
    /// within half of that, or nothing is behind any more. Partitions that have delivered
    /// nothing yet do not count: their first event time is unknown, and they hold the
    /// watermark meanwhile, so correctness never depends on this, only memory.
    pub(crate) fn align(&self, max_drift_ms: u64, now: Instant) -> Alignment {
        let mut inner = self.lock();
        let floor = inner
            .parts
            .values()
            .filter(|p| !p.caught_up())
            .filter_map(|p| p.newest_event_ms)
            .min();
        let mut decided = Alignment::default();
        for (tp, p) in &mut inner.parts {
            let Some(newest) = p.newest_event_ms else {
                continue;
            };
            match (p.aligned_since, floor) {
                (None, Some(floor)) if !p.caught_up() && newest > floor + max_drift_ms => {
                    p.aligned_since = Some(now);
                    decided.hold.push(tp.clone());
                }
                (Some(since), floor) if floor.is_none_or(|f| newest <= f + max_drift_ms / 2) => {
                    p.aligned_since = None;
                    let held = now.saturating_duration_since(since).as_secs_f64();
                    decided.release.push((tp.clone(), held));
                }
                _ => {}
            }
        }
        decided
    }

    /// Whether a partition is caught up.
    #[cfg(test)]
    fn is_caught_up(&self, tp: &Tp) -> bool {
        self.lock().parts.get(tp).is_some_and(Part::caught_up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        ("t".to_owned(), p)
    }

    #[test]
    fn a_partition_far_ahead_is_held_until_the_slowest_comes_within_half_the_drift() {
        let parts = Partitions::default();
        let now = Instant::now();
        for p in 0..3 {
            parts.assigned("t", p);
            parts.set_start(&tp(p), 0);
        }
        parts.taken("t", 0, 0, Some(1_000));
        parts.taken("t", 1, 0, Some(70_000));
        // t/2 has delivered nothing: it does not count.
        assert_eq!(parts.align(60_000, now).hold, vec![tp(1)]);
        assert!(parts.align(60_000, now).hold.is_empty(), "held once");
        parts.taken("t", 0, 1, Some(35_000));
        assert!(
            parts.align(60_000, now).release.is_empty(),
            "35 s behind: not yet"
        );
        parts.taken("t", 0, 2, Some(40_000));
        let a = parts.align(60_000, now + std::time::Duration::from_secs(2));
        assert_eq!(a.release, vec![(tp(1), 2.0)]);
        // Once the slow ones have caught up, nothing holds the fast one back.
        parts.taken("t", 1, 1, Some(200_000));
        assert_eq!(parts.align(60_000, now).hold, vec![tp(1)]);
        assert!(parts.ends_at(&tp(0), 3));
        assert!(parts.ends_at(&tp(2), 0));
        assert_eq!(parts.align(60_000, now).release.len(), 1);
    }

    #[test]
    fn marks_follow_assignment_catching_up_and_revocation() {
        let parts = Partitions::default();
        parts.assigned("t", 0);
        parts.assigned("t", 1);
        // The first assignment withdraws the group's hold, after its partitions hold; once.
        assert!(!parts.has_joined());
        parts.joined();
        parts.joined();
        assert!(parts.has_joined());
        assert_eq!(parts.without_start(), vec![tp(0), tp(1)]);
        parts.set_start(&tp(0), 5);
        parts.set_start(&tp(1), 0);
        // t/1 is empty: caught up at once.
        assert!(parts.ends_at(&tp(1), 0));
        parts.taken("t", 0, 5, Some(105));
        assert!(!parts.ends_at(&tp(0), 8), "6 and 7 still to come");
        parts.taken("t", 0, 6, Some(106));
        assert!(
            parts.behind().is_empty(),
            "short of the end already seen: not worth asking"
        );
        parts.taken("t", 0, 7, None);
        assert_eq!(parts.behind(), vec![tp(0)], "at the end seen: ask again");
        assert!(parts.ends_at(&tp(0), 8));
        assert!(parts.behind().is_empty());
        // More arrives: behind again, and caught up again later at the new end.
        parts.taken("t", 0, 8, Some(108));
        assert!(!parts.is_caught_up(&tp(0)));
        assert!(parts.ends_at(&tp(0), 9));
        parts.revoked("t", 1);
        let marks: Vec<(String, SourceState)> = parts
            .drain_marks()
            .into_iter()
            .map(|m| (m.source, m.state))
            .collect();
        use SourceState::*;
        assert_eq!(
            marks,
            vec![
                ("t/0".into(), Assigned),
                ("t/1".into(), Assigned),
                (SourceMark::KAFKA_GROUP.into(), Revoked),
                ("t/1".into(), CaughtUp { next_offset: 0 }),
                ("t/0".into(), CaughtUp { next_offset: 8 }),
                ("t/0".into(), CaughtUp { next_offset: 9 }),
                ("t/1".into(), Revoked),
            ]
        );
        assert!(parts.drain_marks().is_empty());
    }
}
