//! The response inspector: real-shaped OpenAI and Anthropic bodies, whole and cut at
//! random points, through the usage layer, end in records with the usage they report.

mod common;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use common::{memory_recorder, only_record, poll_once};
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_usage::inspect::InspectLayer;
use tower_usage::{Outcome, TokenUsage, UsageHandle, UsageLayer, UsageRecord};

/// A body that sends the given pieces, then ends (or hangs, for a client that leaves).
#[derive(Debug)]
struct Pieces {
    pieces: VecDeque<Bytes>,
    hang: bool,
}

impl Body for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.pieces.pop_front() {
            Some(piece) => Poll::Ready(Some(Ok(Frame::data(piece)))),
            None if self.hang => Poll::Pending,
            None => Poll::Ready(None),
        }
    }
}

fn cut(body: &[u8], cuts: &[usize]) -> VecDeque<Bytes> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    points.push(0);
    points.push(body.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| Bytes::copy_from_slice(&body[w[0]..w[1]]))
        .collect()
}

/// Serves `pieces` as the response under the usage layer and the inspector, reads the
/// whole body, and returns the record.
async fn record_of(
    content_type: &str,
    pieces: VecDeque<Bytes>,
    set_by_handler: Option<TokenUsage>,
) -> (Bytes, UsageRecord) {
    let (recorder, sink) = memory_recorder();
    let content_type = content_type.to_owned();
    let svc = ServiceBuilder::new()
        .layer(UsageLayer::new(recorder.clone()))
        .layer(InspectLayer::new())
        .service(service_fn(move |req: Request<()>| {
            if let (Some(tokens), Some(handle)) =
                (set_by_handler, req.extensions().get::<UsageHandle>())
            {
                handle.set_tokens(tokens);
            }
            let response = Response::builder()
                .header("content-type", content_type.clone())
                .body(Pieces {
                    pieces: pieces.clone(),
                    hang: false,
                })
                .unwrap();
            async move { Ok::<_, Infallible>(response) }
        }));
    let response = svc
        .oneshot(Request::post("/v1/x").body(()).unwrap())
        .await
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (bytes, only_record(&recorder, &sink).await)
}

struct Case {
    file: &'static str,
    content_type: &'static str,
    tokens: TokenUsage,
    model: &'static str,
}

const CASES: &[Case] = &[
    Case {
        file: "openai_chat.json",
        content_type: "application/json",
        tokens: TokenUsage::new(1117, 46).with_cached_input(1024),
        model: "gpt-4o-2024-08-06",
    },
    Case {
        file: "openai_chat_stream.sse",
        content_type: "text/event-stream; charset=utf-8",
        tokens: TokenUsage::new(9, 9),
        model: "gpt-4o-mini-2024-07-18",
    },
    Case {
        file: "openai_embeddings.json",
        content_type: "application/json",
        tokens: TokenUsage::new(8, 0),
        model: "text-embedding-3-small",
    },
    Case {
        file: "openai_responses_stream.sse",
        content_type: "text/event-stream",
        tokens: TokenUsage::new(37, 11),
        model: "gpt-4.1-2025-04-14",
    },
    Case {
        file: "anthropic_message.json",
        content_type: "application/json",
        tokens: TokenUsage::new(2112, 6)
            .with_cached_input(2000)
            .with_cache_write_input(100),
        model: "claude-sonnet-4-20250514",
    },
    Case {
        file: "anthropic_stream.sse",
        content_type: "text/event-stream",
        tokens: TokenUsage::new(25, 15),
        model: "claude-3-5-haiku-20241022",
    },
];

fn payload(file: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/payloads")
            .join(file),
    )
    .unwrap()
}

#[tokio::test]
async fn every_payload_gives_its_usage_whole_and_cut_anywhere() {
    for case in CASES {
        let body = payload(case.file);
        let mut runner = TestRunner::new_with_rng(
            Config::with_cases(48),
            proptest::test_runner::TestRng::deterministic_rng(
                proptest::test_runner::RngAlgorithm::ChaCha,
            ),
        );
        let mut splits: Vec<Vec<usize>> = vec![vec![], (0..body.len()).collect()];
        for _ in 0..48 {
            let tree = prop::collection::vec(any::<usize>(), 0..40)
                .new_tree(&mut runner)
                .unwrap();
            splits.push(proptest::strategy::ValueTree::current(&tree));
        }
        for cuts in splits {
            let (sent, record) = record_of(case.content_type, cut(&body, &cuts), None).await;
            assert_eq!(
                &sent[..],
                &body[..],
                "{}: the body passes through unchanged",
                case.file
            );
            assert_eq!(record.tokens, case.tokens, "{} cut at {cuts:?}", case.file);
            assert_eq!(record.model.as_deref(), Some(case.model), "{}", case.file);
            assert_eq!(record.outcome, Outcome::Success);
        }
    }
}

#[tokio::test]
async fn what_the_handler_set_wins() {
    let mine = TokenUsage::new(1, 1);
    let (_, record) = record_of(
        "application/json",
        cut(&payload("openai_chat.json"), &[]),
        Some(mine),
    )
    .await;
    assert_eq!(record.tokens, mine);
    assert_eq!(record.model.as_deref(), Some("gpt-4o-2024-08-06"));
}

