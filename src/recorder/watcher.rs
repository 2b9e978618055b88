//! [`RecorderWatch`]: a read-only view of a recorder, for health checks and metrics, and
//! [`WriteObserver`]: what the worker tells of each batch it writes.

use std::fmt::Debug;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::queue::Queue;
use super::stats::Counters;
use super::RecorderStats;
use crate::record::UsageRecord;

/// A read-only view of a [`Recorder`](crate::Recorder): its counters, its queue's size and
/// whether its worker runs. Made by [`Recorder::watch`](crate::Recorder::watch).
///
/// Unlike a `Recorder` handle, a watch does not keep the recorder's queue open: a
/// recorder whose handles are all dropped still stops, and its watch then says so.
///
/// ```
/// use tower_usage::{MemorySink, Recorder};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let recorder = Recorder::builder(MemorySink::new()).queue_capacity(100).spawn();
/// let watch = recorder.watch();
/// assert_eq!(watch.capacity(), 100);
/// assert!(!watch.stopped());
/// recorder.shutdown().await;
/// assert!(watch.stopped());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RecorderWatch {
    counters: Arc<Counters>,
    queue: Arc<Queue>,
    done: watch::Receiver<bool>,
}

impl RecorderWatch {
    pub(crate) fn new(
        counters: Arc<Counters>,
        queue: Arc<Queue>,
        done: watch::Receiver<bool>,
    ) -> Self {
        RecorderWatch {
            counters,
            queue,
            done,
        }
    }

    /// A snapshot of the recorder's counters, as [`Recorder::stats`](crate::Recorder::stats).
    pub fn stats(&self) -> RecorderStats {
        self.counters.snapshot()
    }

    /// How many records the queue holds at most.
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// How many records wait in the queue now (those the worker holds, or keeps in the
    /// spill, are not counted).
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Whether the worker has stopped (after a shutdown, or once every handle was dropped).
    pub fn stopped(&self) -> bool {
        *self.done.borrow() || self.done.has_changed().is_err()
    }

    /// How many attempts at the batch being written now have failed in a row (0 when the
    /// last write ended, written or given up).
    pub fn failing_attempts(&self) -> u64 {
        self.counters.failing.load(Relaxed)
    }
}

/// Told by the recorder's worker of each batch it writes: for metrics.
///
/// Both calls run on the worker's task, once per batch or attempt, never on a request's
/// path; they must be quick and must not block.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::Duration;
/// use tower_usage::{recorder::WriteObserver, MemorySink, Recorder, UsageRecord};
///
/// #[derive(Debug, Default)]
/// struct Tokens(AtomicU64);
///
/// impl WriteObserver for Tokens {
///     fn batch(&self, records: &[UsageRecord]) {
///         let tokens: u64 = records.iter().map(|r| r.tokens.total()).sum();
///         self.0.fetch_add(tokens, Ordering::Relaxed);
///     }
///     fn attempt(&self, _took: Duration, _written: bool) {}
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let tokens = std::sync::Arc::new(Tokens::default());
/// let recorder = Recorder::builder(MemorySink::new()).observer(tokens.clone()).spawn();
/// recorder.record_usage("alice", "chat", None, 10, 5, serde_json::Value::Null).unwrap();
/// recorder.shutdown().await;
/// assert_eq!(tokens.0.load(Ordering::Relaxed), 15);
/// # }
/// ```
pub trait WriteObserver: Debug + Send + Sync + 'static {
    /// A batch is about to be written: each record once, priced, however many attempts
    /// its write takes.
    fn batch(&self, records: &[UsageRecord]);

    /// One attempt at writing a batch ended after `took`: `written` when the sink
    /// accepted it (or refused some records for good), otherwise it failed or timed out.
    fn attempt(&self, took: Duration, written: bool);
}

impl<T: WriteObserver> WriteObserver for Arc<T> {
    fn batch(&self, records: &[UsageRecord]) {
        (**self).batch(records);
    }

    fn attempt(&self, took: Duration, written: bool) {
        (**self).attempt(took, written);
    }
}
