//! What the usage layer adds to one request, against a bare service and against
//! tower-http's `TraceLayer`. Each case polls the response body to its end.
//!
//! Run with `cargo bench --bench overhead`. After criterion's timings it prints the heap
//! allocations per request of each case, counted on the calling thread.
//!
//! The `inspect` group measures the response inspector: a 64 KiB server-sent-event
//! stream of 512 small events (usage in the last) and a 1 MiB JSON body in one frame,
//! each under the usage layer with and without `InspectLayer`; then the 64 KiB stream as
//! a whole request through a hyper server and client over loopback
//! (`inspect_loopback`).
#![allow(unsafe_code, missing_docs)] // the counting allocator below

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use bytes::Bytes;
use criterion::{criterion_group, BatchSize, Criterion};
use http::{Request, Response};
use http_body::Body;
use http_body_util::{Empty, Full};

type Req = Request<Empty<Bytes>>;
type Res = Response<Full<Bytes>>;
type Answer = std::future::Ready<Result<Res, Infallible>>;
use tower::{Layer, Service};
use tower_usage::inspect::InspectLayer;
use tower_usage::{extract, Recorder, SinkError, UsageLayer, UsageRecord, UsageSink};

/// Counts allocations made by the current thread.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// A sink that throws records away, so the worker drains as fast as it can.
#[derive(Debug)]
struct Discard;

#[async_trait]
impl UsageSink for Discard {
    async fn write_batch(&self, _: &[UsageRecord]) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A request as hyper hands it to a service: header values are slices of the buffer the
/// head was read into, so cloning one only bumps a reference count.
fn request() -> Req {
    const HEAD: &[u8] = b"user-123456chatgpt-4o-miniOpenAI/Python 1.54.0";
    let buffer = Bytes::copy_from_slice(HEAD);
    let value = |range: std::ops::Range<usize>| {
        http::HeaderValue::from_maybe_shared(buffer.slice(range)).expect("valid header value")
    };
    Request::post("/v1/chat/completions")
        .header("x-user-id", value(0..11))
        .header("x-service", value(11..15))
        .header("x-model", value(15..26))
        .header("user-agent", value(26..HEAD.len()))
        .body(Empty::new())
        .unwrap()
}

fn bare() -> impl Service<Req, Response = Res, Error = Infallible, Future = Answer> + Clone {
    tower::service_fn(|_req: Req| {
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(
            b"{\"ok\":true}",
        )))))
    })
}

/// An axum router with one route answering a short JSON body.
fn router() -> axum::Router {
    axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async { "{\"ok\":true}" }),
    )
}

/// Calls the service once and polls the response body to its end. Every future here is
/// ready at once, so a no-op waker is enough and no executor time is measured.
fn run<S, B>(svc: &mut S, req: Req) -> u64
where
    S: Service<Req, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body + Unpin,
{
    let mut cx = Context::from_waker(Waker::noop());
    let future = pin!(svc.call(req));
    let Poll::Ready(response) = future.poll(&mut cx) else {
        unreachable!("the benchmarked services answer at once")
    };
    let mut body = response.unwrap().into_body();
    let mut bytes = 0;
    while let Poll::Ready(Some(frame)) = std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
        if let Ok(frame) = frame {
            bytes += frame
                .data_ref()
                .map_or(0, |d| bytes::Buf::remaining(d) as u64);
        }
    }
    bytes
}

fn allocations_per_request<S, B>(svc: &mut S) -> f64
where
    S: Service<Req, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body + Unpin,
{
    const N: u64 = 10_000;
    let requests: Vec<_> = (0..N).map(|_| request()).collect();
    let before = ALLOCATIONS.with(Cell::get);
    for req in requests {
        std::hint::black_box(run(svc, req));
    }
    (ALLOCATIONS.with(Cell::get) - before) as f64 / N as f64
}

/// Requests are made in small batches just before they are served, so that each
/// case finds its request in the cache as a server finds the one it has just parsed.
const BATCH: BatchSize = BatchSize::NumIterations(64);

