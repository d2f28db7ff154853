//! Recently seen message ids, so a repeated message counts once. Bounded by the lateness
//! horizon: an id is forgotten once its event time falls far enough behind the watermark that
//! a repeat would be late anyway.
//!
//! An id is kept as a 128-bit fingerprint of `(device_id, message_id)` (two independently
//! seeded hashes), so remembering one allocates nothing. The seeds are the same on every worker
//! of a cluster (see [`RecentIds::with_seeds`]), so a repeat read by another process is known
//! where its device's readings meet. Two different ids share a fingerprint
//! with a probability of about n² / 2¹²⁹: one in 10²⁴ for the ten million ids of a busy hour.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// Ids are remembered by slices of event time this long (2^10 ms): one map entry per slice,
/// not per millisecond, and an id is kept until its whole slice has passed the horizon (at
/// most a second longer than needed, which is safe: a repeat is only caught longer).
const SLICE_BITS: u32 = 10;

/// Remembers message ids by event time.
#[derive(Debug)]
pub struct RecentIds {
    seeds: (foldhash::quality::FixedState, foldhash::quality::FixedState),
    ids: HashSet<u128, BuildHasherDefault<FingerprintHasher>>,
    by_slice: BTreeMap<u64, Vec<u128>>,
}

/// Hashes a fingerprint by folding it: it is already a seeded hash of the id, so hashing it
/// again would only cost time (crafted ids cannot aim at buckets without the seeds).
#[derive(Debug, Default)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn write_u128(&mut self, fingerprint: u128) {
        self.0 = (fingerprint as u64) ^ ((fingerprint >> 64) as u64);
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only fingerprints are hashed here; anything else still gets a fair spread.
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for RecentIds {
    /// Random seeds.
    fn default() -> Self {
        let random = foldhash::quality::RandomState::default();
        RecentIds::with_seeds(random.hash_one(1u8), random.hash_one(2u8))
    }
}

impl RecentIds {
    /// Fingerprints from two seeds: the cluster's workers agree on them at start.
    pub fn with_seeds(first: u64, second: u64) -> RecentIds {
        RecentIds {
            seeds: (
                foldhash::quality::FixedState::with_seed(first),
                foldhash::quality::FixedState::with_seed(second),
            ),
            ids: HashSet::default(),
            by_slice: BTreeMap::new(),
        }
    }

    /// The fingerprint of an id.
    pub fn fingerprint(&self, device_id: &str, message_id: &str) -> u128 {
        let key = (device_id, message_id);
        (u128::from(self.seeds.0.hash_one(key)) << 64) | u128::from(self.seeds.1.hash_one(key))
    }

    /// Records an id; `false` when it was already there (a duplicate).
    pub fn insert(&mut self, device_id: &str, message_id: &str, event_ms: u64) -> bool {
        self.insert_fingerprint(self.fingerprint(device_id, message_id), event_ms)
    }

    /// Records an id by its [`fingerprint`](Self::fingerprint); `false` for a duplicate.
    pub fn insert_fingerprint(&mut self, key: u128, event_ms: u64) -> bool {
        if !self.ids.insert(key) {
            return false;
        }
        self.by_slice
            .entry(event_ms >> SLICE_BITS)
            .or_default()
            .push(key);
        true
    }

    /// Forgets ids whose event time is before `horizon_ms`, by whole slices: those of the
    /// slice holding `horizon_ms` are kept until the next slice.
    pub fn forget_before(&mut self, horizon_ms: u64) {
        let keep = self.by_slice.split_off(&(horizon_ms >> SLICE_BITS));
        for key in std::mem::replace(&mut self.by_slice, keep)
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
        assert!(r.insert("d", "m2", 5_000));
        // Forgotten by whole slices of 1,024 ms: 3,000 is in the slice from 2,048, so the
        // ids of the first slice go and the id at 5,000 stays.
        r.forget_before(3_000);
        assert_eq!(r.len(), 1);
        assert!(r.insert("d", "m1", 10));
        assert!(!r.insert("d", "m2", 5_000));
        // An id in the horizon's own slice is kept until the slice has passed.
        r.forget_before(5_100);
        assert!(!r.insert("d", "m2", 5_000));
        r.forget_before(6_144);
        assert!(r.insert("d", "m2", 5_000));
    }
}
