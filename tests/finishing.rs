//! Every way a request can end finishes its record exactly once, with the right outcome.

mod common;

use std::convert::Infallible;
use std::task::Poll;

use common::{memory_recorder, only_record, poll_once, respond_with, ScriptedBody, Step};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tower::{Layer, Service, ServiceExt};
use tower_usage::{Outcome, UsageLayer};

fn get() -> Request<()> {
    Request::get("/v1/things?secret=1").body(()).unwrap()
}

#[tokio::test]
async fn body_read_to_the_end_is_a_success_with_every_byte_counted() {
    let (recorder, sink) = memory_recorder();
    let svc = UsageLayer::new(recorder.clone()).layer(respond_with(|| {
        Response::new(ScriptedBody::new([
            Step::Data("hello "),
            Step::Data("world"),
        ]))
    }));
    let response = svc.oneshot(get()).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&bytes[..], b"hello world");

    let record = only_record(&recorder, &sink).await;
    assert_eq!(record.outcome, Outcome::Success);
    assert_eq!(record.status, Some(StatusCode::OK));
    assert_eq!(record.response_bytes, 11);
    assert_eq!(record.method, Some(Method::GET));
    assert_eq!(
        record.route.as_deref(),
        Some("/v1/things"),
        "no query string in the route"
    );
    assert!(record.ttfb.unwrap() <= record.duration);
}

#[tokio::test]
async fn the_record_is_finished_at_the_last_frame_not_at_drop() {
    let (recorder, sink) = memory_recorder();
    let svc = UsageLayer::new(recorder.clone()).layer(respond_with(|| {
        Response::new(ScriptedBody::new([Step::Data("abc")]))
    }));
    let mut body = svc.oneshot(get()).await.unwrap().into_body();
    assert!(matches!(poll_once(&mut body), Poll::Ready(Some(Ok(_)))));
    assert!(matches!(poll_once(&mut body), Poll::Ready(None)));
    // Still holding the body: the record is already out.
    let record = only_record(&recorder, &sink).await;
    assert_eq!(record.outcome, Outcome::Success);
    drop(body);
    recorder.flush().await;
    assert_eq!(sink.len(), 1, "dropping a finished body adds nothing");
}

#[tokio::test]
async fn reaching_the_exact_length_ends_the_body() {
    let (recorder, sink) = memory_recorder();
    let svc = UsageLayer::new(recorder.clone()).layer(respond_with(|| {
        Response::new(
            ScriptedBody::new([Step::Data("12345"), Step::Data("678"), Step::Hang]).exact(8),
        )
    }));
    let mut body = svc.oneshot(get()).await.unwrap().into_body();
    assert_eq!(body.size_hint().exact(), Some(8), "size hint is forwarded");
    assert!(matches!(poll_once(&mut body), Poll::Ready(Some(Ok(_)))));
    assert!(matches!(poll_once(&mut body), Poll::Ready(Some(Ok(_)))));
    // A server stops polling here; the record must already be complete.
    let record = only_record(&recorder, &sink).await;
    assert_eq!(record.outcome, Outcome::Success);
    assert_eq!(record.response_bytes, 8);
    drop(body);
    recorder.flush().await;
    assert_eq!(sink.len(), 1);
}

#[tokio::test]
async fn is_end_stream_after_a_frame_ends_the_body() {
    let (recorder, sink) = memory_recorder();
    let svc = UsageLayer::new(recorder.clone()).layer(respond_with(|| {
        Response::new(ScriptedBody::new([Step::Data("last"), Step::Hang]).end_before_none())
    }));
    let mut body = svc.oneshot(get()).await.unwrap().into_body();
    assert!(!body.is_end_stream());
    assert!(matches!(poll_once(&mut body), Poll::Ready(Some(Ok(_)))));
    assert!(body.is_end_stream(), "is_end_stream is forwarded");
    let record = only_record(&recorder, &sink).await;
    assert_eq!(
        (record.outcome, record.response_bytes),
        (Outcome::Success, 4)
    );
}

