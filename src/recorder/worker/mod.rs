use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

mod spilled;

use super::config::Config;
use super::queue::Queue;
use super::spill::Spill;
use super::stats::Counters;
use super::{Control, Queued};
use crate::inflight::Anchor;
use crate::record::UsageRecord;
use crate::sink::{SinkError, UsageSink};

/// The recorder's background half: takes records off the queue in batches and writes them.
///
/// Made by [`RecorderBuilder::build`](crate::recorder::RecorderBuilder::build) for those
/// who run it themselves; [`RecorderBuilder::spawn`](crate::recorder::RecorderBuilder::spawn)
/// runs it on the current tokio runtime.
#[derive(Debug)]
pub struct RecorderWorker {
    queue: Arc<Queue>,
    /// The records just taken off the queue; swapped with the queue's own buffer.
    incoming: Vec<Queued>,
    sink: Arc<dyn UsageSink>,
    counters: Arc<Counters>,
    control: Arc<Control>,
    config: Config,
    done: watch::Sender<bool>,
    /// Set once shutdown has been asked for: retries stop at this instant.
    shutdown_deadline: Option<Instant>,
    /// Emptied request states, handed back after each batch.
    spares: Vec<crate::inflight::Slot>,
    /// Where failing batches go, if the recorder has a spill.
    spill: Option<Spill>,
    /// The batches of the oldest spilled segment still to be written, once it is read.
    replay: Option<VecDeque<Vec<UsageRecord>>>,
}

impl RecorderWorker {
    pub(crate) fn new(
        queue: Arc<Queue>,
        sink: Arc<dyn UsageSink>,
        counters: Arc<Counters>,
        control: Arc<Control>,
        config: Config,
        spill: Option<Spill>,
        done: watch::Sender<bool>,
    ) -> Self {
        if let Some(spill) = &spill {
            counters.spill_bytes.store(spill.bytes(), Relaxed);
        }
        RecorderWorker {
            queue,
            incoming: Vec::new(),
            sink,
            counters,
            control,
            config,
            done,
            shutdown_deadline: None,
            spares: Vec::new(),
            spill,
            replay: None,
        }
    }

    /// Runs until [`Recorder::shutdown`](crate::Recorder::shutdown) is called or every
    /// recorder handle is dropped, then writes what is left and returns.
    pub async fn run(mut self) {
        // One buffer for the worker's whole life: a batch of records is too large to
        // allocate and free again for every write.
        let mut batch = Vec::with_capacity(self.config.batch_size);
        loop {
            if self.spill_holds_records() {
                // Until the spill is empty, batches go behind what it holds.
                let open = self.run_spilled(&mut batch).await;
                if !open || self.shutdown_deadline.is_some() {
                    break;
                }
            }
            if batch.is_empty() {
                let queue = Arc::clone(&self.queue);
                tokio::select! {
                    biased;
                    () = self.control.shutdown.notified() => self.begin_shutdown(),
                    () = queue.arrival() => {}
                }
            }
            if self.shutdown_deadline.is_some() {
                break;
            }
            let open = self.fill(&mut batch).await;
            batch = self.write(batch).await;
            if !open || self.shutdown_deadline.is_some() {
                break;
            }
        }
        self.drain(batch).await;
        // Let go of the spill's directory before anyone is told the worker stopped, so
        // that a new recorder may open it at once.
        self.spill = None;
        self.done.send_replace(true);
        self.control.progress.notify_waiters();
    }

    /// Adds one record to `batch`; the caller counts it as taken.
    fn push(&mut self, batch: &mut Vec<UsageRecord>, queued: Queued, anchor: &Anchor) {
        let taken = queued.into_record(anchor);
        self.spares.extend(taken.slot);
        match taken.record {
            Some(mut record) => {
                if let Some(pricing) = &self.config.pricing {
                    pricing.apply(&mut record);
                }
                if record.clamp_amounts() {
                    Counters::add(&self.counters.clamped, 1);
                }
                if let Some(f) = taken.on_recorded {
                    // Someone else's code: a panic there must not end the worker.
                    let run = std::panic::AssertUnwindSafe(|| (f.0)(&record));
                    if std::panic::catch_unwind(run).is_err() {
                        tracing::error!("a function told of a finished record panicked");
                    }
                }
                batch.push(record);
            }
            // Cannot happen (a request's record is queued once), but a lost record must
            // still leave the counters balanced.
            None => {
                Counters::add(&self.counters.failed, 1);
                Counters::add(&self.counters.settled, 1);
            }
        }
    }

