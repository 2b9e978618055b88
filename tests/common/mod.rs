//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

#[cfg(feature = "store")]
pub mod db;
#[cfg(feature = "store")]
pub mod history;
#[cfg(all(feature = "nats", feature = "store"))]
pub mod nats;
pub mod proxy;
#[cfg(all(feature = "redis", feature = "store"))]
pub mod redis;
#[cfg(feature = "store")]
pub mod reference;
#[cfg(all(feature = "postgres", feature = "sqlite"))]
pub mod replica;
#[cfg(feature = "dashboard")]
pub mod webdriver;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tower_usage::{MemorySink, Recorder, SinkError, UsageRecord, UsageSink};

/// Fails transiently until `up` is set; then stores in `memory`.
#[derive(Debug, Clone, Default)]
pub struct Outage {
    pub up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub memory: MemorySink,
}

#[async_trait]
impl UsageSink for Outage {
    async fn write_batch(&self, records: &[UsageRecord]) -> Result<(), SinkError> {
        if !self.up.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SinkError::transient("down"));
        }
        self.memory.write_batch(records).await
    }
}

/// A recorder that writes to memory with a short flush interval.
pub fn memory_recorder() -> (Recorder, MemorySink) {
    let sink = MemorySink::new();
    let recorder = Recorder::builder(sink.clone())
        .flush_interval(Duration::from_millis(5))
        .spawn();
    (recorder, sink)
}

/// Flushes the recorder and returns the one record it holds, failing if there is not
/// exactly one.
pub async fn only_record(recorder: &Recorder, sink: &MemorySink) -> UsageRecord {
    recorder.flush().await;
    let records = sink.records();
    assert_eq!(records.len(), 1, "expected one record, got {records:#?}");
    records.into_iter().next().unwrap()
}

/// One step of a [`ScriptedBody`].
#[derive(Debug, Clone)]
pub enum Step {
    Data(&'static str),
    Trailers,
    Error,
    /// Never ready again.
    Hang,
}

/// A body that yields the given steps, then ends; with knobs for the size hint and for
/// reporting `is_end_stream` early.
#[derive(Debug, Clone)]
pub struct ScriptedBody {
    pub steps: std::collections::VecDeque<Step>,
    pub exact: Option<u64>,
    /// Report `is_end_stream() == true` once only `Hang` steps (or none) remain.
    pub end_before_none: bool,
}

impl ScriptedBody {
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        ScriptedBody {
            steps: steps.into_iter().collect(),
            exact: None,
            end_before_none: false,
        }
    }

    pub fn exact(mut self, len: u64) -> Self {
        self.exact = Some(len);
        self
    }

    pub fn end_before_none(mut self) -> Self {
        self.end_before_none = true;
        self
    }
}

#[derive(Debug)]
pub struct BodyFailed;

impl std::fmt::Display for BodyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("body failed")
    }
}

impl std::error::Error for BodyFailed {}

impl Body for ScriptedBody {
    type Data = Bytes;
    type Error = BodyFailed;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyFailed>>> {
        match self.steps.front().cloned() {
            None => Poll::Ready(None),
            Some(Step::Hang) => Poll::Pending,
            Some(step) => {
                self.steps.pop_front();
                Poll::Ready(Some(match step {
                    Step::Data(s) => Ok(Frame::data(Bytes::from_static(s.as_bytes()))),
                    Step::Trailers => Ok(Frame::trailers(http::HeaderMap::new())),
                    Step::Error => Err(BodyFailed),
                    Step::Hang => unreachable!(),
                }))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.end_before_none && self.steps.iter().all(|s| matches!(s, Step::Hang))
    }

    fn size_hint(&self) -> SizeHint {
        self.exact
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// What polling a body for one frame gives.
pub type Polled<B> = Poll<Option<Result<Frame<<B as Body>::Data>, <B as Body>::Error>>>;

/// Polls a body's next frame once, with a no-op waker.
pub fn poll_once<B: Body + Unpin>(body: &mut B) -> Polled<B> {
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    Pin::new(body).poll_frame(&mut cx)
}

/// An infallible service answering every request with `response()`.
pub fn respond_with<F, B>(
    response: F,
) -> impl tower::Service<
    http::Request<()>,
    Response = http::Response<B>,
    Error = Infallible,
    Future = std::future::Ready<Result<http::Response<B>, Infallible>>,
> + Clone
where
    F: Fn() -> http::Response<B> + Clone,
{
    tower::service_fn(move |_req: http::Request<()>| std::future::ready(Ok(response())))
}

/// A sink whose writes never return.
#[derive(Debug)]
pub struct Hangs;

#[async_trait]
impl UsageSink for Hangs {
    async fn write_batch(&self, _: &[UsageRecord]) -> Result<(), SinkError> {
        std::future::pending().await
    }
}
