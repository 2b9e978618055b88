use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;

use super::body::ResponseBody;
use super::guard::RecordGuard;
use crate::extract::OnResponse;
use crate::record::Outcome;

pin_project! {
    /// The response future of [`Usage`](super::Usage).
    ///
    /// Dropped before the inner service answers (the client went away), it finishes the
    /// record as [`Cancelled`](Outcome::Cancelled) with no status.
    pub struct ResponseFuture<F, R> {
        #[pin]
        inner: F,
        guard: RecordGuard,
        on_response: R,
        is_head: bool,
    }
}

impl<F, R> ResponseFuture<F, R> {
    pub(crate) fn new(inner: F, guard: RecordGuard, on_response: R, is_head: bool) -> Self {
        ResponseFuture {
            inner,
            guard,
            on_response,
            is_head,
        }
    }
}

impl<F: std::fmt::Debug, R> std::fmt::Debug for ResponseFuture<F, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// Responses to which a server sends no body, whatever the body value holds.
fn has_no_body(status: StatusCode, is_head: bool) -> bool {
    is_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

impl<F, B, E, R> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    R: OnResponse,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                this.guard.finish(Outcome::ServiceError);
                return Poll::Ready(Err(error));
            }
        };
        let (parts, body) = response.into_parts();
        this.guard.on_head(&parts, &*this.on_response);
        let complete = Outcome::from_status(parts.status);
        let mut guard = this.guard.take();
        if has_no_body(parts.status, *this.is_head) || body.is_end_stream() {
            guard.finish(complete);
        }
        let body = super::body::response_body(body, guard, complete);
        Poll::Ready(Ok(Response::from_parts(parts, body)))
    }
}
