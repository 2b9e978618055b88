//! The worker while its spill holds records: new batches go behind them on disk, and the
//! oldest are written to the sink, so records reach it in the order they were spilled.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::time::Instant;

use super::RecorderWorker;
use crate::record::UsageRecord;
use crate::recorder::spill::ReadSegment;
use crate::recorder::stats::Counters;
use crate::sink::SinkError;

impl RecorderWorker {
    pub(super) fn spill_holds_records(&self) -> bool {
        self.spill.as_ref().is_some_and(|s| s.holds_records())
    }

    /// Appends a batch to the spill: counted as spilled, or as failed when the spill
    /// refuses it (full, or the disk failed).
    pub(super) async fn spill_batch(&mut self, records: &[UsageRecord]) {
        let Some(spill) = &self.spill else {
            return;
        };
        if records.is_empty() {
            return;
        }
        let len = records.len();
        match spill.append(records).await {
            Ok(bytes) => {
                Counters::add(&self.counters.spilled, len);
                self.counters.spill_bytes.store(bytes, Relaxed);
            }
            Err(refused) => {
                tracing::error!(%refused, dir = ?spill.dir(), records = len, "tower-usage: batch given up");
                Counters::add(&self.counters.failed, len);
                Counters::add(&self.counters.spill_refused, len);
            }
        }
        Counters::add(&self.counters.settled, len);
        self.control.progress.notify_waiters();
    }

