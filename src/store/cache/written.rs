//! Which 15-minute slots were written since when: the log that tells a cached answer
//! whether a record may have been added to its range after it was read.
//!
//! Every write bumps the epoch and stamps the slots it touched with it, after its commit.
//! An entry read starting at epoch `e` is fresh while no slot of its range carries a
//! stamp above `e`: a commit stamped at or before `e` was visible to the read, one
//! stamped after may not have been.

use std::collections::BTreeMap;

use crate::store::schema::slots::QUARTER_US;

/// How many stamped slots the log keeps; past that it forgets them all and raises its
/// floor, so that every entry read before is stale (a rare, whole-cache reset instead
/// of a log that grows with every slot ever written).
const MAX_SLOTS: usize = 100_000;

/// The log. Not synchronised: the cache keeps it behind a lock.
#[derive(Debug, Default)]
pub(super) struct Written {
    epoch: u64,
    /// Entries read before this epoch are stale whatever their range.
    floor: u64,
    /// The last epoch that wrote into each slot.
    slots: BTreeMap<i64, u64>,
}

impl Written {
    /// The epoch a read starting now is stamped with.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Stamps `slots` (15-minute slot numbers) with a new epoch, after a write into them
    /// committed (or may have).
    pub(super) fn record(&mut self, slots: impl IntoIterator<Item = i64>) {
        self.epoch += 1;
        for slot in slots {
            self.slots.insert(slot, self.epoch);
        }
        if self.slots.len() > MAX_SLOTS {
            self.everything();
        }
    }

    /// Makes every entry read so far stale: for writes whose slots are not known.
    pub(super) fn everything(&mut self) {
        self.epoch += 1;
        self.floor = self.epoch;
        self.slots.clear();
    }

    /// Whether a read of `[from, to)` (microseconds) that started at `epoch` still holds:
    /// no write into a slot overlapping the range was stamped after it.
    pub(super) fn fresh(&self, epoch: u64, from: i64, to: i64) -> bool {
        if epoch < self.floor {
            return false;
        }
        if from >= to {
            return true;
        }
        let first = from.div_euclid(QUARTER_US);
        let last = (to - 1).div_euclid(QUARTER_US);
        !self.slots.range(first..=last).any(|(_, &e)| e > epoch)
    }
}

/// The 15-minute slots holding the instants `at` (microseconds), each once.
pub(crate) fn slots_of(at: impl IntoIterator<Item = i64>) -> Vec<i64> {
    let mut slots: Vec<i64> = at.into_iter().map(|us| us.div_euclid(QUARTER_US)).collect();
    slots.sort_unstable();
    slots.dedup();
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: i64 = QUARTER_US;

    #[test]
    fn a_write_after_the_read_into_its_range_makes_it_stale() {
        let mut log = Written::default();
        log.record([5]);
        let read = log.epoch();
        assert!(log.fresh(read, 0, 10 * Q));
        log.record([20]);
        assert!(log.fresh(read, 0, 10 * Q), "a write outside the range");
        log.record([9]);
        assert!(!log.fresh(read, 0, 10 * Q), "a write into the last slot");
        assert!(
            log.fresh(read, 0, 9 * Q),
            "the range ends where slot 9 starts"
        );
        assert!(
            !log.fresh(read, 9 * Q + 1, 9 * Q + 2),
            "a range inside the slot"
        );
        assert!(log.fresh(log.epoch(), 0, 10 * Q), "a read after the write");
    }

    #[test]
    fn slots_before_the_epoch_zero_and_negative_ranges() {
        let mut log = Written::default();
        let read = log.epoch();
        log.record([-1]);
        assert!(!log.fresh(read, -Q, 0));
        assert!(log.fresh(read, 0, Q));
        assert!(log.fresh(read, 5, 5), "an empty range holds nothing");
    }

    #[test]
    fn forgetting_the_slots_makes_every_earlier_read_stale() {
        let mut log = Written::default();
        let read = log.epoch();
        log.everything();
        assert!(!log.fresh(read, 0, Q));
        assert!(log.fresh(log.epoch(), 0, Q));
        log.record(0..=MAX_SLOTS as i64);
        assert!(log.slots.is_empty(), "over the cap, the log starts again");
    }

    #[test]
    fn slots_of_instants() {
        assert_eq!(slots_of([Q + 1, 0, Q - 1, -1, Q]), vec![-1, 0, 1]);
    }
}
