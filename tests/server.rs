//! Through a real hyper server and client over loopback: streams, disconnects, and a sink
//! that never answers.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::response::sse::{Event, Sse};
use axum::{routing::get, Router};
use bytes::Bytes;
use common::{only_record, Hangs};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tower_usage::{extract, MemorySink, Outcome, Recorder, UsageLayer};

/// An SSE stream of `count` events, `pause` apart.
fn events(
    count: usize,
    pause: Duration,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold(0, move |i| async move {
        if i == count {
            return None;
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        Some((Ok(Event::default().data(format!("event {i}"))), i + 1))
    });
    Sse::new(stream)
}

async fn serve(recorder: Recorder) -> SocketAddr {
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/stream", get(|| async { events(1000, Duration::ZERO) }))
        .route(
            "/slow",
            get(|| async { events(10_000, Duration::from_millis(2)) }),
        )
        .layer(UsageLayer::new(recorder).user(extract::header("x-user-id")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> (Sender, tokio::task::JoinHandle<()>) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, connection)
}

fn get_request(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(path)
        .header("host", "localhost")
        .header("x-user-id", "streamer")
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn a_long_sse_stream_counts_every_byte_the_client_received() {
    let sink = MemorySink::new();
    let recorder = Recorder::builder(sink.clone())
        .flush_interval(Duration::from_millis(5))
        .spawn();
    let addr = serve(recorder.clone()).await;
    let (mut sender, _connection) = connect(addr).await;
    let response = sender.send_request(get_request("/stream")).await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let received = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(received.iter().filter(|&&b| b == b'\n').count(), 2000);

    let record = only_record(&recorder, &sink).await;
    assert_eq!(record.outcome, Outcome::Success);
    assert_eq!(record.response_bytes, received.len() as u64);
    assert_eq!(record.user.as_deref(), Some("streamer"));
    assert!(record.duration >= record.ttfb.unwrap());
}

#[tokio::test]
async fn a_client_that_goes_away_mid_stream_is_cancelled() {
    let sink = MemorySink::new();
    let recorder = Recorder::builder(sink.clone())
        .flush_interval(Duration::from_millis(5))
        .spawn();
    let addr = serve(recorder.clone()).await;
    let (mut sender, connection) = connect(addr).await;
    let response = sender.send_request(get_request("/slow")).await.unwrap();
    let mut body = response.into_body();
    let mut received = 0;
    while received < 100 {
        let frame = body.frame().await.unwrap().unwrap();
        received += frame.data_ref().map_or(0, |d| d.len());
    }
    drop(body);
    drop(sender);
    connection.abort();

    let record = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            recorder.flush().await;
            if let Some(record) = sink.records().into_iter().next() {
                return record;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the server notices the disconnect");
    assert_eq!(record.outcome, Outcome::Cancelled);
    assert_eq!(record.status, Some(http::StatusCode::OK));
    assert!(
        record.response_bytes >= received as u64,
        "{} < {received}",
        record.response_bytes
    );
    assert!(
        record.response_bytes < 10_000 * 10,
        "the stream did not run to its end"
    );
}

#[tokio::test]
async fn a_sink_that_never_answers_does_not_slow_requests() {
    let recorder = Recorder::builder(Hangs)
        .queue_capacity(8)
        .batch_size(4)
        .spawn();
    let addr = serve(recorder.clone()).await;
    let (mut sender, _connection) = connect(addr).await;
    let all = tokio::time::timeout(Duration::from_secs(10), async {
        for _ in 0..200 {
            sender.ready().await.unwrap();
            let response = sender.send_request(get_request("/")).await.unwrap();
            assert_eq!(response.status(), 200);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
        }
    })
    .await;
    assert!(all.is_ok(), "requests were held up by the sink");
    let stats = recorder.stats();
    assert!(stats.dropped > 0, "{stats:?}");
    assert_eq!(stats.recorded + stats.dropped, 200);
}

/// The layer under a bare hyper 1 server (no axum), around a plain `tower::service_fn`
/// that takes hyper's own request body.
#[tokio::test]
async fn a_plain_hyper_server_with_a_tower_service() {
    let sink = MemorySink::new();
    let recorder = Recorder::builder(sink.clone())
        .flush_interval(Duration::from_millis(5))
        .spawn();
    let service = tower::ServiceBuilder::new()
        .layer(UsageLayer::new(recorder.clone()).user(extract::header("x-user-id")))
        .service(tower::service_fn(
            |request: http::Request<hyper::body::Incoming>| async move {
                let body = request.into_body().collect().await?.to_bytes();
                Ok::<_, hyper::Error>(http::Response::new(http_body_util::Full::new(body)))
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = hyper_util::service::TowerToHyperService::new(service);
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });

    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::post("/echo")
        .header("host", "localhost")
        .header("x-user-id", "hyper-user")
        .body(http_body_util::Full::new(Bytes::from_static(
            b"hello hyper",
        )))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let echoed = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&echoed[..], b"hello hyper");

    let record = only_record(&recorder, &sink).await;
    assert_eq!(record.user.as_deref(), Some("hyper-user"));
    assert_eq!(record.route.as_deref(), Some("/echo"));
    assert_eq!(record.request_bytes, Some(11));
    assert_eq!(record.response_bytes, 11);
    assert_eq!(record.outcome, Outcome::Success);
}
