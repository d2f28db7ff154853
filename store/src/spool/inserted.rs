//! Which spooled rows are in ClickHouse. The drain hands rows to the table writers in order,
//! but each table inserts its batch on its own, so rows come back in any order.

use std::collections::VecDeque;

/// Every sequence number up to `through`, and beyond it those marked in `done`.
pub(super) struct Inserted {
    /// Every row through this sequence number is inserted.
    pub(super) through: u64,
    /// `done[i]`: row `through + 1 + i` is inserted.
    done: VecDeque<bool>,
    /// The newest event time of an on-time reading among them.
    pub(super) newest_on_time: u64,
}

impl Inserted {
    pub(super) fn new(through: u64, newest_on_time: u64) -> Inserted {
        Inserted {
            through,
            done: VecDeque::new(),
            newest_on_time,
        }
    }

    /// Marks row `seq` (an on-time reading of event time `on_time_ms`, or 0) inserted; whether
    /// `through` moved.
    pub(super) fn mark(&mut self, seq: u64, on_time_ms: u64) -> bool {
        self.newest_on_time = self.newest_on_time.max(on_time_ms);
        let Some(index) = seq
            .checked_sub(self.through + 1)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return false;
        };
        if self.done.len() <= index {
            self.done.resize(index + 1, false);
        }
        self.done[index] = true;
        // Only the oldest row not yet in moves `through`.
        if index > 0 {
            return false;
        }
        while self.done.front() == Some(&true) {
            self.done.pop_front();
            self.through += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn through_moves_once_every_row_before_it_is_in() {
        let mut inserted = Inserted::new(10, 0);
        assert!(!inserted.mark(13, 500));
        assert!(!inserted.mark(12, 0));
        assert_eq!(inserted.through, 10);
        assert!(inserted.mark(11, 0));
        assert_eq!(inserted.through, 13);
        assert!(inserted.mark(14, 300));
        assert_eq!(inserted.through, 14);
        // A row already counted changes nothing but the newest event time.
        assert!(!inserted.mark(9, 900));
        assert_eq!((inserted.through, inserted.newest_on_time), (14, 900));
    }
}
