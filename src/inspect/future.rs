//! [`ResponseFuture`], the response future of [`Inspect`](super::Inspect).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use super::body::{inspect_body, InspectBody};
use super::{body_kind, BodyKind};
use crate::UsageHandle;

pin_project! {
    /// The response future of [`Inspect`](super::Inspect).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        handle: Option<UsageHandle>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, handle: Option<UsageHandle>) -> Self {
        ResponseFuture { inner, handle }
    }
}

impl<F: std::fmt::Debug> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<InspectBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let handle = this
            .handle
            .take()
            .filter(|_| body_kind(response.headers()) != BodyKind::Other);
        Poll::Ready(Ok(response.map(|body| inspect_body(body, handle))))
    }
}
