//! [`McpLayer`]; its service, future and bodies are in the files of those names, split
//! as tower-http splits its middlewares.

use tower::Layer;

use super::service::Mcp;

/// Reads MCP traffic for the record; goes inside [`mcp`](crate::presets::mcp())'s usage layer.
///
/// From a JSON-RPC request body (the first message of a batch) it records the method as
/// `mcp_method` in the metadata and, for `tools/call`, the tool as `mcp_tool`. In the
/// answer, JSON or a stream of server-sent events, a JSON-RPC error object (with a numeric
/// `code`) makes the record an error: `ClientError` for the protocol's request errors
/// (-32700, -32600, -32601, -32602), `ServerError` otherwise, with the code as
/// `jsonrpc_error_code`. A tool that reports `isError` in its result is a successful call
/// and stays `Success`, flagged `mcp_tool_error`. Bodies pass through unchanged; at most
/// 64 KiB of a request and 1 MiB of one response message are kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct McpLayer {
    _private: (),
}

impl McpLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for McpLayer {
    type Service = Mcp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Mcp::new(inner)
    }
}
