//! [`RequestModelLayer`]: the model a JSON request body asks for, read as the body
//! streams to the service.

use std::task::{Context, Poll};

use bytes::Buf;
use http::Request;
use tower::{Layer, Service};

use super::scanner::Scanner;
use super::{body_kind, BodyKind};
use crate::body::{Observed, Observer};
use crate::UsageHandle;

/// How much of a request body is searched by default.
const DEFAULT_LIMIT: usize = 64 * 1024;

/// Reads `"model"` from JSON request bodies into the record's `requested_model`.
///
/// Goes inside [`UsageLayer`](crate::UsageLayer), like [`InspectLayer`](super::InspectLayer).
/// Nothing is buffered: the body's frames are searched as the service reads them, up to a
/// limit (64 KiB unless set), and passed on unchanged, so the service sees the same
/// bytes. A body the service never reads gives no model. A record whose response names
/// no model keeps the requested one as its `model` too.
///
/// ```
/// use axum::{routing::post, Router};
/// use tower::ServiceBuilder;
/// use tower_usage::inspect::{InspectLayer, RequestModelLayer};
/// use tower_usage::{MemorySink, Recorder, UsageLayer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let recorder = Recorder::builder(MemorySink::new()).spawn();
/// let app: Router = Router::new()
///     .route("/v1/chat/completions", post(|body: String| async move { body }))
///     .layer(
///         ServiceBuilder::new()
///             .layer(UsageLayer::new(recorder))
///             .layer(RequestModelLayer::new().limit(16 * 1024))
///             .layer(InspectLayer::new()),
///     );
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RequestModelLayer {
    limit: usize,
}

impl Default for RequestModelLayer {
    fn default() -> Self {
        RequestModelLayer {
            limit: DEFAULT_LIMIT,
        }
    }
}

impl RequestModelLayer {
    /// The layer, searching the first 64 KiB of each JSON request body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Searches at most the first `bytes` bytes of a body.
    pub fn limit(mut self, bytes: usize) -> Self {
        self.limit = bytes;
        self
    }
}

impl<S> Layer<S> for RequestModelLayer {
    type Service = RequestModel<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestModel {
            inner,
            limit: self.limit,
        }
    }
}

/// The service made by [`RequestModelLayer`].
#[derive(Debug, Clone)]
pub struct RequestModel<S> {
    inner: S,
    limit: usize,
}

impl<S, B> Service<Request<B>> for RequestModel<S>
where
    S: Service<Request<RequestBody<B>>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let is_json = body_kind(request.headers()) == BodyKind::Json;
        let watch = match request.extensions().get::<UsageHandle>() {
            Some(handle) if is_json && self.limit > 0 => Some(Box::new(Watch {
                scanner: Scanner::default(),
                handle: handle.clone(),
                left: self.limit,
            })),
            _ => None,
        };
        self.inner
            .call(request.map(|inner| Observed::new(inner, ModelSearch(watch))))
    }
}

#[derive(Debug)]
struct Watch {
    scanner: Scanner,
    handle: UsageHandle,
    left: usize,
}

/// What [`RequestBody`] does with the frames it passes: searches the first bytes for
/// the model, and tells the handle once it is found or the search ends. `None` when
/// there is nothing to search.
#[derive(Debug)]
pub struct ModelSearch(Option<Box<Watch>>);

/// The request body of [`RequestModel`]: the inner body, unchanged, searched for the
/// model as it is read.
pub type RequestBody<B> = Observed<B, ModelSearch>;

impl Observer for ModelSearch {
    fn watching(&self) -> bool {
        self.0.is_some()
    }

    fn data<D: Buf>(&mut self, data: &D) -> bool {
        let Some(watch) = self.0.as_mut() else {
            return false;
        };
        super::for_each_chunk(data, |chunk| {
            let take = chunk.len().min(watch.left);
            watch.scanner.feed(&chunk[..take]);
            watch.left -= take;
        });
        watch.left == 0 || watch.scanner.seen.model.is_some()
    }

    fn end(&mut self) {
        if let Some(watch) = self.0.take() {
            if let Some(model) = watch.scanner.seen.model {
                watch.handle.set_requested_model(model);
            }
        }
    }
}
