use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::queue::Queue;

use super::worker::RecorderWorker;
use super::{Control, Recorder, Shared};
use crate::pricing::PriceTable;
use crate::recorder::stats::Counters;
use crate::sink::UsageSink;

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
        }
    }
}

/// Configures and starts a [`Recorder`]; made by [`Recorder::builder`].
///
/// ```
/// use std::time::Duration;
/// use tower_usage::{recorder::{Overflow, Retry}, MemorySink, Recorder};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let recorder = Recorder::builder(MemorySink::new())
///     .queue_capacity(50_000)
///     .batch_size(1_000)
///     .flush_interval(Duration::from_millis(500))
///     .overflow(Overflow::Drop)
///     .retry(Retry::backoff(Duration::from_millis(50), Duration::from_secs(5)).max_retries(20))
///     .spawn();
/// # recorder.shutdown().await;
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `spawn` or `build` is called"]
pub struct RecorderBuilder {
    sink: Arc<dyn UsageSink>,
    config: Config,
}

impl RecorderBuilder {
    pub(crate) fn new(sink: Arc<dyn UsageSink>) -> Self {
        RecorderBuilder {
            sink,
            config: Config::default(),
        }
    }

    /// How many records the queue holds (default 16,384; at least 1).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.config.queue_capacity = capacity.max(1);
        self
    }

    /// The most records written in one batch (default 1,024; at least 1). Chosen with the
    /// `ingest` benchmark: on PostgreSQL, batches of 4,096 were slower than 1,024; on SQLite
    /// they were about 15% faster. A batch is written early when the flush interval passes,
    /// so a quiet service still sees its records promptly.
    pub fn batch_size(mut self, size: usize) -> Self {
        self.config.batch_size = size.max(1);
        self
    }

    /// How long the first record of a batch waits for others before the batch is written
    /// (default 1 s).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.config.flush_interval = interval;
        self
    }

    /// What to do when the queue is full (default [`Overflow::Drop`]).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.config.overflow = overflow;
        self
    }

    /// How failed batches are retried (default: forever, 100 ms doubling to 10 s).
    pub fn retry(mut self, retry: Retry) -> Self {
        self.config.retry = retry;
        self
    }

    /// How long one `write_batch` may take before it counts as a transient failure
    /// (default 30 s). A hung sink is abandoned after this.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.config.write_timeout = timeout;
        self
    }

    /// How long [`Recorder::shutdown`] keeps retrying a failing sink before it gives the
    /// remaining records up as failed (default 30 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// Prices records that have tokens but no cost before they are written; see
    /// [`pricing`](crate::pricing). Records of models the table does not know get cost 0
    /// and `"unpriced": true` in their metadata.
    ///
    /// ```
    /// use tower_usage::pricing::{Price, PriceTable};
    /// use tower_usage::{MemorySink, Recorder};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let sink = MemorySink::new();
    /// let prices = PriceTable::new().with("gpt-4o-*", Price::per_million(2_500_000, 10_000_000));
    /// let recorder = Recorder::builder(sink.clone()).pricing(prices).spawn();
    /// recorder.record_usage("alice", "chat", Some("gpt-4o-mini"), 1_000, 100, serde_json::Value::Null).unwrap();
    /// recorder.shutdown().await;
    /// assert_eq!(sink.records()[0].cost_micros, Some(2_500 + 1_000));
    /// # }
    /// ```
    pub fn pricing(mut self, table: PriceTable) -> Self {
        self.config.pricing = Some(Arc::new(table));
        self
    }

    /// The recorder and its worker, for running the worker yourself (on another runtime,
    /// or under your own supervision). Records are only written while
    /// [`RecorderWorker::run`] is being awaited.
    pub fn build(self) -> (Recorder, RecorderWorker) {
        // The layer times requests with the CPU's time-stamp counter (quanta), calibrated
        // against the OS clock once per process, for up to a few milliseconds: here,
        // rather than on the first request.
        let _ = quanta::Instant::now();
        let queue = Arc::new(Queue::new(
            self.config.queue_capacity,
            self.config.full_batch(),
        ));
        let (done_tx, done_rx) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let control = Arc::new(Control::default());
        let recorder = Recorder {
            shared: Arc::new(Shared {
                queue: Arc::clone(&queue),
                counters: Arc::clone(&counters),
                control: Arc::clone(&control),
                overflow: self.config.overflow,
                done: done_rx,
            }),
        };
        let worker = RecorderWorker::new(queue, self.sink, counters, control, self.config, done_tx);
        (recorder, worker)
    }

    /// Starts the worker on the current tokio runtime and returns the recorder.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like `tokio::spawn`. Use [`build`](Self::build) to run
    /// the worker elsewhere.
    pub fn spawn(self) -> Recorder {
        let (recorder, worker) = self.build();
        tokio::spawn(worker.run());
        recorder
    }
}