/// A runtime, and a recorder whose worker drains on its own thread, as in a server.
fn runtime_and_recorder() -> (tokio::runtime::Runtime, Recorder) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let recorder = runtime.block_on(async {
        Recorder::builder(Discard)
            .queue_capacity(1 << 16)
            .batch_size(512)
            .spawn()
    });
    (runtime, recorder)
}

/// What the issue that set the overhead target called the floor of any metering layer:
/// two clock readings, one push into a tokio bounded channel drained by another task,
/// and a body that counts its bytes. No extractor, no handle, no record: measured here
/// so that the usage layer's figure can be read against what this machine charges for
/// the bare mechanics.
mod floor {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body::{Body, Frame};
    use tokio::sync::mpsc;
    use tower::Service;

    /// What the floor layer sends per request.
    pub(super) struct Sample {
        pub(super) duration: Duration,
        pub(super) bytes: u64,
    }

    #[derive(Clone)]
    pub(super) struct Floor<S> {
        pub(super) inner: S,
        pub(super) tx: mpsc::Sender<Sample>,
    }

    pub(super) struct Counted<B> {
        inner: B,
        start: Instant,
        bytes: u64,
        tx: Option<mpsc::Sender<Sample>>,
    }

    impl<S, B, Q> Service<Request<Q>> for Floor<S>
    where
        S: Service<
            Request<Q>,
            Response = Response<B>,
            Error = Infallible,
            Future = std::future::Ready<Result<Response<B>, Infallible>>,
        >,
    {
        type Response = Response<Counted<B>>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, request: Request<Q>) -> Self::Future {
            let start = Instant::now();
            let Ok(response) = self.inner.call(request).into_inner();
            let tx = Some(self.tx.clone());
            std::future::ready(Ok(response.map(|inner| Counted {
                inner,
                start,
                bytes: 0,
                tx,
            })))
        }
    }

    impl<B: Body<Data = Bytes> + Unpin> Body for Counted<B> {
        type Data = Bytes;
        type Error = B::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
            let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
            if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                self.bytes += data.map_or(0, |d| d.len() as u64);
            }
            if frame.is_none() || self.inner.is_end_stream() {
                if let Some(tx) = self.tx.take() {
                    let _ = tx.try_send(Sample {
                        duration: self.start.elapsed(),
                        bytes: self.bytes,
                    });
                }
            }
            Poll::Ready(frame)
        }
    }
}

