//! [`Mcp`], the service [`McpLayer`](super::McpLayer) makes.

use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower::Service;

use super::future::McpFuture;
use super::request::{McpRequestBody, McpRequestRead};
use super::response::McpResponseBody;
use crate::body::Observed;
use crate::inspect::body_kind;
use crate::UsageHandle;

/// The service made by [`McpLayer`](super::McpLayer).
#[derive(Debug, Clone)]
pub struct Mcp<S> {
    inner: S,
}

impl<S> Mcp<S> {
    pub(super) fn new(inner: S) -> Self {
        Mcp { inner }
    }
}

impl<S, B, ResBody> Service<Request<B>> for Mcp<S>
where
    S: Service<Request<McpRequestBody<B>>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<McpResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = McpFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let handle = request.extensions().get::<UsageHandle>().cloned();
        let read = McpRequestRead::new(handle.clone(), body_kind(request.headers()));
        let request = request.map(|inner| Observed::new(inner, read));
        McpFuture::new(self.inner.call(request), handle)
    }
}
