use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::guard::RecordGuard;
use crate::record::Outcome;

pin_project! {
    /// The response body of [`Usage`](super::Usage): the inner body, unchanged, with its
    /// data bytes counted and its end noticed.
    ///
    /// Dropped before its end (the client went away), it finishes the record as
    /// [`Cancelled`](Outcome::Cancelled) with the bytes sent so far.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        guard: RecordGuard,
        // The outcome if the body ends normally, from the status.
        complete: Outcome,
        // The body's exact length when it declared one: reaching it is the end.
        exact_len: Option<u64>,
    }
}

impl<B: Body> ResponseBody<B> {
    pub(crate) fn new(inner: B, guard: RecordGuard, complete: Outcome) -> Self {
        let exact_len = inner.size_hint().exact();
        ResponseBody {
            inner,
            guard,
            complete,
            exact_len,
        }
    }
}

impl<B> ResponseBody<B> {
    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("metering", &self.guard.is_pending())
            .finish()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if !this.guard.is_pending() {
            return Poll::Ready(frame);
        }
        match &frame {
            None => this.guard.finish(*this.complete),
            Some(Err(_)) => this.guard.finish(Outcome::BodyError),
            Some(Ok(frame)) => {
                let ended = match frame.data_ref() {
                    Some(data) => {
                        let sent = this.guard.add_bytes(data.remaining() as u64);
                        this.exact_len.is_some_and(|len| sent >= len)
                    }
                    None => frame.is_trailers(),
                };
                if ended || this.inner.is_end_stream() {
                    this.guard.finish(*this.complete);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
