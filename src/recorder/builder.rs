//! [`RecorderBuilder`]: a recorder's settings, and the recorder and worker it starts.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::config::{Config, Overflow, Retry};
use super::queue::Queue;
use super::spill::Spill;
use super::stats::Counters;
use super::worker::RecorderWorker;
use super::{Control, Recorder, Shared};
use crate::pricing::PriceTable;
use crate::sink::UsageSink;

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
    spill: Option<Spill>,
}

impl RecorderBuilder {
    pub(crate) fn new(sink: Arc<dyn UsageSink>) -> Self {
        RecorderBuilder {
            sink,
            config: Config::default(),
            spill: None,
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

    /// Tells `observer` of every batch the worker writes and of every write attempt, with
    /// its duration: for metrics such as `ops::Metrics` (feature
    /// `prometheus`). See [`WriteObserver`](super::WriteObserver).
    pub fn observer(mut self, observer: impl super::WriteObserver) -> Self {
        self.config.observer = Some(Arc::new(observer));
        self
    }

    /// Keeps batches the sink cannot take yet on disk, and writes them once it answers
    /// again, instead of giving them up or letting the queue fill; see [`Spill`].
    ///
    /// ```
    /// use tower_usage::{recorder::Spill, MemorySink, Recorder};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_usage::recorder::SpillError> {
    /// # let dir = std::env::temp_dir().join(format!("tower-usage-doc-builder-spill-{}", std::process::id()));
    /// let recorder = Recorder::builder(MemorySink::new()).spill(Spill::open(&dir)?).spawn();
    /// # recorder.shutdown().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(()) }
    /// ```
    pub fn spill(mut self, spill: Spill) -> Self {
        self.spill = Some(spill);
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
        let mut queue = Queue::new(self.config.queue_capacity, self.config.full_batch());
        if let Some(spill) = &self.spill {
            queue = queue.with_high_water(spill.high_water_for(self.config.queue_capacity));
        }
        let queue = Arc::new(queue);
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
        let worker = RecorderWorker::new(
            queue,
            self.sink,
            counters,
            control,
            self.config,
            self.spill,
            done_tx,
        );
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
