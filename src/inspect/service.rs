//! [`Inspect`], the service [`InspectLayer`](super::InspectLayer) makes.

use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower::Service;

use super::body::InspectBody;
use super::future::ResponseFuture;
use crate::UsageHandle;

/// The service made by [`InspectLayer`](super::InspectLayer).
#[derive(Debug, Clone)]
pub struct Inspect<S> {
    inner: S,
}

impl<S> Inspect<S> {
    pub(super) fn new(inner: S) -> Self {
        Inspect { inner }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Inspect<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<InspectBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let handle = request.extensions().get::<UsageHandle>().cloned();
        ResponseFuture::new(self.inner.call(request), handle)
    }
}
