//! Recently seen message ids, so a repeated message counts once. Bounded by the lateness
//! horizon: an id is forgotten once its event time falls far enough behind the watermark that
//! a repeat would be late anyway.
//!
//! An id is kept as a 128-bit fingerprint of `(device_id, message_id)` (two independently
//! seeded hashes), so remembering one allocates nothing. The seeds are the same on every worker
//! of a cluster (see [`RecentIds::with_seeds`]), so a repeat read by another process is known
//! where its device's readings meet. Two different ids share a fingerprint
//! with a probability of about n² / 2¹²⁹: one in 10²⁴ for the ten million ids of a busy hour.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

/// Ids are remembered by slices of event time this long (2^10 ms), and an id is kept until
/// its whole slice has passed the horizon (at most a second longer than needed, which is safe:
/// a repeat is only caught longer).
const SLICE_BITS: u32 = 10;
/// The fewest ids kept before forgotten ones are swept out.
const MIN_SWEEP: usize = 1 << 10;

/// Remembers message ids by event time.
///
/// Forgetting is lazy: moving the horizon costs nothing, an id behind it counts as absent (a
/// repeat of it is taken again, in place), and forgotten ids are swept out in one pass over
/// the map once it holds twice as many as after the last sweep. A sweep reads the map in
/// order, where removing each id on its own probed the map at random (with a list of ids per
/// slice to find them; BENCHMARKS.md, "Dedupe that forgets lazily").
#[derive(Debug)]
pub struct RecentIds {
    seeds: (foldhash::quality::FixedState, foldhash::quality::FixedState),
    /// Each id and the slice it is kept for.
    ids: HashMap<Fingerprint, u64, BuildHasherDefault<FingerprintHasher>>,
    /// Ids of slices before this one are forgotten.
    horizon: u64,
    /// How many ids the last sweep left.
    swept_to: usize,
}

/// A 128-bit fingerprint as two halves (a `u128` would pad each map entry to 32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint(u64, u64);

impl Hash for Fingerprint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0 ^ self.1);
    }
}

/// Hashes a fingerprint by folding it: it is already a seeded hash of the id, so hashing it
/// again would only cost time (crafted ids cannot aim at buckets without the seeds).
#[derive(Debug, Default)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn write_u64(&mut self, folded: u64) {
        self.0 = folded;
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
            ids: HashMap::default(),
            horizon: 0,
            swept_to: 0,
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
    pub fn insert_fingerprint(&mut self, fingerprint: u128, event_ms: u64) -> bool {
        // An id behind the horizon (a late reading's) is kept until the horizon next moves,
        // as if its slice were the horizon's.
        let slice = (event_ms >> SLICE_BITS).max(self.horizon);
        match self
            .ids
            .entry(Fingerprint(fingerprint as u64, (fingerprint >> 64) as u64))
        {
            Entry::Occupied(mut kept) => {
                if *kept.get() >= self.horizon {
                    return false;
                }
                kept.insert(slice);
            }
            Entry::Vacant(new) => {
                new.insert(slice);
                if self.ids.len() >= 2 * self.swept_to.max(MIN_SWEEP) {
                    let horizon = self.horizon;
                    self.ids.retain(|_, slice| *slice >= horizon);
                    self.swept_to = self.ids.len();
                }
            }
        }
        true
    }

    /// Forgets ids whose event time is before `horizon_ms`, by whole slices: those of the
    /// slice holding `horizon_ms` are kept until the next slice.
    pub fn forget_before(&mut self, horizon_ms: u64) {
        self.horizon = self.horizon.max(horizon_ms >> SLICE_BITS);
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.ids.values().filter(|&&s| s >= self.horizon).count()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    #[derive(Debug, Clone)]
    enum Op {
        Insert { id: u64, event_ms: u64 },
        Forget { horizon_ms: u64 },
    }

    /// Fingerprints that spread over the table (`id` in both halves differently) or that all
    /// start at slot 0 (the same value in both halves), so probe chains get long.
    fn fingerprint_of(id: u64, colliding: bool) -> u128 {
        if colliding {
            (u128::from(id) << 64) | u128::from(id)
        } else {
            (u128::from(id.wrapping_mul(0x9e37_79b9_7f4a_7c15)) << 64) | u128::from(id)
        }
    }

    fn ops() -> impl proptest::strategy::Strategy<Value = Vec<Op>> {
        use proptest::prelude::*;
        proptest::collection::vec(
            prop_oneof![
                8 => (0u64..3_000, 0u64..200_000)
                    .prop_map(|(id, event_ms)| Op::Insert { id, event_ms }),
                1 => (0u64..200_000).prop_map(|horizon_ms| Op::Forget { horizon_ms }),
            ],
            1..4_000,
        )
    }

    proptest::proptest! {
        /// Against a map of every id to the slice it is kept for: the same answer to every
        /// insert, and the same count, through sweeps and colliding hashes.
        #[test]
        fn the_ids_are_answered_as_a_map_of_ids_to_slices(ops in ops(), colliding: bool) {
            let mut table = RecentIds::with_seeds(1, 2);
            let mut oracle = HashMap::<u64, u64>::new();
            let mut horizon = 0u64;
            for op in ops {
                match op {
                    Op::Insert { id, event_ms } => {
                        let live = oracle.get(&id).is_some_and(|&slice| slice >= horizon);
                        if !live {
                            oracle.insert(id, (event_ms >> SLICE_BITS).max(horizon));
                        }
                        let taken = table.insert_fingerprint(fingerprint_of(id, colliding), event_ms);
                        proptest::prop_assert_eq!(taken, !live, "insert {} at {}", id, event_ms);
                    }
                    Op::Forget { horizon_ms } => {
                        horizon = horizon.max(horizon_ms >> SLICE_BITS);
                        table.forget_before(horizon_ms);
                    }
                }
            }
            let live = oracle.values().filter(|&&slice| slice >= horizon).count();
            proptest::prop_assert_eq!(table.len(), live);
        }
    }

    #[test]
    fn forgotten_ids_are_swept_out() {
        let mut r = RecentIds::with_seeds(1, 2);
        // A second of event time per 1,000 ids, 10 seconds remembered: 10,000 live ids.
        for i in 0..1_000_000u64 {
            let event_ms = i;
            assert!(r.insert_fingerprint(fingerprint_of(i, false), event_ms));
            r.forget_before(event_ms.saturating_sub(10_000));
        }
        let live = r.len();
        assert!((10_000..=11_100).contains(&live), "{live} live");
        assert!(r.ids.len() <= 2 * 11_100, "{} kept", r.ids.len());
    }
}