    /// Runs until the spill is empty (true), or the queue has closed or shutdown is asked
    /// for (false when the queue has closed). `batch` may hold records on return, newer
    /// than everything that was spilled.
    ///
    /// Reading a segment and writing from it run while the queue is moved to disk, so a
    /// sink that hangs, or a large segment, does not fill the queue.
    pub(super) async fn run_spilled(&mut self, batch: &mut Vec<UsageRecord>) -> bool {
        let retry = self.config.retry;
        let mut backoff = retry.initial_backoff;
        // Writes from the spill wait until then after a failure.
        let mut paused_until: Option<Instant> = None;
        // The records in `batch` go to disk by then at the latest.
        let mut append_by: Option<Instant> = None;
        let mut flush_asked = false;
        let mut in_flight: Option<InFlight> = None;
        loop {
            // Everything queued goes to disk in one append: a sync per batch of the sink's
            // size would be too slow to keep up with a busy service.
            let open = self.take_up_to(batch, self.queue.capacity());
            if !batch.is_empty() {
                let by =
                    *append_by.get_or_insert_with(|| Instant::now() + self.config.flush_interval);
                if batch.len() >= self.config.full_batch()
                    || flush_asked
                    || !open
                    || self.shutdown_deadline.is_some()
                    || Instant::now() >= by
                {
                    self.spill_batch(batch).await;
                    batch.clear();
                    self.control.spares.give_back(&mut self.spares);
                    append_by = None;
                    flush_asked = false;
                }
            }
            if !open || self.shutdown_deadline.is_some() {
                if let Some(step) = in_flight.take() {
                    self.finish_in_flight(step).await;
                }
                return open;
            }
            if in_flight.is_none() && paused_until.is_none_or(|until| Instant::now() >= until) {
                match self.next_step().await {
                    Next::Write(chunk) => {
                        let chunk = Arc::new(chunk);
                        in_flight = Some(InFlight::Write {
                            attempt: Box::pin(self.attempt(&chunk, None)),
                            chunk,
                        });
                    }
                    Next::Read => {
                        if let Some(spill) = &self.spill {
                            in_flight = Some(InFlight::Read(Box::pin(spill.read_oldest())));
                        }
                    }
                    Next::Empty => return true,
                    Next::Failed => {
                        paused_until = Some(Instant::now() + backoff);
                        backoff = backoff.saturating_mul(2).min(retry.max_backoff);
                    }
                }
            }
            let wake = [paused_until, append_by].into_iter().flatten().min();
            let queue = Arc::clone(&self.queue);
            let done = async {
                match &mut in_flight {
                    Some(InFlight::Write { attempt, .. }) => Done::Written(attempt.await),
                    Some(InFlight::Read(read)) => Done::Read(read.await),
                    None => std::future::pending().await,
                }
            };
            let woken = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = self.control.shutdown.notified() => self.begin_shutdown(),
                done = done => {
                    let chunk = match in_flight.take() {
                        Some(InFlight::Write { chunk, .. }) => chunk,
                        _ => Arc::default(),
                    };
                    let ok = match done {
                        Done::Written(attempt) => self.replayed(attempt, chunk),
                        Done::Read(read) => self.loaded(read),
                    };
                    if ok {
                        backoff = retry.initial_backoff;
                        paused_until = None;
                    } else {
                        paused_until = Some(Instant::now() + backoff);
                        backoff = backoff.saturating_mul(2).min(retry.max_backoff);
                    }
                }
                () = self.control.flush.notified() => flush_asked = true,
                () = queue.full_batch() => {}
                () = woken => {}
            }
        }
    }

    /// Ends what was running when shutdown came: a read is waited for; a write until the
    /// shutdown deadline, and one cut short goes back to be written first (records keep
    /// their ids).
    async fn finish_in_flight(&mut self, step: InFlight) {
        match step {
            InFlight::Read(read) => {
                self.loaded(read.await);
            }
            InFlight::Write { attempt, chunk } => {
                let attempt = match self.shutdown_deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, attempt)
                        .await
                        .unwrap_or_else(|_| {
                            Err(SinkError::transient("the shutdown deadline passed"))
                        }),
                    None => attempt.await,
                };
                self.replayed(attempt, chunk);
            }
        }
    }

    /// Writes the next records from the spill, reading a segment first if needed; false
    /// after a transient failure of the sink or of the disk, for the caller to stop.
    pub(super) async fn replay_next(&mut self) -> bool {
        loop {
            match self.next_step().await {
                Next::Write(chunk) => {
                    let chunk = Arc::new(chunk);
                    let attempt = self.attempt(&chunk, None).await;
                    return self.replayed(attempt, chunk);
                }
                Next::Read => {
                    let Some(spill) = &self.spill else {
                        return true;
                    };
                    let read = spill.read_oldest().await;
                    if !self.loaded(read) {
                        return false;
                    }
                }
                Next::Empty => return true,
                Next::Failed => return false,
            }
        }
    }

    /// What to do next to empty the spill: write up to a batch's worth of the oldest
    /// segment's batches, or read the next segment. Removes segments written whole.
    async fn next_step(&mut self) -> Next {
        let Some(spill) = &self.spill else {
            return Next::Empty;
        };
        let Some(replay) = &mut self.replay else {
            return if spill.holds_records() {
                Next::Read
            } else {
                Next::Empty
            };
        };
        let Some(mut chunk) = replay.pop_front() else {
            return match spill.remove_oldest().await {
                Ok(bytes) => {
                    self.counters.spill_bytes.store(bytes, Relaxed);
                    self.replay = None;
                    if spill.holds_records() {
                        Next::Read
                    } else {
                        Next::Empty
                    }
                }
                Err(error) => {
                    tracing::error!(%error, dir = ?spill.dir(), "tower-usage: a written spill segment could not be removed");
                    Next::Failed
                }
            };
        };
        let batch_size = self.config.batch_size;
        if chunk.len() > batch_size {
            // Appended while the queue held more than a batch: written a batch at a time.
            replay.push_front(chunk.split_off(batch_size));
        }
        while replay
            .front()
            .is_some_and(|next| chunk.len() + next.len() <= batch_size)
        {
            chunk.extend(replay.pop_front().into_iter().flatten());
        }
        Next::Write(chunk)
    }

    /// Takes in a segment just read; false when it could not be read.
    fn loaded(&mut self, read: ReadSegment) -> bool {
        let Some(spill) = &self.spill else {
            return true;
        };
        match read {
            // Emptied meanwhile; nothing to take in.
            Ok(None) => true,
            Ok(Some((decoded, left_by_earlier))) => {
                if let Some(damage) = &decoded.damage {
                    Counters::add(&self.counters.spill_damaged, 1);
                    tracing::error!(%damage, dir = ?spill.dir(), "tower-usage: a spill segment is damaged; what follows the damage is skipped");
                }
                if left_by_earlier {
                    let records = decoded.batches.iter().map(Vec::len).sum();
                    Counters::add(&self.counters.recovered, records);
                    if let Some(observer) = &self.config.observer {
                        decoded.batches.iter().for_each(|b| observer.batch(b));
                    }
                    tracing::info!(records, dir = ?spill.dir(), "tower-usage: writing records an earlier process left in the spill");
                }
                self.replay = Some(decoded.batches.into());
                true
            }
            Err(error) => {
                tracing::error!(%error, dir = ?spill.dir(), "tower-usage: the spill could not be read");
                false
            }
        }
    }

    /// Counts how a write from the spill ended; records that failed transiently go back
    /// in front, to be written first. Returns whether the write ended for good.
    fn replayed(&mut self, attempt: Result<(), SinkError>, chunk: Arc<Vec<UsageRecord>>) -> bool {
        let len = chunk.len();
        let ended = match self.count_attempt(attempt, len, true) {
            Ok(()) => {
                self.counters.failing.store(0, Relaxed);
                true
            }
            Err(error) => {
                tracing::warn!(%error, records = len, "tower-usage: writing from the spill failed; retrying");
                Counters::add(&self.counters.retried, 1);
                self.counters.failing.fetch_add(1, Relaxed);
                let chunk = Arc::try_unwrap(chunk).unwrap_or_else(|shared| (*shared).clone());
                self.replay.get_or_insert_default().push_front(chunk);
                false
            }
        };
        self.control.progress.notify_waiters();
        ended
    }
}

/// What to do next to empty the spill.
enum Next {
    Write(Vec<UsageRecord>),
    Read,
    Empty,
    /// The disk failed (logged): back off.
    Failed,
}

/// A step towards emptying the spill, running while the worker moves the queue to disk.
enum InFlight {
    Read(Pin<Box<dyn Future<Output = ReadSegment> + Send>>),
    Write {
        attempt: Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send>>,
        chunk: Arc<Vec<UsageRecord>>,
    },
}

/// How an in-flight step ended.
enum Done {
    Read(ReadSegment),
    Written(Result<(), SinkError>),
}
