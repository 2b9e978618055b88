//! [`InspectLayer`], its service, future and body, split as tower-http splits its
//! middlewares.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::scanner::Scanner;
use super::{body_kind, BodyKind};
use crate::body::{Observed, Observer};
use crate::UsageHandle;

/// Reads token usage and the model from response bodies; see the [module docs](super).
#[derive(Debug, Clone, Copy, Default)]
pub struct InspectLayer {
    _private: (),
}

impl InspectLayer {
    /// The inspector, for JSON and server-sent-event responses.
    pub fn new() -> Self {
        InspectLayer::default()
    }
}

impl<S> Layer<S> for InspectLayer {
    type Service = Inspect<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Inspect { inner }
    }
}

/// The service made by [`InspectLayer`].
#[derive(Debug, Clone)]
pub struct Inspect<S> {
    inner: S,
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
        ResponseFuture {
            inner: self.inner.call(request),
            handle,
        }
    }
}

pin_project! {
    /// The response future of [`Inspect`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        handle: Option<UsageHandle>,
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

/// What the inspector's body does with the frames it passes: scans them, and tells
/// the handle what it found, once, when the body ends, fails or is dropped (before the
/// usage layer around it finishes the record). `None` when there is nothing to inspect.
#[derive(Debug)]
pub struct Inspection(Option<Watch>);

#[derive(Debug)]
struct Watch {
    scanner: Box<Scanner>,
    handle: UsageHandle,
    sent: u64,
    exact_len: Option<u64>,
}

/// The response body of [`Inspect`]: the inner body, unchanged, scanned as it goes.
///
/// Reports to the request's [`UsageHandle`] when the body ends, fails, or is dropped
/// early, always before the usage layer around it finishes the record.
pub type InspectBody<B> = Observed<B, Inspection>;

fn inspect_body<B: Body>(inner: B, handle: Option<UsageHandle>) -> InspectBody<B> {
    let exact_len = inner.size_hint().exact();
    let watch = handle.map(|handle| Watch {
        scanner: Box::default(),
        handle,
        sent: 0,
        exact_len,
    });
    Observed::new(inner, Inspection(watch))
}

impl Observer for Inspection {
    fn watching(&self) -> bool {
        self.0.is_some()
    }

    fn data<D: Buf>(&mut self, data: &D) -> bool {
        let Some(watch) = self.0.as_mut() else {
            return false;
        };
        super::for_each_chunk(data, |chunk| watch.scanner.feed(chunk));
        watch.sent = watch.sent.saturating_add(data.remaining() as u64);
        // The same end as the usage layer's body: report before it finishes the record.
        watch.exact_len.is_some_and(|len| watch.sent >= len)
    }

    /// Tells the handle what was found, once.
    fn end(&mut self) {
        if let Some(watch) = self.0.take() {
            let seen = &watch.scanner.seen;
            let tokens = seen.has_usage().then(|| seen.usage_tokens());
            if tokens.is_some() || seen.model.is_some() {
                watch.handle.fill_from_response(tokens, seen.model.clone());
            }
        }
    }
}