    /// Adds records to `batch` until it is full, the flush interval has passed, a flush or
    /// shutdown is asked for, or the queue closes. Returns whether the queue is still open.
    ///
    /// Senders wake this task only when a full batch is waiting, not for every record.
    async fn fill(&mut self, batch: &mut Vec<UsageRecord>) -> bool {
        let deadline = Instant::now() + self.config.flush_interval;
        loop {
            if !self.take_available(batch) {
                return false;
            }
            if batch.len() >= self.config.full_batch() {
                return true;
            }
            let queue = Arc::clone(&self.queue);
            tokio::select! {
                biased;
                () = self.control.shutdown.notified() => self.begin_shutdown(),
                () = self.control.flush.notified() => {}
                () = queue.full_batch() => continue,
                () = tokio::time::sleep_until(deadline) => {}
            }
            return self.take_available(batch);
        }
    }

    /// Moves what the queue holds into `batch`, up to the batch size, without waiting.
    /// Returns whether the queue is still open.
    fn take_available(&mut self, batch: &mut Vec<UsageRecord>) -> bool {
        self.take_up_to(batch, self.config.batch_size)
    }

    /// Moves what the queue holds into `batch`, up to `max` records in it, without
    /// waiting. Returns whether the queue is still open.
    fn take_up_to(&mut self, batch: &mut Vec<UsageRecord>, max: usize) -> bool {
        let room = max.saturating_sub(batch.len());
        let mut incoming = std::mem::take(&mut self.incoming);
        let (taken, ended) = self.queue.take(&mut incoming, room);
        // Once per batch, not per record: request threads read this counter.
        Counters::add(&self.counters.taken, taken);
        let anchor = Anchor::now();
        for queued in incoming.drain(..) {
            self.push(batch, queued, &anchor);
        }
        self.incoming = incoming;
        !ended
    }

    /// Closes the queue and writes everything still in it (behind what the spill holds,
    /// if it holds anything), then writes from the spill while the sink answers.
    async fn drain(&mut self, mut batch: Vec<UsageRecord>) {
        if self.shutdown_deadline.is_none() {
            self.begin_shutdown();
        }
        self.queue.close();
        loop {
            let ended = !self.take_available(&mut batch);
            if self.spill_holds_records() {
                self.spill_batch(&batch).await;
                batch.clear();
            } else {
                batch = self.write(batch).await;
            }
            if ended && batch.is_empty() {
                break;
            }
        }
        self.control.spares.give_back(&mut self.spares);
        while self.spill_holds_records() && !self.past_deadline() {
            if !self.replay_next().await {
                break;
            }
        }
    }

    fn begin_shutdown(&mut self) {
        self.shutdown_deadline = Some(Instant::now() + self.config.shutdown_timeout);
    }

