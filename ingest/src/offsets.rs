//! Which Kafka offsets may be committed: per partition, the highest offset below which every
//! message has been stored.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

#[derive(Debug, Default)]
struct PartitionOffsets {
    /// Offsets taken but not yet stored.
    pending: BTreeSet<i64>,
    /// The lowest and highest offsets taken.
    lowest: Option<i64>,
    highest: Option<i64>,
    /// The last offset handed out for committing.
    committable: Option<i64>,
}

/// Tracks taken and stored offsets of every assigned partition.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: Mutex<HashMap<(String, i32), PartitionOffsets>>,
}

impl OffsetTracker {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<(String, i32), PartitionOffsets>) -> R) -> R {
        // A panic while holding the lock cannot leave the map inconsistent: recover it.
        let mut guard = match self.partitions.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Records a message taken from `topic`/`partition` at `offset`.
    pub fn taken(&self, topic: &str, partition: i32, offset: i64) {
        self.with(|parts| {
            let p = parts.entry((topic.to_owned(), partition)).or_default();
            p.pending.insert(offset);
            p.lowest = Some(p.lowest.map_or(offset, |l| l.min(offset)));
            p.highest = Some(p.highest.map_or(offset, |h| h.max(offset)));
        });
    }

    /// Records that the message at `offset` is stored. Returns the offset that may now be
    /// committed (every message up to and including it is stored), if it moved.
    pub fn stored(&self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        self.with(|parts| {
            let p = parts.get_mut(&(topic.to_owned(), partition))?;
            if !p.pending.remove(&offset) {
                return None; // revoked meanwhile, or already stored
            }
            let upto = match p.pending.first() {
                Some(first) => first - 1,
                None => p.highest?,
            };
            // Nothing this run took is below the first pending offset yet.
            if p.lowest.is_none_or(|l| upto < l) || p.committable.is_some_and(|c| c >= upto) {
                return None;
            }
            p.committable = Some(upto);
            Some(upto)
        })
    }

    /// Forgets a partition, e.g. when it is revoked; late acknowledgements for it are ignored.
    pub fn forget(&self, topic: &str, partition: i32) {
        self.with(|parts| parts.remove(&(topic.to_owned(), partition)));
    }

    /// Messages taken but not yet stored, over all partitions.
    pub fn pending(&self) -> usize {
        self.with(|parts| parts.values().map(|p| p.pending.len()).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_below_the_first_unstored_offset() {
        let t = OffsetTracker::default();
        for o in 10..15 {
            t.taken("ioc.sensor", 0, o);
        }
        t.taken("ioc.sensor", 1, 7);
        assert_eq!(
            t.stored("ioc.sensor", 0, 12),
            None,
            "10 and 11 are not stored yet"
        );
        assert_eq!(t.stored("ioc.sensor", 0, 10), Some(10));
        assert_eq!(t.stored("ioc.sensor", 0, 11), Some(12));
        assert_eq!(t.stored("ioc.sensor", 0, 14), None);
        assert_eq!(t.stored("ioc.sensor", 0, 13), Some(14));
        assert_eq!(
            t.stored("ioc.sensor", 0, 13),
            None,
            "a second ack changes nothing"
        );
        assert_eq!(
            t.stored("ioc.sensor", 1, 7),
            Some(7),
            "partitions are independent"
        );
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn forgotten_partitions_ignore_late_acks() {
        let t = OffsetTracker::default();
        t.taken("ioc.sensor", 0, 1);
        t.forget("ioc.sensor", 0);
        assert_eq!(t.stored("ioc.sensor", 0, 1), None);
    }
}
