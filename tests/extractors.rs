//! Extractors, the handle and bad input, through a real axum router.

mod common;

use axum::{routing::get, routing::post, Extension, Router};
use common::{memory_recorder, only_record};
use http::{HeaderValue, Request};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_usage::extract::Extract;
use tower_usage::{extract, ClientPlatform, TokenUsage, UsageHandle, UsageLayer, UsageRecord};

#[derive(Clone)]
struct Claims {
    sub: String,
}

async fn call(app: Router, request: Request<axum::body::Body>) -> (http::StatusCode, bytes::Bytes) {
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test]
async fn extractors_fill_the_record_and_the_handle_wins() {
    let (recorder, sink) = memory_recorder();
    async fn chat(Extension(usage): Extension<UsageHandle>) -> &'static str {
        usage.set_model("gpt-4o-2024-08-06");
        usage.add_tokens(1000, 100);
        usage.set_cost_micros(1_250);
        usage.insert_metadata("temperature", 0.2);
        "answer"
    }
    let app = Router::new().route("/v1/{model}/chat", post(chat)).layer(
        UsageLayer::new(recorder.clone())
            .user(
                extract::extension(|c: &Claims| Some(c.sub.clone()))
                    .or(extract::header("x-user-id")),
            )
            .service(extract::fixed("chat"))
            .model(extract::path_segment(1))
            .provider(extract::query("provider"))
            .country(extract::header("cf-ipcountry")),
    );
    let request = Request::post("/v1/gpt-4o/chat?provider=openai")
        .header("x-user-id", "alice")
        .header("cf-ipcountry", "DE")
        .header("content-length", "2")
        .header("user-agent", "OpenAI/Python 1.54.0")
        .body(axum::body::Body::from("{}"))
        .unwrap();
    let (status, body) = call(app, request).await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"answer"[..]));

    let record = only_record(&recorder, &sink).await;
    assert_eq!(record.user.as_deref(), Some("alice"));
    assert_eq!(record.service.as_deref(), Some("chat"));
    assert_eq!(
        record.model.as_deref(),
        Some("gpt-4o-2024-08-06"),
        "the handle wins"
    );
    assert_eq!(record.provider.as_deref(), Some("openai"));
    assert_eq!(record.country.as_deref(), Some("DE"));
    assert_eq!(
        record.route.as_deref(),
        Some("/v1/{model}/chat"),
        "axum's matched path"
    );
    assert_eq!(record.request_bytes, Some(2));
    assert_eq!(record.client, ClientPlatform::Sdk);
    assert_eq!(record.tokens, TokenUsage::new(1000, 100));
    assert_eq!(record.cost_micros, Some(1_250));
    assert_eq!(record.metadata, serde_json::json!({"temperature": 0.2}));
}

#[tokio::test]
async fn an_extension_from_an_outer_auth_layer_is_seen() {
    let (recorder, sink) = memory_recorder();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(
            UsageLayer::new(recorder.clone())
                .user(extract::extension(|c: &Claims| Some(c.sub.clone()))),
        )
        .layer(axum::middleware::map_request(
            |mut req: Request<axum::body::Body>| async move {
                req.extensions_mut().insert(Claims {
                    sub: "subject-7".into(),
                });
                req
            },
        ));
    call(
        app,
        Request::get("/").body(axum::body::Body::empty()).unwrap(),
    )
    .await;
    let record = only_record(&recorder, &sink).await;
    assert_eq!(record.user.as_deref(), Some("subject-7"));
}