    fn past_deadline(&self) -> bool {
        self.shutdown_deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Writes one batch, retrying transient failures (or moving it to the spill), and
    /// counts how it ended. Gives the emptied buffer back for the next batch.
    async fn write(&mut self, batch: Vec<UsageRecord>) -> Vec<UsageRecord> {
        self.control.spares.give_back(&mut self.spares);
        if batch.is_empty() {
            return batch;
        }
        let len = batch.len();
        if let Some(observer) = &self.config.observer {
            observer.batch(&batch);
        }
        let batch = Arc::new(batch);
        let retry = self.config.retry;
        let mut backoff = retry.initial_backoff;
        let mut retries = 0u32;
        // With a spill, the batch goes there by this instant at the latest, and a write
        // still running then is given up: the spill keeps the queue from filling behind it.
        let spill_at = self
            .spill
            .as_ref()
            .map(|s| Instant::now() + s.after_duration());
        let mut to_spill = false;
        loop {
            let attempt = self.attempt(&batch, spill_at);
            let attempt = if retries > 0 && self.spill.is_some() {
                // The batch failed before: a backlog past the high-water mark sends it to
                // the spill without waiting for this attempt, which is left to finish or
                // fail on its own (a record written twice keeps its id).
                let queue = Arc::clone(&self.queue);
                tokio::select! {
                    attempt = attempt => attempt,
                    () = queue.past_high_water() => Err(SinkError::transient(
                        "the queue passed its high-water mark while the batch was retried",
                    )),
                }
            } else {
                attempt.await
            };
            let Err(error) = self.count_attempt(attempt, len, false) else {
                break;
            };
            tracing::warn!(%error, records = len, retries, "tower-usage: batch write failed");
            let out_of_retries = retry.max_retries.is_some_and(|max| retries >= max);
            if self.spill.is_some() {
                if out_of_retries || self.due_for_spill(spill_at) {
                    to_spill = true;
                    break;
                }
            } else if out_of_retries || self.past_deadline() {
                tracing::error!(records = len, retries, "tower-usage: batch given up");
                Counters::add(&self.counters.failed, len);
                break;
            }
            retries += 1;
            Counters::add(&self.counters.retried, 1);
            self.counters.failing.store(u64::from(retries), Relaxed);
            let wait = spill_at.map_or(backoff, |at| {
                backoff.min(at.saturating_duration_since(Instant::now()))
            });
            self.back_off(wait).await;
            backoff = backoff.saturating_mul(2).min(retry.max_backoff);
            // Woken by the high-water mark, `after` or shutdown: no attempt more.
            if self.due_for_spill(spill_at) {
                to_spill = true;
                break;
            }
        }
        self.counters.failing.store(0, Relaxed);
        if to_spill {
            tracing::warn!(
                records = len,
                retries,
                "tower-usage: batch moved to the spill"
            );
            self.spill_batch(&batch).await;
        } else {
            Counters::add(&self.counters.settled, len);
        }
        self.control.progress.notify_waiters();
        // The write task has ended unless it was abandoned after a timeout; then it may
        // still hold the batch, and a fresh buffer is needed.
        match Arc::try_unwrap(batch) {
            Ok(mut buffer) => {
                buffer.clear();
                buffer
            }
            Err(_) => Vec::with_capacity(self.config.batch_size),
        }
    }

    /// Counts how an attempt at writing `len` records ended, when it ended for good
    /// (written, or refused for good); gives a transient error back.
    fn count_attempt(
        &self,
        attempt: Result<(), SinkError>,
        len: usize,
        from_spill: bool,
    ) -> Result<(), SinkError> {
        let written = match attempt {
            Ok(()) => len,
            Err(SinkError::Rejected { count, reason }) => {
                let count = count.min(len);
                tracing::warn!(count, %reason, "tower-usage: sink rejected records");
                Counters::add(&self.counters.failed, count);
                len - count
            }
            Err(error @ SinkError::Permanent(_)) => {
                tracing::error!(%error, records = len, "tower-usage: batch given up");
                Counters::add(&self.counters.failed, len);
                0
            }
            Err(transient) => return Err(transient),
        };
        Counters::add(&self.counters.written, written);
        if from_spill {
            Counters::add(&self.counters.replayed, written);
        }
        Ok(())
    }

    /// Sleeps before a retry; a shutdown request cuts the sleep short.
    /// With a spill, the queue passing its high-water mark cuts it short too.
    async fn back_off(&mut self, backoff: Duration) {
        let until = match self.shutdown_deadline {
            Some(deadline) => deadline.min(Instant::now() + backoff),
            None => Instant::now() + backoff,
        };
        if self.shutdown_deadline.is_some() {
            tokio::time::sleep_until(until).await;
            return;
        }
        let queue = Arc::clone(&self.queue);
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            () = queue.past_high_water() => {}
            () = self.control.shutdown.notified() => self.begin_shutdown(),
        }
    }

    /// Whether a failing batch due in the spill at `spill_at` (`None`: there is no spill)
    /// goes there now.
    fn due_for_spill(&self, spill_at: Option<Instant>) -> bool {
        spill_at.is_some_and(|at| {
            self.shutdown_deadline.is_some()
                || Instant::now() >= at
                || self.queue.len() >= self.queue.high_water()
        })
    }

    /// One `write_batch` call in a task of its own, so that a panic or a hang in the sink
    /// is contained and timed out (at `until` at the latest, and at the shutdown
    /// deadline), and told to the observer with its duration. The future owns what it
    /// needs, so the worker can do other work while it runs.
    fn attempt(
        &self,
        batch: &Arc<Vec<UsageRecord>>,
        until: Option<Instant>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send + 'static {
        let sink = Arc::clone(&self.sink);
        let records = Arc::clone(batch);
        let observer = self.config.observer.clone();
        let now = Instant::now();
        let limit = [self.shutdown_deadline, until]
            .into_iter()
            .flatten()
            .fold(self.config.write_timeout, |limit, at| {
                limit.min(at.saturating_duration_since(now))
            });
        async move {
            let mut task = tokio::spawn(async move { sink.write_batch(&records).await });
            let attempt = match tokio::time::timeout(limit, &mut task).await {
                Ok(Ok(result)) => result,
                Ok(Err(join_error)) if join_error.is_panic() => {
                    let payload = join_error.into_panic();
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".to_owned());
                    Err(SinkError::permanent(format!(
                        "the sink panicked: {message}"
                    )))
                }
                Ok(Err(join_error)) => Err(SinkError::transient(join_error)),
                Err(_) => {
                    task.abort();
                    Err(SinkError::transient(format!(
                        "the sink did not answer within {limit:?}"
                    )))
                }
            };
            if let Some(observer) = observer {
                let written = matches!(attempt, Ok(()) | Err(SinkError::Rejected { .. }));
                observer.attempt(now.elapsed(), written);
            }
            attempt
        }
    }
}
