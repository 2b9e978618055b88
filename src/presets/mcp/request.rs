//! [`McpRequestBody`]: the request body, its JSON-RPC method and tool read at its end.

use serde_json::Value;

use crate::body::{Observed, Observer};
use crate::inspect::{for_each_chunk, BodyKind};
use crate::UsageHandle;

/// The most of a request body kept to read its method (MCP requests are small).
const REQUEST_CAP: usize = 64 * 1024;

/// What [`McpRequestBody`] does with the frames it passes: keeps the first 64 KiB of
/// a JSON request, and reads its method at the body's end. `None` when there is
/// nothing to read, or the body is too large to be an MCP request worth reading.
#[derive(Debug)]
pub struct McpRequestRead(Option<(UsageHandle, Vec<u8>)>);

impl McpRequestRead {
    /// Reads the request for `handle` if its body is JSON.
    pub(super) fn new(handle: Option<UsageHandle>, kind: BodyKind) -> Self {
        McpRequestRead(
            handle
                .filter(|_| kind == BodyKind::Json)
                .map(|h| (h, Vec::new())),
        )
    }
}

/// The request body of [`Mcp`](super::Mcp): unchanged, its first 64 KiB kept to read the method.
pub type McpRequestBody<B> = Observed<B, McpRequestRead>;

impl Observer for McpRequestRead {
    fn watching(&self) -> bool {
        self.0.is_some()
    }

    fn data<D: bytes::Buf>(&mut self, data: &D) -> bool {
        let Some((_, buf)) = self.0.as_mut() else {
            return false;
        };
        let fits = buf.len() + data.remaining() <= REQUEST_CAP;
        // Too large to be an MCP request worth reading, or bytes it cannot see.
        if !fits || !for_each_chunk(data, |chunk| buf.extend_from_slice(chunk)) {
            self.0 = None;
        }
        false
    }

    fn end(&mut self) {
        if let Some((handle, buf)) = self.0.take() {
            read_request(&handle, &buf);
        }
    }

    /// A request dropped unread says nothing.
    fn dropped(&mut self) {}
}

/// Records the method (and tool) of the JSON-RPC request in `body`.
fn read_request(handle: &UsageHandle, body: &[u8]) {
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let message = match message {
        Value::Array(batch) => batch.into_iter().next().unwrap_or(Value::Null),
        other => other,
    };
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        return;
    };
    handle.insert_metadata("mcp_method", cut(method));
    if method == "tools/call" {
        if let Some(tool) = message.pointer("/params/name").and_then(Value::as_str) {
            handle.insert_metadata("mcp_tool", cut(tool));
        }
    }
}

fn cut(text: &str) -> String {
    text.chars().take(128).collect()
}