#[tokio::test]
async fn response_hooks_read_extensions_and_headers() {
    let (recorder, sink) = memory_recorder();
    async fn embed() -> impl axum::response::IntoResponse {
        (
            [
                ("x-usage-model", "text-embedding-3-small"),
                ("x-usage-cost-micros", "20"),
            ],
            Extension(TokenUsage::new(512, 0)),
            "[0.1]",
        )
    }
    let app = Router::new().route("/embed", post(embed)).layer(
        UsageLayer::new(recorder.clone())
            .on_response((extract::token_usage(), extract::usage_headers())),
    );
    call(
        app,
        Request::post("/embed")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    let record = only_record(&recorder, &sink).await;
    assert_eq!(record.tokens, TokenUsage::new(512, 0));
    assert_eq!(record.model.as_deref(), Some("text-embedding-3-small"));
    assert_eq!(record.cost_micros, Some(20));
}

#[tokio::test]
async fn bad_header_values_are_kept_as_far_as_possible() {
    let (recorder, sink) = memory_recorder();
    let app = Router::new().route("/", get(|| async { "ok" })).layer(
        UsageLayer::new(recorder.clone())
            .user(extract::header("x-user-id"))
            .model(extract::header("x-model"))
            .service(extract::header("x-missing"))
            .provider(extract::header("not a valid name"))
            .max_value_len(64),
    );
    let mut request = Request::get("/").body(axum::body::Body::empty()).unwrap();
    let headers = request.headers_mut();
    headers.insert("x-user-id", HeaderValue::from_bytes(b"us\xe9r").unwrap());
    headers.insert(
        "x-model",
        HeaderValue::from_str(&"m".repeat(100_000)).unwrap(),
    );
    let (status, body) = call(app, request).await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"ok"[..]));

    let record = only_record(&recorder, &sink).await;
    assert_eq!(record.user.as_deref(), Some("us\u{FFFD}r"));
    assert_eq!(record.model.as_deref().map(str::len), Some(64));
    assert_eq!(record.service, None);
    assert_eq!(record.provider, None);
    assert_eq!(record.client, ClientPlatform::Unknown);
}

#[tokio::test]
async fn a_panicking_extractor_or_hook_does_not_touch_the_request() {
    let (recorder, sink) = memory_recorder();
    let app = Router::new().route("/", get(|| async { "served" })).layer(
        UsageLayer::new(recorder.clone())
            .user(|_: &http::request::Parts| -> Option<String> { panic!("extractor bug") })
            .service(extract::fixed("svc"))
            .on_response(|_: &http::response::Parts, _: &mut UsageRecord| panic!("hook bug")),
    );
    let (status, body) = call(
        app,
        Request::get("/").body(axum::body::Body::empty()).unwrap(),
    )
    .await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"served"[..]));

    let record = only_record(&recorder, &sink).await;
    assert_eq!(record.user, None);
    assert_eq!(
        record.service.as_deref(),
        Some("svc"),
        "the other extractors still ran"
    );
    assert_eq!(record.status, Some(http::StatusCode::OK));
    assert_eq!(recorder.stats().extractor_panics, 2);
}

#[tokio::test]
async fn a_handle_used_after_the_response_changes_nothing() {
    let (recorder, sink) = memory_recorder();
    let (tx, rx) = tokio::sync::oneshot::channel::<UsageHandle>();
    let tx = std::sync::Arc::new(std::sync::Mutex::new(Some(tx)));
    let app = Router::new()
        .route(
            "/",
            get(move |Extension(usage): Extension<UsageHandle>| {
                let _ = tx.lock().unwrap().take().unwrap().send(usage);
                async { "ok" }
            }),
        )
        .layer(UsageLayer::new(recorder.clone()));
    call(
        app,
        Request::get("/").body(axum::body::Body::empty()).unwrap(),
    )
    .await;
    let handle = rx.await.unwrap();
    assert!(handle.is_finished());
    handle.set_user("too late");
    let record = only_record(&recorder, &sink).await;
    assert_eq!(record.user, None);
}

#[tokio::test]
async fn a_hook_wins_over_extractors_and_the_handle_wins_over_both() {
    let (recorder, sink) = memory_recorder();
    async fn handler(Extension(usage): Extension<UsageHandle>) -> &'static str {
        usage.set_provider("from-handle");
        "ok"
    }
    let app = Router::new().route("/", get(handler)).layer(
        UsageLayer::new(recorder.clone())
            .model(extract::fixed("from-extractor"))
            .provider(extract::fixed("from-extractor"))
            .on_response(|_: &http::response::Parts, record: &mut UsageRecord| {
                assert_eq!(
                    record.model, None,
                    "request-side fields are filled in later"
                );
                record.model = Some("from-hook".into());
                record.provider = Some("from-hook".into());
            }),
    );
    call(
        app,
        Request::get("/").body(axum::body::Body::empty()).unwrap(),
    )
    .await;
    let record = only_record(&recorder, &sink).await;
    assert_eq!(record.model.as_deref(), Some("from-hook"));
    assert_eq!(record.provider.as_deref(), Some("from-handle"));
}
