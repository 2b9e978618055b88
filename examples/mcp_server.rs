//! A small MCP server (streamable HTTP transport, JSON answers) under the MCP preset:
//! every JSON-RPC call is recorded with its method and tool into SQLite (`usage.db`, or
//! the database `DATABASE_URL` names).
//!
//! ```sh
//! cargo run --example mcp_server        # listens on 127.0.0.1:3001 (or $ADDR), at /mcp
//! ```
//!
//! Two tools: `add` and `divide` (dividing by zero is a tool error). Point an MCP
//! client at `http://127.0.0.1:3001/mcp`; the JSON-RPC is written by hand here, to show
//! what the preset sees.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tower::ServiceBuilder;
use tower_usage::store::DieselStore;
use tower_usage::{extract, presets, Recorder};

/// Protocol versions this server speaks, newest first.
const VERSIONS: &[&str] = &["2025-06-18", "2025-03-26", "2024-11-05"];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3001".to_owned());
    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://usage.db".to_owned());
    let store = DieselStore::connect(&database_url).await?;
    let recorder = Recorder::builder(store.clone())
        .flush_interval(Duration::from_millis(200))
        .spawn();

    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    eprintln!(
        "MCP server on http://{addr}/mcp, recording into {}",
        store.backend_name()
    );
    axum::serve(listener, app(recorder.clone()))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    recorder.shutdown().await;
    eprintln!("stopped; {} records in the database", store.count().await?);
    Ok(())
}

/// The server's routes under the MCP preset.
fn app(recorder: Recorder) -> Router {
    Router::new().route("/mcp", post(rpc).get(no_stream)).layer(
        ServiceBuilder::new()
            .layer(presets::mcp(recorder).user(extract::header("x-user-id")))
            .layer(presets::McpLayer::new()),
    )
}

/// This server sends no messages of its own: no event stream to open.
async fn no_stream() -> StatusCode {
    StatusCode::METHOD_NOT_ALLOWED
}

/// One JSON-RPC message (batches are not used by current clients).
async fn rpc(headers: HeaderMap, body: String) -> Response {
    let _ = headers;
    let Ok(message) = serde_json::from_str::<Value>(&body) else {
        return Json(error(Value::Null, -32700, "Parse error")).into_response();
    };
    let id = message.get("id").cloned();
    let method = message
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(id) = id else {
        // A notification (`notifications/initialized`, …): accepted, nothing to answer.
        return StatusCode::ACCEPTED.into_response();
    };
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    let answer = match method {
        "initialize" => {
            let asked = params.get("protocolVersion").and_then(Value::as_str);
            let version = asked
                .filter(|v| VERSIONS.contains(v))
                .unwrap_or(VERSIONS[0]);
            result(
                id,
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": "tower-usage-example", "version": env!("CARGO_PKG_VERSION")},
                }),
            )
        }
        "ping" => result(id, json!({})),
        "tools/list" => result(id, json!({"tools": tools()})),
        "tools/call" => call_tool(id, &params),
        _ => error(id, -32601, "Method not found"),
    };
    Json(answer).into_response()
}

fn tools() -> Value {
    let numbers = json!({
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    });
    json!([
        {"name": "add", "description": "Adds two numbers.", "inputSchema": numbers},
        {"name": "divide", "description": "Divides a by b.", "inputSchema": numbers},
    ])
}

fn call_tool(id: Value, params: &Value) -> Value {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let arg = |key: &str| {
        params
            .pointer(&format!("/arguments/{key}"))
            .and_then(Value::as_f64)
    };
    let (Some(a), Some(b)) = (arg("a"), arg("b")) else {
        return error(id, -32602, "Invalid params: `a` and `b` must be numbers");
    };
    let text = |t: String, is_error: bool| json!({"content": [{"type": "text", "text": t}], "isError": is_error});
    match name {
        "add" => result(id, text(format!("{}", a + b), false)),
        "divide" if b == 0.0 => result(id, text("cannot divide by zero".into(), true)),
        "divide" => result(id, text(format!("{}", a / b), false)),
        _ => error(id, -32602, &format!("Unknown tool: {name}")),
    }
}

fn result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    use tower_usage::{MemorySink, Outcome};

    async fn post(app: &Router, body: Value) -> (StatusCode, Value) {
        let request = axum::http::Request::post("/mcp")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A client's session, as the official SDKs run it: initialize, initialized, list,
    /// call, a tool error, an unknown tool.
    #[tokio::test]
    async fn a_client_session_is_answered_and_recorded() {
        let sink = MemorySink::new();
        let recorder = Recorder::builder(sink.clone()).spawn();
        let app = app(recorder.clone());
        let (_, init) = post(&app, json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})).await;
        assert_eq!(init["result"]["protocolVersion"], "2025-03-26");
        let (status, _) = post(
            &app,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (_, list) = post(
            &app,
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await;
        assert_eq!(list["result"]["tools"].as_array().unwrap().len(), 2);
        let (_, sum) = post(&app, json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 2, "b": 3}}})).await;
        assert_eq!(sum["result"]["content"][0]["text"], "5");
        let (_, zero) = post(&app, json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "divide", "arguments": {"a": 1, "b": 0}}})).await;
        assert_eq!(zero["result"]["isError"], true);
        let (_, unknown) = post(&app, json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "nope", "arguments": {"a": 1, "b": 0}}})).await;
        assert_eq!(unknown["error"]["code"], -32602);

        recorder.shutdown().await;
        let records = sink.records();
        assert_eq!(records.len(), 6);
        let methods: Vec<&Value> = records.iter().map(|r| &r.metadata["mcp_method"]).collect();
        assert_eq!(
            methods,
            [
                "initialize",
                "notifications/initialized",
                "tools/list",
                "tools/call",
                "tools/call",
                "tools/call"
            ]
        );
        assert!(records.iter().all(|r| r.service.as_deref() == Some("mcp")));
        assert_eq!(records[3].metadata["mcp_tool"], "add");
        assert_eq!(records[4].metadata["mcp_tool_error"], true);
        assert_eq!(records[4].outcome, Outcome::Success);
        assert_eq!(records[5].outcome, Outcome::ClientError);
    }
}