#[tokio::test]
async fn trailers_end_the_body() {
    let (recorder, sink) = memory_recorder();
    let svc = UsageLayer::new(recorder.clone()).layer(respond_with(|| {
        Response::new(ScriptedBody::new([
            Step::Data("ab"),
            Step::Trailers,
            Step::Hang,
        ]))
    }));
    let mut body = svc.oneshot(get()).await.unwrap().into_body();
    assert!(matches!(poll_once(&mut body), Poll::Ready(Some(Ok(_)))));
    assert!(matches!(poll_once(&mut body), Poll::Ready(Some(Ok(f))) if f.is_trailers()));
    let record = only_record(&recorder, &sink).await;
    assert_eq!(
        (record.outcome, record.response_bytes),
        (Outcome::Success, 2)
    );
}

#[tokio::test]
async fn bodies_that_servers_never_send_finish_at_the_head() {
    for (method, status) in [
        (Method::HEAD, StatusCode::OK),
        (Method::GET, StatusCode::NO_CONTENT),
        (Method::GET, StatusCode::NOT_MODIFIED),
    ] {
        let (recorder, sink) = memory_recorder();
        let svc = UsageLayer::new(recorder.clone()).layer(respond_with(move || {
            let mut response =
                Response::new(ScriptedBody::new([Step::Data("never sent"), Step::Hang]));
            *response.status_mut() = status;
            response
        }));
        let request = Request::builder()
            .method(method.clone())
            .uri("/")
            .body(())
            .unwrap();
        let response = svc.oneshot(request).await.unwrap();
        let record = only_record(&recorder, &sink).await;
        assert_eq!(record.outcome, Outcome::Success, "{method} {status}");
        assert_eq!(record.response_bytes, 0);
        assert_eq!(record.status, Some(status));
        drop(response); // the server drops the unpolled body: no Cancelled record
        recorder.flush().await;
        assert_eq!(sink.len(), 1, "{method} {status}");
    }
}

#[tokio::test]
async fn an_empty_body_finishes_at_the_head() {
    let (recorder, sink) = memory_recorder();
    let svc = UsageLayer::new(recorder.clone()).layer(respond_with(|| {
        Response::new(http_body_util::Empty::<bytes::Bytes>::new())
    }));
    let response = svc.oneshot(get()).await.unwrap();
    let record = only_record(&recorder, &sink).await;
    assert_eq!(
        (record.outcome, record.response_bytes),
        (Outcome::Success, 0)
    );
    drop(response);
}

#[tokio::test]
async fn a_body_error_is_a_body_error() {
    let (recorder, sink) = memory_recorder();
    let svc = UsageLayer::new(recorder.clone()).layer(respond_with(|| {
        Response::new(ScriptedBody::new([Step::Data("part"), Step::Error]))
    }));
    let body = svc.oneshot(get()).await.unwrap().into_body();
    assert!(body.collect().await.is_err());
    let record = only_record(&recorder, &sink).await;
    assert_eq!(
        (record.outcome, record.response_bytes),
        (Outcome::BodyError, 4)
    );
}

#[tokio::test]
async fn a_body_dropped_midway_is_cancelled_with_the_bytes_sent() {
    let (recorder, sink) = memory_recorder();
    let svc = UsageLayer::new(recorder.clone()).layer(respond_with(|| {
        Response::new(ScriptedBody::new([
            Step::Data("first"),
            Step::Data("second"),
        ]))
    }));
    let mut body = svc.oneshot(get()).await.unwrap().into_body();
    assert!(matches!(poll_once(&mut body), Poll::Ready(Some(Ok(_)))));
    drop(body);
    let record = only_record(&recorder, &sink).await;
    assert_eq!(
        (record.outcome, record.response_bytes),
        (Outcome::Cancelled, 5)
    );
    assert_eq!(record.status, Some(StatusCode::OK));
}

