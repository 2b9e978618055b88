//! The recording pipeline: a bounded queue in front of a batching worker that writes
//! through a [`UsageSink`].
//!
//! ```text
//! layer / record_usage ──try_send──▶ queue (bounded) ──▶ worker ──write_batch──▶ sink
//! ```
//!
//! * Putting a record in the queue never waits: when the queue is full the record is
//!   dropped and counted ([`Overflow::Drop`], the default), or handed to a task that waits
//!   for room ([`Overflow::Wait`]).
//! * The worker writes a batch when it holds
//!   [`batch_size`](RecorderBuilder::batch_size) records, or when the first record of the
//!   batch has waited [`flush_interval`](RecorderBuilder::flush_interval).
//! * A batch that fails transiently is retried with backoff (see [`Retry`]); it leaves
//!   the worker only once it is written or given up. Every record has a unique id, so a
//!   sink that ignores known ids never counts a retried record twice.
//! * Each write runs in a task of its own with a timeout: a sink that panics or hangs
//!   costs that batch at most, never a request.
//! * With a [`Spill`], a batch the sink keeps failing goes to files on disk instead of
//!   being given up, and is written from there, in order, once the sink answers again,
//!   by this process or the next one that opens the same directory.
//! * [`Recorder::shutdown`] writes everything still queued, then stops the worker.
//!
//! [`Recorder::stats`] counts what was recorded, written, retried, failed and dropped.

mod builder;
mod config;
mod global;
mod queue;
mod spares;
mod spill;
pub(crate) mod stats;
mod watcher;
mod worker;

pub use builder::RecorderBuilder;
pub use config::{Overflow, Retry};
pub use global::{install, installed, record_usage};
pub use spill::{Spill, SpillError};
pub use stats::RecorderStats;
pub use watcher::{RecorderWatch, WriteObserver};
pub use worker::RecorderWorker;

use std::sync::Arc;

use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::handle::UsageHandle;
use crate::record::{TokenUsage, UsageRecord};
use crate::sink::UsageSink;
use stats::Counters;

/// The front end of the recording pipeline: cheap to clone, safe to call from any thread.
///
/// ```
/// use serde_json::json;
/// use tower_usage::{MemorySink, Recorder};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let sink = MemorySink::new();
/// let recorder = Recorder::builder(sink.clone()).spawn();
///
/// // Usage that is not an HTTP request: a batch job, a queue consumer, a websocket message.
/// recorder
///     .record_usage("user-1", "custom-service", Some("gpt-4"), 1000, 100, json!({"customField": "value"}))
///     .unwrap();
///
/// recorder.shutdown().await; // writes everything still queued
/// assert_eq!(sink.len(), 1);
/// assert_eq!(recorder.stats().written, 1);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Recorder {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queue: Arc<queue::Queue>,
    counters: Arc<Counters>,
    control: Arc<Control>,
    overflow: Overflow,
    /// Turns `true` (or its sender is dropped) when the worker has stopped.
    done: watch::Receiver<bool>,
}

impl Drop for Shared {
    /// The last recorder handle is gone: nothing more can be queued, and the worker
    /// writes what is left and stops.
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// Signals between the recorder's handles and its worker.
#[derive(Debug, Default)]
pub(crate) struct Control {
    pub(crate) shutdown: Notify,
    pub(crate) flush: Notify,
    /// Woken each time a batch has been written or given up.
    pub(crate) progress: Notify,
    /// Emptied request states, for the next requests.
    pub(crate) spares: spares::Spares,
}

/// What travels through the queue.
#[derive(Debug)]
pub(crate) enum Queued {
    /// A record made by hand (boxed: the queue's slots stay small).
    Record(Box<UsageRecord>),
    /// A finished request: its record is still inside the handle.
    Request(UsageHandle),
}

/// What the worker takes out of a queued entry.
pub(crate) struct Taken {
    pub(crate) record: Option<UsageRecord>,
    /// The request's emptied state, when nothing else holds it.
    pub(crate) slot: Option<crate::inflight::Slot>,
    /// What runs with the record before it is written.
    pub(crate) on_recorded: Option<crate::inflight::OnRecorded>,
}

impl Queued {
    /// The record, what runs with it, and the request's emptied state.
    pub(crate) fn into_record(self, anchor: &crate::inflight::Anchor) -> Taken {
        match self {
            Queued::Record(record) => Taken {
                record: Some(*record),
                slot: None,
                on_recorded: None,
            },
            Queued::Request(handle) => {
                let (record, on_recorded) = handle.take_finished(anchor);
                Taken {
                    record,
                    on_recorded,
                    slot: handle.into_slot(),
                }
            }
        }
    }
}

/// Why a record was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The queue was full and the overflow policy is to drop.
    #[error("the usage queue is full; the record was dropped")]
    QueueFull,
    /// The recorder has shut down.
    #[error("the usage recorder has shut down; the record was dropped")]
    Closed,
    /// [`record_usage`] was called before a recorder was [`install`]ed.
    #[error("no usage recorder is installed; call tower_usage::install first")]
    NotInstalled,
}

