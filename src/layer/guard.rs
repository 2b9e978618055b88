//! Finishes a request's record exactly once, whichever way the request ends.

use quanta::Instant;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::extract::OnResponse;
use crate::handle::UsageHandle;
use crate::record::Outcome;
use crate::recorder::stats::Counters;
use crate::recorder::Recorder;

/// Owns the right to finish one record. Passed from the response future to the body;
/// whoever holds it when the request ends finishes the record. Dropped while still
/// pending (the future or body was dropped early), it finishes the record as
/// [`Outcome::Cancelled`].
#[derive(Debug)]
pub(crate) struct RecordGuard {
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    handle: UsageHandle,
    recorder: Recorder,
    start: Instant,
    response_bytes: u64,
    /// The response head, kept here (not in the locked record) until the record is
    /// finished: one lock per request instead of two.
    head: Option<(http::StatusCode, std::time::Duration)>,
}

impl RecordGuard {
    pub(crate) fn new(handle: UsageHandle, recorder: Recorder, start: Instant) -> Self {
        RecordGuard {
            pending: Some(Pending {
                handle,
                recorder,
                start,
                response_bytes: 0,
                head: None,
            }),
        }
    }

    pub(crate) fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Moves the right to finish out of `self`, leaving it finished.
    pub(crate) fn take(&mut self) -> Self {
        RecordGuard {
            pending: self.pending.take(),
        }
    }

    /// Counts response body bytes and returns the total so far.
    pub(crate) fn add_bytes(&mut self, n: u64) -> u64 {
        match &mut self.pending {
            Some(pending) => {
                pending.response_bytes = pending.response_bytes.saturating_add(n);
                pending.response_bytes
            }
            None => 0,
        }
    }

    /// Records the response head (status and time to first byte) and runs the
    /// `OnResponse` hook, if there is one, on the record.
    pub(crate) fn on_head<R: OnResponse>(&mut self, response: &http::response::Parts, hook: &R) {
        let Some(pending) = &mut self.pending else {
            return;
        };
        pending.head = Some((response.status, pending.start.elapsed()));
        if hook.is_noop() {
            return;
        }
        let panicked = pending.handle.with_record(|record| {
            catch_unwind(AssertUnwindSafe(|| hook.on_response(response, record))).is_err()
        });
        if panicked == Some(true) {
            Counters::add(&pending.recorder.counters().extractor_panics, 1);
        }
    }

    /// Finishes the record with `outcome` and hands it to the recorder.
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let duration = pending.start.elapsed();
        let response_bytes = pending.response_bytes;
        let head = pending.head;
        let finished_now = pending.handle.finish(|measured| {
            if let Some((status, ttfb)) = head {
                measured.status = Some(status);
                measured.ttfb = Some(ttfb);
            }
            measured.outcome = outcome;
            measured.duration = duration;
            measured.response_bytes = response_bytes;
        });
        if finished_now {
            // The handle itself goes through the queue: no copy of the record here, and
            // the handle's values are applied by the worker. A refused record is counted
            // as dropped by the recorder; the request must not notice.
            let _ = pending.recorder.record_request(pending.handle);
        }
    }
}

impl Drop for RecordGuard {
    fn drop(&mut self) {
        self.finish(Outcome::Cancelled);
    }
}