#[tokio::test]
async fn a_body_never_polled_is_cancelled() {
    let (recorder, sink) = memory_recorder();
    let svc = UsageLayer::new(recorder.clone()).layer(respond_with(|| {
        Response::new(ScriptedBody::new([Step::Data("x")]))
    }));
    drop(svc.oneshot(get()).await.unwrap());
    let record = only_record(&recorder, &sink).await;
    assert_eq!(
        (record.outcome, record.response_bytes),
        (Outcome::Cancelled, 0)
    );
}

#[tokio::test]
async fn a_future_dropped_before_the_head_is_cancelled_without_status() {
    let (recorder, sink) = memory_recorder();
    let inner = tower::service_fn(|_req: Request<()>| async {
        std::future::pending::<()>().await;
        Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
    });
    let mut svc = UsageLayer::new(recorder.clone()).layer(inner);
    let future = svc.ready().await.unwrap().call(get());
    let timed_out = tokio::time::timeout(std::time::Duration::from_millis(10), future).await;
    assert!(timed_out.is_err());
    let record = only_record(&recorder, &sink).await;
    assert_eq!(record.outcome, Outcome::Cancelled);
    assert_eq!(record.status, None);
    assert_eq!(record.ttfb, None);
}

#[tokio::test]
async fn an_inner_error_passes_through_as_a_service_error() {
    let (recorder, sink) = memory_recorder();
    let inner = tower::service_fn(|_req: Request<()>| async {
        Err::<Response<http_body_util::Empty<bytes::Bytes>>, _>("boom")
    });
    let svc = UsageLayer::new(recorder.clone()).layer(inner);
    assert_eq!(svc.oneshot(get()).await.unwrap_err(), "boom");
    let record = only_record(&recorder, &sink).await;
    assert_eq!(
        (record.outcome, record.status),
        (Outcome::ServiceError, None)
    );
}

#[tokio::test]
async fn statuses_decide_the_outcome_of_complete_bodies() {
    for (status, outcome) in [
        (StatusCode::NOT_FOUND, Outcome::ClientError),
        (StatusCode::TOO_MANY_REQUESTS, Outcome::ClientError),
        (StatusCode::INTERNAL_SERVER_ERROR, Outcome::ServerError),
        (StatusCode::SEE_OTHER, Outcome::Success),
    ] {
        let (recorder, sink) = memory_recorder();
        let svc = UsageLayer::new(recorder.clone()).layer(respond_with(move || {
            let mut response = Response::new(ScriptedBody::new([Step::Data("x")]));
            *response.status_mut() = status;
            response
        }));
        let body = svc.oneshot(get()).await.unwrap().into_body();
        body.collect().await.unwrap();
        let record = only_record(&recorder, &sink).await;
        assert_eq!(record.outcome, outcome, "{status}");
    }
}

#[tokio::test]
async fn the_start_time_is_when_the_request_arrived_and_the_id_follows_it() {
    let (recorder, sink) = memory_recorder();
    let svc = UsageLayer::new(recorder.clone()).layer(respond_with(|| {
        Response::new(ScriptedBody::new([Step::Data("x")]))
    }));
    let before = chrono::Utc::now();
    let response = svc.oneshot(get()).await.unwrap();
    let arrived = chrono::Utc::now();
    // The record is written well after the request arrived; its start time must not be.
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    response.into_body().collect().await.unwrap();
    let record = only_record(&recorder, &sink).await;
    let slack = chrono::Duration::milliseconds(2);
    assert!(
        record.started_at >= before - slack && record.started_at <= arrived + slack,
        "{} not within {before} .. {arrived}",
        record.started_at
    );
    let (seconds, nanos) = record.id.get_timestamp().unwrap().to_unix();
    let id_millis = i64::try_from(seconds).unwrap() * 1_000 + i64::from(nanos / 1_000_000);
    assert_eq!(id_millis, record.started_at.timestamp_millis());
    assert_eq!(record.id.get_version_num(), 7);
}
