//! Request-state allocations handed back by the worker for the next requests.
//!
//! Each request's state is allocated on a request thread and freed on the worker's: with
//! the system allocator, every such free takes the lock of the request thread's arena,
//! which that thread needs for its next allocation, and the two threads queue on it.
//! Giving the emptied allocations back, a batch at a time, keeps both sides off the lock.

use std::sync::Mutex;

use crate::inflight::Slot;

/// Spare slots kept at most: a few batches' worth (about 1 KiB each).
const KEEP: usize = 1_024;

#[derive(Debug, Default)]
pub(crate) struct Spares {
    slots: Mutex<Vec<Slot>>,
}

impl Spares {
    /// A spare slot, if one is at hand; never waits for the lock.
    pub(crate) fn take(&self) -> Option<Slot> {
        self.slots.try_lock().ok()?.pop()
    }

    /// Keeps what fits of `returned` and empties it.
    pub(crate) fn give_back(&self, returned: &mut Vec<Slot>) {
        if let Ok(mut slots) = self.slots.lock() {
            let room = KEEP.saturating_sub(slots.len()).min(returned.len());
            slots.extend(returned.drain(..room));
        }
        returned.clear();
    }
}
