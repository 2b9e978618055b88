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

mod mcp {
    use super::*;
    use tower::ServiceBuilder;

    async fn exchange(
        request: &'static str,
        content_type: &'static str,
        answer: &'static str,
    ) -> tower_usage::UsageRecord {
        let (recorder, sink) = memory_recorder();
        let app = axum::Router::new()
            .route(
                "/mcp",
                post(move |body: String| async move {
                    assert!(
                        body.starts_with('{') || body.starts_with('['),
                        "the server read the request unchanged"
                    );
                    ([("content-type", content_type)], answer)
                }),
            )
            .layer(
                ServiceBuilder::new()
                    .layer(presets::mcp(recorder.clone()))
                    .layer(presets::McpLayer::new()),
            );
        let request = Request::post("/mcp")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(axum::body::Body::from(request))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        use http_body_util::BodyExt;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], answer.as_bytes(), "the answer passes unchanged");
        only_record(&recorder, &sink).await
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}"#;

    #[tokio::test]
    async fn a_tool_call_records_the_method_and_the_tool() {
        let record = exchange(CALL, "application/json", r#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"3"}],"isError":false}}"#).await;
        assert_eq!(record.service.as_deref(), Some("mcp"));
        assert_eq!(record.metadata["mcp_method"], "tools/call");
        assert_eq!(record.metadata["mcp_tool"], "add");
        assert_eq!(record.outcome, Outcome::Success);
    }

    #[tokio::test]
    async fn json_rpc_errors_are_errors_even_with_a_200() {
        let record = exchange(
            r#"{"jsonrpc":"2.0","id":1,"method":"nope"}"#,
            "application/json",
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}"#,
        )
        .await;
        assert_eq!(record.status, Some(StatusCode::OK));
        assert_eq!(record.outcome, Outcome::ClientError);
        assert_eq!(record.metadata["jsonrpc_error_code"], -32601);
        assert_eq!(record.metadata["mcp_method"], "nope");

        let record = exchange(
            CALL,
            "text/event-stream",
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32603,\"message\":\"boom\"}}\n\n",
        )
        .await;
        assert_eq!(record.outcome, Outcome::ServerError);
        assert_eq!(record.metadata["jsonrpc_error_code"], -32603);
    }

    #[tokio::test]
    async fn a_tool_reporting_an_error_is_a_successful_call_flagged() {
        let record = exchange(CALL, "application/json", r#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"division by zero"}],"isError":true}}"#).await;
        assert_eq!(record.outcome, Outcome::Success);
        assert_eq!(record.metadata["mcp_tool_error"], true);
    }

    #[tokio::test]
    async fn broken_json_is_passed_through_and_ignored() {
        let record = exchange(
            "{\"method\": \"tools/call\", ",
            "application/json",
            "{\"error\": ",
        )
        .await;
        assert_eq!(record.outcome, Outcome::Success);
        assert!(record.metadata.get("mcp_method").is_none());
    }
}
