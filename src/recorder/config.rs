//! A recorder's settings: what to do when the queue is full, how to retry, and the rest
//! the builder sets.

use std::sync::Arc;
use std::time::Duration;

use crate::pricing::PriceTable;

/// What to do with a record when the queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// Drop the record and count it in [`RecorderStats::dropped`](crate::RecorderStats::dropped).
    /// The default: analytics never hold a request or memory hostage.
    #[default]
    Drop,
    /// Keep the record in a task that waits for room in the queue. The request still does
    /// not wait, but memory grows with the backlog while the sink is slow. Outside a tokio
    /// runtime (no task can be started) the record is dropped and counted.
    Wait,
}

/// How a batch that failed transiently is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retry {
    /// The wait before the first retry; it doubles after each failure.
    pub initial_backoff: Duration,
    /// The longest wait between two tries.
    pub max_backoff: Duration,
    /// How many retries before the batch is given up; `None` retries until it is written
    /// (or, while shutting down, until the shutdown deadline).
    pub max_retries: Option<u32>,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_retries: None,
        }
    }
}

impl Retry {
    /// Retries forever, starting at `initial_backoff` and doubling up to `max_backoff`.
    pub fn backoff(initial_backoff: Duration, max_backoff: Duration) -> Self {
        Retry {
            initial_backoff,
            max_backoff,
            max_retries: None,
        }
    }

    /// Gives a batch up after `max_retries` retries.
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = Some(max_retries);
        self
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) queue_capacity: usize,
    pub(crate) batch_size: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) overflow: Overflow,
    pub(crate) retry: Retry,
    pub(crate) write_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) pricing: Option<Arc<PriceTable>>,
    /// Told of every batch and every write attempt (metrics).
    pub(crate) observer: Option<Arc<dyn super::WriteObserver>>,
}

impl Config {
    /// How many records make a batch worth writing at once. A batch larger than the queue
    /// can never be waiting in it, so a full queue counts as a full batch.
    pub(crate) fn full_batch(&self) -> usize {
        self.batch_size.min(self.queue_capacity)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            queue_capacity: 16_384,
            batch_size: 1_024,
            flush_interval: Duration::from_secs(1),
            overflow: Overflow::Drop,
            retry: Retry::default(),
            write_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            pricing: None,
            observer: None,
        }
    }
}