fn overhead(c: &mut Criterion) {
    let (runtime, recorder) = runtime_and_recorder();

    let mut group = c.benchmark_group("overhead");
    let mut svc = bare();
    group.bench_function("bare", |b| {
        b.iter_batched(request, |req| run(&mut svc, req), BATCH)
    });

    let layer = UsageLayer::new(recorder.clone())
        .user(extract::header("x-user-id"))
        .service(extract::header("x-service"))
        .model(extract::header("x-model"));
    let mut metered = layer.layer(bare());
    group.bench_function("usage_layer", |b| {
        b.iter_batched(request, |req| run(&mut metered, req), BATCH)
    });

    let (tx, mut rx) = tokio::sync::mpsc::channel::<floor::Sample>(1 << 16);
    let drained = runtime.spawn(async move {
        let mut n = 0u64;
        while let Some(sample) = rx.recv().await {
            n += std::hint::black_box(sample.bytes + sample.duration.as_nanos() as u64).min(1);
        }
        n
    });
    let mut floor = floor::Floor { inner: bare(), tx };
    group.bench_function("floor", |b| {
        b.iter_batched(request, |req| run(&mut floor, req), BATCH)
    });

    let mut traced = tower_http::trace::TraceLayer::new_for_http().layer(bare());
    group.bench_function("trace_layer", |b| {
        b.iter_batched(request, |req| run(&mut traced, req), BATCH)
    });
    group.finish();

    let stats = recorder.stats();
    println!(
        "recorder: {} recorded, {} written, {} dropped (dropped records would flatter the layer)",
        stats.recorded, stats.written, stats.dropped
    );
    println!("allocations per request (calling thread):");
    println!("  bare         {:.2}", allocations_per_request(&mut bare()));
    println!(
        "  usage_layer  {:.2}",
        allocations_per_request(&mut metered)
    );
    println!("  floor        {:.2}", allocations_per_request(&mut floor));
    println!("  trace_layer  {:.2}", allocations_per_request(&mut traced));
    // Under an axum `Router`, which makes the request's extensions map and boxes every
    // layered route's future and response body: what the layer adds there, set on the
    // routes (`Router::layer`, which sees the matched route) or around the whole router,
    // against tower-http's `TraceLayer` set the same ways.
    let layer = UsageLayer::new(recorder.clone())
        .user(extract::header("x-user-id"))
        .service(extract::header("x-service"))
        .model(extract::header("x-model"));
    let trace = tower_http::trace::TraceLayer::new_for_http;
    let plain = allocations_per_request(&mut router());
    println!("  axum Router  {plain:.2} alone; added:");
    for (name, added) in [
        (
            "usage_layer on the routes",
            allocations_per_request(&mut router().layer(layer.clone())),
        ),
        (
            "usage_layer around the router",
            allocations_per_request(&mut layer.layer(router())),
        ),
        (
            "trace_layer on the routes",
            allocations_per_request(&mut router().layer(trace())),
        ),
        (
            "trace_layer around the router",
            allocations_per_request(&mut trace().layer(router())),
        ),
    ] {
        println!("    {name:<30} {:+.2}", added - plain);
    }
    runtime.block_on(recorder.shutdown());
    drop(floor);
    let _ = runtime.block_on(drained);
}

/// A body of prepared frames.
struct Frames(std::collections::VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// A service answering every request with `frames` as `content_type`.
fn streaming(
    content_type: &'static str,
    frames: Vec<Bytes>,
) -> impl Service<
    Req,
    Response = Response<Frames>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Frames>, Infallible>>,
> + Clone {
    tower::service_fn(move |_req: Req| {
        let body = Frames(frames.iter().cloned().collect());
        let response = Response::builder()
            .header("content-type", content_type)
            .body(body)
            .expect("valid response");
        std::future::ready(Ok::<_, Infallible>(response))
    })
}

/// 512 chat-completion chunks of about 128 bytes, the last one with the usage.
fn sse_events() -> Vec<Bytes> {
    let mut events: Vec<Bytes> = (0..511)
        .map(|i| {
            let event = format!(
                "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{{\"delta\":{{\"content\":\"t{i:04}\"}}}}]}}\n\n"
            );
            Bytes::from(format!("{event:<128}"))
        })
        .collect();
    events.push(Bytes::from_static(
        b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":511}}\n\ndata: [DONE]\n\n",
    ));
    events
}

/// 1 MiB of JSON text in one frame, the usage at the end.
fn big_json() -> Vec<Bytes> {
    let filler = "lorem ipsum dolor sit amet, ".repeat((1 << 20) / 28);
    vec![Bytes::from(format!(
        "{{\"model\":\"gpt-4o\",\"text\":\"{filler}\",\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":2}}}}"
    ))]
}

