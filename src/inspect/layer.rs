//! [`InspectLayer`], its service, future and body, split as tower-http splits its
//! middlewares.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::scanner::Scanner;
use super::{body_kind, BodyKind};
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
        Poll::Ready(Ok(response.map(|body| InspectBody::new(body, handle))))
    }
}

/// What a body being inspected needs: the scanner and where its findings go.
#[derive(Debug)]
struct Watch {
    scanner: Box<Scanner>,
    handle: UsageHandle,
    sent: u64,
    exact_len: Option<u64>,
}

impl Watch {
    /// Tells the handle what was found, once.
    fn report(self) {
        let seen = &self.scanner.seen;
        let tokens = seen.has_usage().then(|| seen.usage_tokens());
        if tokens.is_some() || seen.model.is_some() {
            self.handle.fill_from_response(tokens, seen.model.clone());
        }
    }
}

pin_project! {
    /// The response body of [`Inspect`]: the inner body, unchanged, scanned as it goes.
    ///
    /// Reports to the request's [`UsageHandle`] when the body ends, fails, or is
    /// dropped early, always before the usage layer around it finishes the record.
    pub struct InspectBody<B> {
        #[pin]
        inner: B,
        watch: Option<Watch>,
    }

    impl<B> PinnedDrop for InspectBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(watch) = this.project().watch.take() {
                watch.report();
            }
        }
    }
}

impl<B: Body> InspectBody<B> {
    fn new(inner: B, handle: Option<UsageHandle>) -> Self {
        let exact_len = inner.size_hint().exact();
        let watch = handle.map(|handle| Watch {
            scanner: Box::default(),
            handle,
            sent: 0,
            exact_len,
        });
        InspectBody { inner, watch }
    }
}

impl<B> InspectBody<B> {
    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for InspectBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InspectBody")
            .field("inner", &self.inner)
            .field("inspecting", &self.watch.is_some())
            .finish()
    }
}

/// Feeds every contiguous piece of `data` to the scanner.
fn scan(scanner: &mut Scanner, data: &impl Buf) {
    super::for_each_chunk(data, |chunk| scanner.feed(chunk));
}

impl<B: Body> Body for InspectBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let Some(watch) = this.watch.as_mut() else {
            return Poll::Ready(frame);
        };
        // The same ends as the usage layer's body: report before it finishes the record.
        let ended = match &frame {
            None | Some(Err(_)) => true,
            Some(Ok(frame)) => match frame.data_ref() {
                Some(data) => {
                    scan(&mut watch.scanner, data);
                    watch.sent = watch.sent.saturating_add(data.remaining() as u64);
                    watch.exact_len.is_some_and(|len| watch.sent >= len)
                        || this.inner.is_end_stream()
                }
                None => true,
            },
        };
        if ended {
            if let Some(watch) = this.watch.take() {
                watch.report();
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
