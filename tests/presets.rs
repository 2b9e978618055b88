//! The preset layers under a real axum router.

mod common;

use axum::routing::post;
use axum::Extension;
use common::{memory_recorder, only_record};
use http::{Request, StatusCode};
use tower::ServiceExt;
use tower_usage::{extract, presets, Outcome, UsageHandle};

async fn call(app: axum::Router, path: &str) -> StatusCode {
    let request = Request::post(path)
        .header("x-user-id", "u-1")
        .body(axum::body::Body::empty())
        .unwrap();
    app.oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn credits_take_the_amount_and_operation_from_headers_or_the_handle() {
    let (recorder, sink) = memory_recorder();
    let app = axum::Router::new()
        .route(
            "/credits/spend",
            post(|| async {
                (
                    [
                        ("x-credits-amount", "2500000"),
                        ("x-credits-operation", "spend"),
                    ],
                    "ok",
                )
            }),
        )
        .layer(presets::credits(recorder.clone()).user(extract::header("x-user-id")));
    call(app, "/credits/spend").await;
    let record = only_record(&recorder, &sink).await;
    assert_eq!(record.service.as_deref(), Some("credits"));
    assert_eq!(record.user.as_deref(), Some("u-1"));
    assert_eq!(record.cost_micros, Some(2_500_000));
    assert_eq!(record.metadata["operation"], "spend");

    let (recorder, sink) = memory_recorder();
    let app = axum::Router::new()
        .route(
            "/credits/refund",
            post(|Extension(usage): Extension<UsageHandle>| async move {
                usage.set_cost_micros(-100);
                usage.insert_metadata("operation", "refund");
                ([("x-credits-amount", "not a number")], "ok")
            }),
        )
        .layer(presets::credits(recorder.clone()));
    call(app, "/credits/refund").await;
    let record = only_record(&recorder, &sink).await;
    assert_eq!(record.cost_micros, Some(-100));
    assert_eq!(record.metadata["operation"], "refund");
}

#[tokio::test]
async fn auth_records_success_failure_and_the_subject() {
    for (status, result) in [
        (StatusCode::OK, "success"),
        (StatusCode::UNAUTHORIZED, "failure"),
    ] {
        let (recorder, sink) = memory_recorder();
        let app = axum::Router::new()
            .route(
                "/login",
                post(move || async move { (status, [("x-auth-subject", "alice")], "") }),
            )
            .layer(presets::auth(recorder.clone()));
        assert_eq!(call(app, "/login").await, status);
        let record = only_record(&recorder, &sink).await;
        assert_eq!(record.service.as_deref(), Some("auth"));
        assert_eq!(record.metadata["login"], result);
        assert_eq!(record.user.as_deref(), Some("alice"));
        let expected = if status.is_success() {
            Outcome::Success
        } else {
            Outcome::ClientError
        };
        assert_eq!(record.outcome, expected);
    }
}
