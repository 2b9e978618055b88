//! [`McpFuture`], the response future of [`Mcp`](super::Mcp).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use super::response::{McpResponseBody, McpResponseRead};
use crate::body::Observed;
use crate::inspect::body_kind;
use crate::UsageHandle;

pin_project! {
    /// The response future of [`Mcp`](super::Mcp).
    pub struct McpFuture<F> {
        #[pin]
        inner: F,
        handle: Option<UsageHandle>,
    }
}

impl<F> McpFuture<F> {
    pub(super) fn new(inner: F, handle: Option<UsageHandle>) -> Self {
        McpFuture { inner, handle }
    }
}

impl<F> std::fmt::Debug for McpFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for McpFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<McpResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let read = McpResponseRead::new(this.handle.take(), body_kind(response.headers()));
        Poll::Ready(Ok(response.map(|inner| Observed::new(inner, read))))
    }
}