#[tokio::test]
async fn other_content_types_are_not_read() {
    let (_, record) = record_of("text/plain", cut(&payload("openai_chat.json"), &[]), None).await;
    assert_eq!(record.tokens, TokenUsage::default());
    assert_eq!(record.model, None);
}

#[tokio::test]
async fn a_client_leaving_mid_stream_keeps_the_usage_seen_so_far() {
    let body = payload("anthropic_stream.sse");
    let text = String::from_utf8(body.clone()).unwrap();
    // Everything up to the message_delta event: input known, output 1 so far.
    let end = text.find("event: message_delta").unwrap();
    let (recorder, sink) = memory_recorder();
    let pieces = cut(&body[..end], &[10, 200, 400]);
    let mut svc = ServiceBuilder::new()
        .layer(UsageLayer::new(recorder.clone()))
        .layer(InspectLayer::new())
        .service(service_fn(move |_req: Request<()>| {
            let response = Response::builder()
                .header("content-type", "text/event-stream")
                .body(Pieces {
                    pieces: pieces.clone(),
                    hang: true,
                })
                .unwrap();
            async move { Ok::<_, Infallible>(response) }
        }));
    let svc = svc.ready().await.unwrap();
    let mut body = svc
        .call(Request::post("/").body(()).unwrap())
        .await
        .unwrap()
        .into_body();
    while let Poll::Ready(Some(_)) = poll_once(&mut body) {}
    drop(body);
    let record = only_record(&recorder, &sink).await;
    assert_eq!(record.outcome, Outcome::Cancelled);
    assert_eq!(record.tokens, TokenUsage::new(25, 1));
    assert_eq!(record.model.as_deref(), Some("claude-3-5-haiku-20241022"));
}

proptest! {
    #![proptest_config(Config::with_cases(64))]

    /// Random bytes, and real payloads with random bytes spliced in, cut anywhere: the
    /// body passes through untouched and nothing panics.
    #[test]
    fn garbage_passes_through_untouched(
        noise in prop::collection::vec(any::<u8>(), 0..2_000),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
        at in any::<usize>(),
        which in 0..CASES.len(),
    ) {
        let mut body = payload(CASES[which].file);
        let at = at % (body.len() + 1);
        body.splice(at..at, noise.iter().copied());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (sent, _record) = rt.block_on(record_of("application/json", cut(&body, &cuts), None));
        prop_assert_eq!(&sent[..], &body[..]);
    }

    /// Truncated payloads: whatever was read is kept, nothing panics.
    #[test]
    fn truncated_bodies_keep_what_was_read(which in 0..CASES.len(), keep in any::<usize>()) {
        let body = payload(CASES[which].file);
        let keep = keep % (body.len() + 1);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (sent, record) = rt.block_on(record_of(CASES[which].content_type, cut(&body[..keep], &[keep / 2]), None));
        prop_assert_eq!(&sent[..], &body[..keep]);
        prop_assert!(record.tokens.input <= CASES[which].tokens.input);
    }
}

mod requested_model {
    use super::*;
    use axum::routing::post;
    use tower_usage::inspect::RequestModelLayer;

    async fn serve(body: &'static str, content_type: &str, limit: usize) -> (String, UsageRecord) {
        let (recorder, sink) = memory_recorder();
        let app = axum::Router::new()
            .route(
                "/v1/chat/completions",
                post(|body: String| async move {
                    (
                        [("content-type", "application/json")],
                        format!(r#"{{"model":"gpt-4o-2024-08-06","echo":{},"usage":{{"prompt_tokens":3,"completion_tokens":1}}}}"#, body.len()),
                    )
                }),
            )
            .layer(
                ServiceBuilder::new()
                    .layer(UsageLayer::new(recorder.clone()))
                    .layer(RequestModelLayer::new().limit(limit))
                    .layer(InspectLayer::new()),
            );
        let request = Request::post("/v1/chat/completions")
            .header("content-type", content_type)
            .body(axum::body::Body::from(body))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            String::from_utf8(bytes.to_vec()).unwrap(),
            only_record(&recorder, &sink).await,
        )
    }

    const REQUEST: &str =
        r#"{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o","stream":false}"#;

    #[tokio::test]
    async fn the_requested_and_the_resolved_model_are_both_kept() {
        let (answer, record) = serve(REQUEST, "application/json", 64 * 1024).await;
        assert!(
            answer.contains(&format!("\"echo\":{}", REQUEST.len())),
            "the handler read the same bytes"
        );
        assert_eq!(record.requested_model.as_deref(), Some("gpt-4o"));
        assert_eq!(record.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(record.tokens, TokenUsage::new(3, 1));
    }

    #[tokio::test]
    async fn nothing_past_the_limit_or_outside_json_is_read() {
        let (_, record) = serve(REQUEST, "application/json", 20).await;
        assert_eq!(
            record.requested_model, None,
            "the model key lies past 20 bytes"
        );
        let (_, record) = serve(REQUEST, "text/plain", 64 * 1024).await;
        assert_eq!(record.requested_model, None);
        let (_, record) = serve("{\"model\": 12, \"x\": [", "application/json", 64 * 1024).await;
        assert_eq!(
            record.requested_model, None,
            "a model that is not a string, in broken JSON"
        );
    }
}