fn inspect(c: &mut Criterion) {
    // The recorder drains on its own runtime, kept alive to the end.
    let (recorder_runtime, recorder) = runtime_and_recorder();
    let mut group = c.benchmark_group("inspect");
    for (name, content_type, frames) in [
        ("sse_64k", "text/event-stream", sse_events()),
        ("json_1m", "application/json", big_json()),
    ] {
        let size: usize = frames.iter().map(Bytes::len).sum();
        group.throughput(criterion::Throughput::Bytes(size as u64));
        let mut plain =
            UsageLayer::new(recorder.clone()).layer(streaming(content_type, frames.clone()));
        group.bench_function(format!("{name}/usage_layer"), |b| {
            b.iter_batched(request, |req| run(&mut plain, req), BatchSize::SmallInput)
        });
        let mut inspected = UsageLayer::new(recorder.clone())
            .layer(InspectLayer::new().layer(streaming(content_type, frames)));
        group.bench_function(format!("{name}/usage_layer_inspect"), |b| {
            b.iter_batched(
                request,
                |req| run(&mut inspected, req),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();

    // The whole request over loopback: a hyper server, a hyper client on one kept-alive
    // connection, the 64 KiB event stream read to its end.
    let mut group = c.benchmark_group("inspect_loopback");
    // Server and client each get a worker thread, as on a real pair of hosts' cores.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let frames = sse_events();
    let plain = runtime.block_on(serve(
        UsageLayer::new(recorder.clone()).layer(streaming_any(frames.clone())),
    ));
    let inspected = runtime.block_on(serve(
        UsageLayer::new(recorder.clone()).layer(InspectLayer::new().layer(streaming_any(frames))),
    ));
    for (name, addr) in [
        ("sse_64k/usage_layer", plain),
        ("sse_64k/usage_layer_inspect", inspected),
    ] {
        let mut sender = runtime.block_on(connect(addr));
        group.bench_function(name, |b| {
            b.iter(|| runtime.block_on(roundtrip(&mut sender)))
        });
    }
    group.finish();

    // The same two, interleaved request by request, so that drift in what else the two
    // cores are doing falls on both alike (when no filter leaves this group out).
    if !asked_for("inspect_loopback") {
        recorder_runtime.block_on(recorder.shutdown());
        return;
    }
    let mut senders = (
        runtime.block_on(connect(plain)),
        runtime.block_on(connect(inspected)),
    );
    let mut pairs = Vec::with_capacity(200);
    for _ in 0..200 {
        let start = std::time::Instant::now();
        runtime.block_on(roundtrip(&mut senders.0));
        let middle = std::time::Instant::now();
        runtime.block_on(roundtrip(&mut senders.1));
        pairs.push((middle - start, middle.elapsed()));
    }
    let median = |mut v: Vec<std::time::Duration>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let without = median(pairs.iter().map(|p| p.0).collect());
    let with = median(pairs.iter().map(|p| p.1).collect());
    println!(
        "inspect_loopback interleaved, 200 pairs: median {without:?} without the inspector, {with:?} with it ({:+.1}%)",
        (with.as_secs_f64() / without.as_secs_f64() - 1.0) * 100.0
    );
    recorder_runtime.block_on(recorder.shutdown());
}

type Incoming = Request<hyper::body::Incoming>;

/// Like [`streaming`], for hyper's request body.
fn streaming_any(
    frames: Vec<Bytes>,
) -> impl Service<
    Incoming,
    Response = Response<Frames>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Frames>, Infallible>> + Send,
> + Clone
       + Send
       + 'static {
    tower::service_fn(move |_req: Incoming| {
        let body = Frames(frames.iter().cloned().collect());
        let response = Response::builder()
            .header("content-type", "text/event-stream")
            .body(body)
            .expect("valid response");
        std::future::ready(Ok::<_, Infallible>(response))
    })
}

/// Serves `service` on a loopback port; returns the address.
async fn serve<S, B>(service: S) -> std::net::SocketAddr
where
    S: Service<Incoming, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(service.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    addr
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: std::net::SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

async fn roundtrip(sender: &mut Sender) -> usize {
    use http_body_util::BodyExt;
    sender.ready().await.unwrap();
    let request = Request::get("/v1/chat/completions")
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .len()
}

criterion_group!(benches, overhead, inspect);

/// Whether the command line's filters (if any) select benchmarks named `group/…`.
fn asked_for(group: &str) -> bool {
    // Flags and their numeric values are not filters.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-') && a.parse::<f64>().is_err())
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| group.contains(f.as_str()) || f.contains(group))
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
