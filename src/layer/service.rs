use quanta::Instant;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{request::Parts, Request, Response};
use tower::Service;

use super::extractors::Extractors;
use super::future::ResponseFuture;
use super::guard::RecordGuard;
use crate::extract::{Extract, OnResponse, Value};
use crate::handle::UsageHandle;
use crate::inflight::{Extracted, Measured, Route};
use crate::recorder::stats::Counters;
use crate::recorder::Recorder;

/// What every service made by one [`UsageLayer`](crate::UsageLayer) (and its clones)
/// shares.
#[derive(Debug)]
pub(crate) struct LayerState<E, R> {
    pub(crate) recorder: Recorder,
    pub(crate) extractors: E,
    pub(crate) on_response: R,
    pub(crate) max_value_len: usize,
}

impl<E, R> LayerState<E, R> {
    /// Runs one extractor; a panic inside it is counted and yields nothing.
    fn run<X: Extract>(&self, extractor: &X, request: &Parts) -> Option<Value> {
        match catch_unwind(AssertUnwindSafe(|| extractor.extract(request))) {
            Ok(value) => value,
            Err(_) => {
                Counters::add(&self.recorder.counters().extractor_panics, 1);
                None
            }
        }
    }
}

/// The service made by [`UsageLayer`](crate::UsageLayer): meters each request of `S`.
#[derive(Debug)]
pub struct Usage<S, E = Extractors, R = ()> {
    inner: S,
    state: Arc<LayerState<E, R>>,
}

impl<S: Clone, E, R> Clone for Usage<S, E, R> {
    fn clone(&self) -> Self {
        Usage {
            inner: self.inner.clone(),
            state: Arc::clone(&self.state),
        }
    }
}

impl<S, E, R> Usage<S, E, R> {
    pub(crate) fn new(inner: S, state: Arc<LayerState<E, R>>) -> Self {
        Usage { inner, state }
    }

    #[cfg(test)]
    pub(crate) fn state(&self) -> &Arc<LayerState<E, R>> {
        &self.state
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, U, Sv, M, P, C, R, ReqBody, ResBody> Service<Request<ReqBody>>
    for Usage<S, Extractors<U, Sv, M, P, C>, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
    U: Extract,
    Sv: Extract,
    M: Extract,
    P: Extract,
    C: Extract,
    R: OnResponse + Clone,
{
    type Response = Response<super::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let state = &*self.state;
        let (mut parts, body) = request.into_parts();

        // The start time and id are filled in by the worker, from `start`.
        let request_bytes = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let is_head = parts.method == http::Method::HEAD;
        let measured = Measured::arrived(parts.method.clone(), request_bytes);
        // Only cheap clones here; the worker turns these into text (see `Extracted`).
        let x = &state.extractors;
        let extracted = Extracted {
            user: state.run(&x.user, &parts),
            service: state.run(&x.service, &parts),
            model: state.run(&x.model, &parts),
            provider: state.run(&x.provider, &parts),
            country: state.run(&x.country, &parts),
            route: Route::of(&parts),
            user_agent: parts
                .headers
                .get(http::header::USER_AGENT)
                .map(Value::header),
            max_value_len: state.max_value_len,
            start: Some(start),
        };

        let handle = UsageHandle::attached_in(state.recorder.spare_slot(), measured, extracted);
        parts.extensions.insert(handle.clone());
        let guard = RecordGuard::new(handle, state.recorder.clone(), start);
        let inner = self.inner.call(Request::from_parts(parts, body));
        ResponseFuture::new(inner, guard, state.on_response.clone(), is_head)
    }
}
