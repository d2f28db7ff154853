//! Recently seen message ids, so a repeated message counts once. Bounded by the lateness
//! horizon: an id is forgotten once its event time falls far enough behind the watermark that
//! a repeat would be late anyway.

use std::collections::{BTreeMap, HashSet};

/// `(device_id, message_id)`.
type MessageKey = (String, String);

/// Remembers message ids by event time.
#[derive(Debug, Default)]
pub struct RecentIds {
    ids: HashSet<MessageKey>,
    by_time: BTreeMap<u64, Vec<MessageKey>>,
}

impl RecentIds {
    /// Records an id; `false` when it was already there (a duplicate).
    pub fn insert(&mut self, device_id: &str, message_id: &str, event_ms: u64) -> bool {
        let key = (device_id.to_owned(), message_id.to_owned());
        if self.ids.contains(&key) {
            return false;
        }
        self.by_time.entry(event_ms).or_default().push(key.clone());
        self.ids.insert(key);
        true
    }

    /// Forgets ids whose event time is before `horizon_ms`.
    pub fn forget_before(&mut self, horizon_ms: u64) {
        let keep = self.by_time.split_off(&horizon_ms);
        for key in std::mem::replace(&mut self.by_time, keep)
            .into_values()
            .flatten()
        {
            self.ids.remove(&key);
        }
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_caught_until_forgotten() {
        let mut r = RecentIds::default();
        assert!(r.insert("d", "m1", 10));
        assert!(!r.insert("d", "m1", 10));
        assert!(r.insert("e", "m1", 10), "ids are per device");
        assert!(r.insert("d", "m2", 20));
        r.forget_before(15);
        assert_eq!(r.len(), 1);
        assert!(r.insert("d", "m1", 10));
        assert!(!r.insert("d", "m2", 20));
    }
}
