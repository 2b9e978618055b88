//! Record ids: UUID v7 made without a system call on the request path.
//!
//! `uuid`'s own v7 constructor asks the operating system for randomness on every call,
//! which costs more than the rest of the layer together. Ids only have to be unique and
//! ordered by time, not unpredictable, so each thread keeps a small generator seeded once
//! from the standard library's per-process random hasher keys.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use chrono::{DateTime, Utc};
use uuid::Uuid;

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(std::process::id().into());
    if let Ok(elapsed) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(elapsed.as_nanos());
    }
    hasher.finish() | 1
}

/// SplitMix64: fast, and every seed gives a full-period sequence.
fn next_u64() -> u64 {
    STATE.with(|state| {
        let next = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// A version 7 id whose timestamp is `at` (milliseconds since the Unix epoch).
pub(crate) fn new_v7(at: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let a = next_u64().to_le_bytes();
    let b = next_u64().to_le_bytes();
    let random = [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], b[0], b[1]];
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_v7_unique_and_ordered_by_time() {
        let early = Utc::now();
        let late = early + chrono::Duration::milliseconds(5);
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = new_v7(early);
            assert_eq!(id.get_version_num(), 7);
            assert!(seen.insert(id));
            assert!(id < new_v7(late));
        }
    }

    #[test]
    fn threads_do_not_share_a_sequence() {
        let here: Vec<Uuid> = (0..100).map(|_| new_v7(Utc::now())).collect();
        let there = std::thread::spawn(|| (0..100).map(|_| new_v7(Utc::now())).collect::<Vec<_>>())
            .join()
            .unwrap();
        let here: HashSet<_> = here.into_iter().collect();
        assert!(there.iter().all(|id| !here.contains(id)));
    }

    #[test]
    fn a_time_before_the_epoch_does_not_panic() {
        let old = DateTime::<Utc>::from_timestamp(-10, 0).unwrap();
        assert_eq!(new_v7(old).get_version_num(), 7);
    }
}
