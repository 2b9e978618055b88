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
    /// With a shared log: the epoch of the last sync, from which the next one reads.
    synced: Option<u64>,
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

    /// Where the next sync with the shared log starts (`None`: this log holds nothing
    /// from it yet, so nothing before now matters).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) fn since(&self) -> Option<u64> {
        self.synced
    }

    /// Takes in what a sync with the shared log found: its epoch and floor, and every
    /// slot stamped since the last sync (each with the last epoch that wrote into it).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) fn synced(&mut self, epoch: u64, floor: u64, stamps: &[(i64, u64)]) {
        self.synced = Some(self.synced.map_or(epoch, |s| s.max(epoch)));
        self.apply(epoch, floor, stamps);
    }

    /// Takes in this process's own stamp in the shared log. The epoch may pass stamps of
    /// others not synced yet: those committed before this stamp, so a read that starts
    /// now sees them, and the next sync (which starts from the last sync, not from here)
    /// brings them for the entries read before.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) fn stamped(&mut self, epoch: u64, slots: &[i64]) {
        let stamps: Vec<(i64, u64)> = slots.iter().map(|&slot| (slot, epoch)).collect();
        self.apply(epoch, 0, &stamps);
    }

    /// Takes in this process's own raise of the shared floor to `epoch`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) fn raised(&mut self, epoch: u64) {
        self.apply(epoch, epoch, &[]);
    }

    /// Makes every entry stale, those read from now on included, until a sync raises
    /// the epoch past the floor: a write of this process could not be stamped in the
    /// shared log, and only the shared log may move the epoch.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) fn stale_until_sync(&mut self) {
        self.floor = self.epoch + 1;
        self.slots.clear();
    }

    fn apply(&mut self, epoch: u64, floor: u64, stamps: &[(i64, u64)]) {
        self.epoch = self.epoch.max(epoch);
        if floor > self.floor {
            self.floor = floor;
            self.slots.clear();
        }
        for &(slot, stamped) in stamps {
            let kept = self.slots.entry(slot).or_insert(stamped);
            *kept = (*kept).max(stamped);
        }
        if self.slots.len() > MAX_SLOTS {
            self.floor = self.epoch;
            self.slots.clear();
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
    fn what_the_shared_log_says_is_taken_in() {
        let mut log = Written::default();
        assert_eq!(log.since(), None);
        log.synced(7, 0, &[]);
        let read = log.epoch();
        assert_eq!((read, log.since()), (7, Some(7)));
        log.stamped(10, &[60]);
        assert_eq!(
            (log.epoch(), log.since()),
            (10, Some(7)),
            "a sync starts from the last sync"
        );
        log.synced(10, 0, &[(3, 9), (50, 8), (60, 10)]);
        assert!(
            !log.fresh(read, 3 * Q, 4 * Q),
            "another replica wrote into slot 3"
        );
        assert!(log.fresh(read, 4 * Q, 50 * Q));
        log.synced(9, 0, &[(3, 8)]);
        assert!(
            !log.fresh(8, 3 * Q, 4 * Q),
            "an older stamp never lowers a newer one"
        );
        assert_eq!(log.since(), Some(10));
        log.synced(12, 12, &[]);
        assert!(
            !log.fresh(11, 100 * Q, 101 * Q),
            "below the floor, everything is stale"
        );
        assert!(log.fresh(12, 3 * Q, 4 * Q));
        log.stale_until_sync();
        assert!(
            !log.fresh(log.epoch(), 3 * Q, 4 * Q),
            "stale until the next sync"
        );
        log.synced(13, 13, &[]);
        assert!(log.fresh(log.epoch(), 3 * Q, 4 * Q));
    }

    #[test]
    fn slots_of_instants() {
        assert_eq!(slots_of([Q + 1, 0, Q - 1, -1, Q]), vec![-1, 0, 1]);
    }
}
