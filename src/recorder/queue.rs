//! The bounded queue between the request threads and the worker: a vector under a lock,
//! taken by the worker a batch at a time.
//!
//! A sender locks, pushes and lets go; the worker swaps the whole vector out. Nothing is
//! written on every record by both sides (a channel's semaphore and its receiver's waker
//! are), so what a request touches stays in its core's cache. Senders wake the worker at
//! most twice a batch: at the first record after the worker emptied the queue, and when
//! a full batch is waiting.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::Queued;

#[derive(Debug)]
pub(crate) struct Queue {
    state: Mutex<State>,
    capacity: usize,
    /// How many records make a batch worth waking the worker for.
    ready_at: usize,
    /// Woken by the first record of an empty queue, and when the queue closes.
    first: Notify,
    /// Woken when a full batch is waiting, and when the queue closes.
    full: Notify,
    /// Woken when the worker has taken records, and when the queue closes.
    room: Notify,
    /// How many records make a backlog for a recorder with a spill (`usize::MAX` without).
    high_water: usize,
    /// Woken when the queue reaches `high_water` records.
    high: Notify,
}

#[derive(Debug, Default)]
struct State {
    items: Vec<Queued>,
    closed: bool,
}

/// Why a record was not queued; the record comes back.
#[derive(Debug)]
pub(crate) enum Refused {
    Full(Queued),
    Closed(Queued),
}

impl Queue {
    pub(crate) fn new(capacity: usize, ready_at: usize) -> Self {
        Queue {
            state: Mutex::default(),
            capacity: capacity.max(1),
            ready_at: ready_at.max(1),
            first: Notify::new(),
            full: Notify::new(),
            room: Notify::new(),
            high_water: usize::MAX,
            high: Notify::new(),
        }
    }

    /// Sets the backlog that [`past_high_water`](Self::past_high_water) waits for.
    pub(crate) fn with_high_water(mut self, high_water: usize) -> Self {
        self.high_water = high_water.max(1);
        self
    }

    /// How many items the queue holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The backlog [`past_high_water`](Self::past_high_water) waits for.
    pub(crate) fn high_water(&self) -> usize {
        self.high_water
    }

    /// How many items the queue holds now.
    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// A record is plain data: one that panicked elsewhere leaves it usable.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item` unless the queue is full or closed; never waits.
    pub(crate) fn push(&self, item: Queued) -> Result<(), Refused> {
        let len = {
            let mut state = self.lock();
            if state.closed {
                return Err(Refused::Closed(item));
            }
            if state.items.len() >= self.capacity {
                return Err(Refused::Full(item));
            }
            state.items.push(item);
            state.items.len()
        };
        if len == 1 {
            self.first.notify_one();
        }
        if len == self.ready_at {
            self.full.notify_one();
        }
        if len == self.high_water {
            self.high.notify_one();
        }
        Ok(())
    }

    /// Queues `item` once there is room; gives it back if the queue closes first.
    pub(crate) async fn push_when_room(&self, mut item: Queued) -> Result<(), Queued> {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.push(item) {
                Ok(()) => return Ok(()),
                Err(Refused::Closed(back)) => return Err(back),
                Err(Refused::Full(back)) => item = back,
            }
            room.await;
        }
    }

    /// Moves up to `max` records into `into`, which must be empty, and says how many and
    /// whether the queue is now closed and empty (nothing more will come).
    pub(crate) fn take(&self, into: &mut Vec<Queued>, max: usize) -> (usize, bool) {
        let (taken, ended) = {
            let mut state = self.lock();
            let taken = state.items.len().min(max);
            if taken == state.items.len() && into.is_empty() {
                // The worker's empty buffer becomes the queue's: no allocation either way.
                std::mem::swap(&mut state.items, into);
            } else {
                into.extend(state.items.drain(..taken));
            }
            (taken, state.closed && state.items.is_empty())
        };
        if taken > 0 {
            self.room.notify_waiters();
        }
        (taken, ended)
    }

    /// Refuses records from now on; those queued can still be taken.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.first.notify_one();
        self.full.notify_one();
        self.room.notify_waiters();
    }

    /// Waits until a record is queued or the queue is closed.
    pub(crate) async fn arrival(&self) {
        loop {
            let first = self.first.notified();
            tokio::pin!(first);
            first.as_mut().enable();
            {
                let state = self.lock();
                if !state.items.is_empty() || state.closed {
                    return;
                }
            }
            first.await;
        }
    }

    /// Waits until the queue holds its high-water mark of records; never without one.
    pub(crate) async fn past_high_water(&self) {
        loop {
            let high = self.high.notified();
            tokio::pin!(high);
            high.as_mut().enable();
            if self.len() >= self.high_water {
                return;
            }
            high.await;
        }
    }

    /// Waits until a full batch is queued (or the queue closes); may wake early.
    pub(crate) async fn full_batch(&self) {
        self.full.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UsageRecord;

    fn item() -> Queued {
        Queued::Record(Box::new(UsageRecord::builder().build()))
    }

    #[test]
    fn a_full_queue_refuses_and_a_closed_one_too_but_still_gives_what_it_holds() {
        let queue = Queue::new(2, 2);
        assert!(queue.push(item()).is_ok());
        assert!(queue.push(item()).is_ok());
        assert!(matches!(queue.push(item()), Err(Refused::Full(_))));
        let mut taken = Vec::new();
        assert_eq!(queue.take(&mut taken, 1), (1, false));
        assert_eq!(taken.len(), 1);
        queue.close();
        assert!(matches!(queue.push(item()), Err(Refused::Closed(_))));
        let mut rest = Vec::new();
        assert_eq!(queue.take(&mut rest, 10), (1, true));
    }

    #[tokio::test]
    async fn a_waiting_record_goes_in_once_the_worker_takes_some() {
        let queue = std::sync::Arc::new(Queue::new(1, 1));
        queue.push(item()).unwrap();
        let waiting = tokio::spawn({
            let queue = std::sync::Arc::clone(&queue);
            async move { queue.push_when_room(item()).await.is_ok() }
        });
        tokio::task::yield_now().await;
        let mut taken = Vec::new();
        queue.take(&mut taken, 10);
        assert!(waiting.await.unwrap());
        queue.arrival().await;
        let mut next = Vec::new();
        assert_eq!(queue.take(&mut next, 10), (1, false));
    }
}
