//! The standing of each assigned Kafka partition as a source of event time: where it starts,
//! what was taken from it, and whether it has caught up with its end. The changes the dataflow
//! must know of leave as [`SourceMark`]s, in order with the partition's readings.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

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
    /// Every message before this offset was taken and the log ended there: caught up.
    caught_up_at: Option<i64>,
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
        inner
            .marks
            .push(SourceMark::new(topic, partition, SourceState::Assigned));
    }

    /// A partition was revoked.
    pub(crate) fn revoked(&self, topic: &str, partition: i32) {
        let mut inner = self.lock();
        inner.parts.remove(&(topic.to_owned(), partition));
        inner
            .marks
            .push(SourceMark::new(topic, partition, SourceState::Revoked));
    }

    /// A message was taken.
    pub(crate) fn taken(&self, topic: &str, partition: i32, offset: i64) {
        let mut inner = self.lock();
        if let Some(p) = inner.parts.get_mut(&(topic.to_owned(), partition)) {
            p.next = Some(p.next.map_or(offset + 1, |n| n.max(offset + 1)));
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

    /// Partitions not caught up whose position is known: those whose end is worth asking.
    pub(crate) fn behind(&self) -> Vec<Tp> {
        let inner = self.lock();
        inner
            .parts
            .iter()
            .filter(|(_, p)| !p.caught_up() && p.position().is_some())
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
    fn marks_follow_assignment_catching_up_and_revocation() {
        let parts = Partitions::default();
        parts.assigned("t", 0);
        parts.assigned("t", 1);
        assert_eq!(parts.without_start(), vec![tp(0), tp(1)]);
        parts.set_start(&tp(0), 5);
        parts.set_start(&tp(1), 0);
        // t/1 is empty: caught up at once.
        assert!(parts.ends_at(&tp(1), 0));
        parts.taken("t", 0, 5);
        assert!(!parts.ends_at(&tp(0), 8), "6 and 7 still to come");
        parts.taken("t", 0, 6);
        parts.taken("t", 0, 7);
        assert!(parts.ends_at(&tp(0), 8));
        assert!(parts.behind().is_empty());
        // More arrives: behind again, and caught up again later at the new end.
        parts.taken("t", 0, 8);
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
                ("t/1".into(), CaughtUp { next_offset: 0 }),
                ("t/0".into(), CaughtUp { next_offset: 8 }),
                ("t/0".into(), CaughtUp { next_offset: 9 }),
                ("t/1".into(), Revoked),
            ]
        );
        assert!(parts.drain_marks().is_empty());
    }
}