impl Recorder {
    /// Starts configuring a recorder that writes to `sink`.
    pub fn builder(sink: impl UsageSink) -> RecorderBuilder {
        RecorderBuilder::new(Arc::new(sink))
    }

    /// Queues a finished record, without waiting.
    pub fn record(&self, record: UsageRecord) -> Result<(), RecordError> {
        self.enqueue(Queued::Record(Box::new(record)))
    }

    /// An emptied request state to reuse, if the worker has handed one back.
    pub(crate) fn spare_slot(&self) -> Option<crate::inflight::Slot> {
        self.shared.control.spares.take()
    }

    /// Queues the record of a finished request.
    pub(crate) fn record_request(&self, handle: UsageHandle) -> Result<(), RecordError> {
        self.enqueue(Queued::Request(handle))
    }

    fn enqueue(&self, queued: Queued) -> Result<(), RecordError> {
        let shared = &*self.shared;
        match shared.queue.push(queued) {
            Ok(()) => {
                Counters::add(&shared.counters.recorded, 1);
                Ok(())
            }
            Err(queue::Refused::Full(queued)) if shared.overflow == Overflow::Wait => {
                self.wait_for_room(queued)
            }
            Err(queue::Refused::Full(_)) => {
                Counters::add(&shared.counters.dropped, 1);
                Err(RecordError::QueueFull)
            }
            Err(queue::Refused::Closed(_)) => {
                Counters::add(&shared.counters.dropped, 1);
                Err(RecordError::Closed)
            }
        }
    }

    fn wait_for_room(&self, queued: Queued) -> Result<(), RecordError> {
        let counters = &self.shared.counters;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            Counters::add(&counters.dropped, 1);
            return Err(RecordError::QueueFull);
        };
        Counters::add(&counters.recorded, 1);
        // The task holds the recorder's state, so the queue stays open until it is done.
        let shared = Arc::clone(&self.shared);
        runtime.spawn(async move {
            if shared.queue.push_when_room(queued).await.is_err() {
                Counters::add(&shared.counters.failed, 1);
                Counters::add(&shared.counters.settled, 1);
            }
        });
        Ok(())
    }

    /// Records usage that is not an HTTP request: who used which service and model, and
    /// how many tokens. `metadata` is any JSON (`serde_json::Value::Null` for none).
    ///
    /// Returns the new record's id.
    pub fn record_usage(
        &self,
        user: impl Into<String>,
        service: impl Into<String>,
        model: Option<&str>,
        tokens_in: u64,
        tokens_out: u64,
        metadata: serde_json::Value,
    ) -> Result<Uuid, RecordError> {
        let mut builder = UsageRecord::builder()
            .user(user)
            .service(service)
            .tokens(TokenUsage::new(tokens_in, tokens_out))
            .metadata(metadata);
        if let Some(model) = model {
            builder = builder.model(model);
        }
        let record = builder.build();
        let id = record.id;
        self.record(record).map(|()| id)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RecorderStats {
        self.shared.counters.snapshot()
    }

    /// A read-only view of this recorder for health checks and metrics, which does not
    /// keep it running; see [`RecorderWatch`].
    pub fn watch(&self) -> RecorderWatch {
        RecorderWatch::new(
            Arc::clone(&self.shared.counters),
            Arc::clone(&self.shared.queue),
            self.shared.done.clone(),
        )
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    fn worker_stopped(&self) -> bool {
        let done = &self.shared.done;
        *done.borrow() || done.has_changed().is_err()
    }

    /// Waits until every record accepted before this call has been written, given up, or
    /// kept in the [spill](Spill) (on disk, to be written once the sink answers again).
    /// The worker writes what it holds at once instead of waiting for the flush interval.
    /// Returns at once if the worker has stopped; a worker from
    /// [`RecorderBuilder::build`] that was never run is waited for.
    pub async fn flush(&self) {
        let control = &self.shared.control;
        let target = self
            .shared
            .counters
            .recorded
            .load(std::sync::atomic::Ordering::Relaxed);
        control.flush.notify_one();
        loop {
            let progress = control.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            let settled = self
                .shared
                .counters
                .settled
                .load(std::sync::atomic::Ordering::Relaxed);
            if settled >= target || self.worker_stopped() {
                return;
            }
            progress.await;
        }
    }

    /// Stops taking records, writes everything still queued, and waits for the worker to
    /// stop. Records offered afterwards are dropped and counted. Safe to call more than
    /// once and from several clones.
    ///
    /// A sink that keeps failing is retried for at most the
    /// [`shutdown_timeout`](RecorderBuilder::shutdown_timeout); what is left then is counted
    /// as failed, or, with a [spill](Spill), kept there at the first failure for the next
    /// process that opens it. Like [`flush`](Self::flush), it waits for a worker from
    /// [`RecorderBuilder::build`] that was never run.
    pub async fn shutdown(&self) {
        self.shared.control.shutdown.notify_one();
        let mut done = self.shared.done.clone();
        // An error means the worker is gone (finished, dropped or aborted): nothing to wait for.
        let _ = done.wait_for(|stopped| *stopped).await;
    }
}
