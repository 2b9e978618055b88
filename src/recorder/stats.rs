use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters shared by the recorder's front end, its worker and the layer.
///
/// Each sits on a cache line of its own: request threads bump `recorded` on every
/// request while the worker bumps the others, and sharing a line would bounce it between
/// cores on every request.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) recorded: Padded,
    pub(crate) written: Padded,
    pub(crate) retried: Padded,
    pub(crate) failed: Padded,
    pub(crate) dropped: Padded,
    pub(crate) extractor_panics: Padded,
    pub(crate) clamped: Padded,
    /// Records the worker has taken off the queue (counted a handful at a time).
    pub(crate) taken: Padded,
    /// Failed attempts at the batch being written now, in a row; 0 once a write ends.
    pub(crate) failing: Padded,
    /// Records of this process that reached an end: written or given up straight from
    /// the queue, or kept in the spill. What `flush` waits on.
    pub(crate) settled: Padded,
    pub(crate) spilled: Padded,
    pub(crate) replayed: Padded,
    pub(crate) recovered: Padded,
    pub(crate) spill_refused: Padded,
    pub(crate) spill_damaged: Padded,
    /// A gauge, set by the worker after each change to the spill.
    pub(crate) spill_bytes: Padded,
}

/// An atomic counter alone on its cache line (128 bytes: x86 prefetches lines in pairs).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded(AtomicU64);

impl std::ops::Deref for Padded {
    type Target = AtomicU64;

    fn deref(&self) -> &AtomicU64 {
        &self.0
    }
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RecorderStats {
        // Read the terminal counters before `recorded`, so `queued` never goes negative
        // while records are moving.
        let written = self.written.load(Relaxed);
        let failed = self.failed.load(Relaxed);
        let recovered = self.recovered.load(Relaxed);
        let recorded = self.recorded.load(Relaxed);
        RecorderStats {
            recorded,
            written,
            retried: self.retried.load(Relaxed),
            failed,
            dropped: self.dropped.load(Relaxed),
            queued: (recorded + recovered)
                .saturating_sub(written)
                .saturating_sub(failed),
            extractor_panics: self.extractor_panics.load(Relaxed),
            clamped: self.clamped.load(Relaxed),
            spilled: self.spilled.load(Relaxed),
            replayed: self.replayed.load(Relaxed),
            recovered,
            spill_refused: self.spill_refused.load(Relaxed),
            spill_damaged: self.spill_damaged.load(Relaxed),
            spill_bytes: self.spill_bytes.load(Relaxed),
        }
    }
}

/// What a [`Recorder`](crate::Recorder) has done so far; see
/// [`Recorder::stats`](crate::Recorder::stats).
///
/// Every accepted record ends as written or failed:
/// `recorded + recovered == written + failed + queued`, where `queued` counts the records
/// waiting in the queue, in the worker and in the [spill](crate::recorder::Spill).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RecorderStats {
    /// Records accepted into the queue.
    pub recorded: u64,
    /// Records the sink confirmed.
    pub written: u64,
    /// Batch writes that failed transiently and were tried again.
    pub retried: u64,
    /// Accepted records that were given up: the sink refused them for good, panicked, or
    /// was still failing when the retry limit or the shutdown deadline was reached.
    pub failed: u64,
    /// Records refused at the door: the queue was full (with
    /// [`Overflow::Drop`](crate::recorder::Overflow::Drop)) or the recorder shut down.
    pub dropped: u64,
    /// Records accepted but not yet written or failed.
    pub queued: u64,
    /// Extractor or response-hook calls that panicked (the request was served anyway).
    pub extractor_panics: u64,
    /// Records with an amount above
    /// [`UsageRecord::MAX_AMOUNT`](crate::UsageRecord::MAX_AMOUNT), kept with that amount
    /// clamped.
    pub clamped: u64,
    /// Records moved to the [spill](crate::recorder::Spill) while the sink failed.
    pub spilled: u64,
    /// Records written from the spill (those `recovered` included); also in `written`.
    pub replayed: u64,
    /// Records found in the spill at start, left there by an earlier process.
    pub recovered: u64,
    /// Records the spill could not take (it was full, or the disk failed); also in
    /// `failed`.
    pub spill_refused: u64,
    /// Damaged spill segments found (a torn or corrupt end, from a crash or a bad disk):
    /// what followed the damage in that segment could not be read.
    pub spill_damaged: u64,
    /// Bytes the spill holds on disk now.
    pub spill_bytes: u64,
}
