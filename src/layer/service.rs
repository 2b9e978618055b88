use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use chrono::Utc;
use http::{request::Parts, Request, Response};
use tower::Service;

use super::future::ResponseFuture;
use super::guard::RecordGuard;
use super::layer::Extractors;
use crate::client::ClientPlatform;
use crate::extract::{Extract, OnResponse};
use crate::handle::UsageHandle;
use crate::record::UsageRecord;
use crate::recorder::stats::Counters;
use crate::recorder::Recorder;

/// What every service made by one [`UsageLayer::layer`](crate::UsageLayer) call shares.
#[derive(Debug)]
pub(crate) struct LayerState<E, R> {
    pub(crate) recorder: Recorder,
    pub(crate) extractors: E,
    pub(crate) on_response: R,
    pub(crate) max_value_len: usize,
}

impl<E, R> LayerState<E, R> {
    /// Runs one extractor; a panic inside it is counted and yields nothing.
    fn run<X: Extract>(&self, extractor: &X, request: &Parts) -> Option<String> {
        match catch_unwind(AssertUnwindSafe(|| extractor.extract(request))) {
            Ok(value) => value.and_then(|value| clean(value, self.max_value_len)),
            Err(_) => {
                Counters::add(&self.recorder.counters().extractor_panics, 1);
                None
            }
        }
    }
}

/// Trims `value`, treats empty as missing, and cuts it to `max` bytes on a char boundary.
pub(crate) fn clean(mut value: String, max: usize) -> Option<String> {
    let trimmed = value.trim();
    if trimmed.len() != value.len() {
        value = trimmed.to_owned();
    }
    if value.len() > max {
        let mut end = max;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
    (!value.is_empty()).then_some(value)
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
        let started_at = Utc::now();
        let state = &*self.state;
        let (mut parts, body) = request.into_parts();

        let mut record = UsageRecord::starting_at(started_at);
        record.route = clean(route(&parts).to_owned(), state.max_value_len);
        record.request_bytes = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        record.client = ClientPlatform::from_headers(&parts.headers);
        let x = &state.extractors;
        record.user = state.run(&x.user, &parts);
        record.service = state.run(&x.service, &parts);
        record.model = state.run(&x.model, &parts);
        record.provider = state.run(&x.provider, &parts);
        record.country = state.run(&x.country, &parts);
        let is_head = parts.method == http::Method::HEAD;
        record.method = Some(parts.method.clone());

        let handle = UsageHandle::attached(record);
        parts.extensions.insert(handle.clone());
        let guard = RecordGuard::new(handle, state.recorder.clone(), start);
        let inner = self.inner.call(Request::from_parts(parts, body));
        ResponseFuture::new(inner, guard, state.on_response.clone(), is_head)
    }
}

/// axum's route template when the router matched one, else the path.
fn route(request: &Parts) -> &str {
    #[cfg(feature = "axum")]
    if let Some(matched) = request.extensions.get::<axum::extract::MatchedPath>() {
        return matched.as_str();
    }
    request.uri.path()
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn clean_trims_and_cuts_on_char_boundaries() {
        assert_eq!(clean("  a  ".into(), 10).as_deref(), Some("a"));
        assert_eq!(clean("   ".into(), 10), None);
        assert_eq!(clean("ééé".into(), 3).as_deref(), Some("é"));
        assert_eq!(clean("abc".into(), 0), None);
    }
}
