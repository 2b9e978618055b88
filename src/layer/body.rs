//! The usage layer's response body: an [`Observed`] body whose observer counts the
//! data bytes and finishes the record at the body's end.

use bytes::Buf;

use super::guard::RecordGuard;
use crate::body::{Observed, Observer};
use crate::record::Outcome;

/// The response body of [`Usage`](super::Usage): the inner body, unchanged, with its
/// data bytes counted and its end noticed.
///
/// Dropped before its end (the client went away), it finishes the record as
/// [`Cancelled`](Outcome::Cancelled) with the bytes sent so far.
pub type ResponseBody<B> = Observed<B, Metering>;

/// What the usage layer's [`ResponseBody`] does with the frames it passes: counts their
/// bytes and finishes the record when the body ends.
#[derive(Debug)]
pub struct Metering {
    guard: RecordGuard,
    // The outcome if the body ends normally, from the status.
    complete: Outcome,
    // The body's exact length when it declared one: reaching it is the end.
    exact_len: Option<u64>,
}

/// `inner` metered by `guard`, ending as `complete` unless it fails or is dropped.
pub(crate) fn response_body<B: http_body::Body>(
    inner: B,
    guard: RecordGuard,
    complete: Outcome,
) -> ResponseBody<B> {
    let exact_len = inner.size_hint().exact();
    let metering = Metering {
        guard,
        complete,
        exact_len,
    };
    Observed::new(inner, metering)
}

impl Observer for Metering {
    fn watching(&self) -> bool {
        self.guard.is_pending()
    }

    fn data<D: Buf>(&mut self, data: &D) -> bool {
        let sent = self.guard.add_bytes(data.remaining() as u64);
        self.exact_len.is_some_and(|len| sent >= len)
    }

    fn end(&mut self) {
        self.guard.finish(self.complete);
    }

    fn error(&mut self) {
        self.guard.finish(Outcome::BodyError);
    }

    /// The guard's own drop finishes the record as cancelled.
    fn dropped(&mut self) {}
}
