//! [`McpLayer`]: the JSON-RPC method, the tool called, and JSON-RPC errors of MCP's
//! streamable HTTP transport.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use serde_json::Value;
use tower::{Layer, Service};

use crate::body::{Observed, Observer};
use crate::inspect::{body_kind, for_each_chunk, BodyKind};
use crate::{Outcome, UsageHandle};

/// The most of a request body kept to read its method (MCP requests are small).
const REQUEST_CAP: usize = 64 * 1024;
/// The most of one response message (a JSON body, or one server-sent event) kept.
const MESSAGE_CAP: usize = 1024 * 1024;
/// A frame is read in pieces of at most this, so that a huge frame never grows the
/// buffer past the cap by more than one piece.
const PIECE: usize = 64 * 1024;

/// Reads MCP traffic for the record; goes inside [`mcp`](super::mcp)'s usage layer.
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
        Mcp { inner }
    }
}

/// The service made by [`McpLayer`].
#[derive(Debug, Clone)]
pub struct Mcp<S> {
    inner: S,
}

impl<S, B, ResBody> Service<Request<B>> for Mcp<S>
where
    S: Service<Request<McpRequestBody<B>>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<McpResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = McpFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let handle = request.extensions().get::<UsageHandle>().cloned();
        let is_json = body_kind(request.headers()) == BodyKind::Json;
        let watch = handle
            .clone()
            .filter(|_| is_json)
            .map(|handle| (handle, Vec::new()));
        McpFuture {
            inner: self
                .inner
                .call(request.map(|inner| Observed::new(inner, McpRequestRead(watch)))),
            handle,
        }
    }
}

/// What [`McpRequestBody`] does with the frames it passes: keeps the first 64 KiB of
/// a JSON request, and reads its method at the body's end. `None` when there is
/// nothing to read, or the body is too large to be an MCP request worth reading.
#[derive(Debug)]
pub struct McpRequestRead(Option<(UsageHandle, Vec<u8>)>);

/// The request body of [`Mcp`]: unchanged, its first 64 KiB kept to read the method.
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

pin_project! {
    /// The response future of [`Mcp`].
    pub struct McpFuture<F> {
        #[pin]
        inner: F,
        handle: Option<UsageHandle>,
    }
}

impl<F> std::fmt::Debug for McpFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for McpFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<McpResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let kind = body_kind(response.headers());
        let watch = this.handle.take().and_then(|handle| {
            let events = kind == BodyKind::EventStream;
            (kind != BodyKind::Other).then(|| Watch {
                handle,
                events,
                buf: Vec::new(),
                searched: 0,
                done: false,
            })
        });
        Poll::Ready(Ok(
            response.map(|inner| Observed::new(inner, McpResponseRead(watch)))
        ))
    }
}

#[derive(Debug)]
struct Watch {
    handle: UsageHandle,
    /// Server-sent events (else one JSON body).
    events: bool,
    /// The unfinished message (or event).
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no event's end: the next search starts there
    /// (less the three bytes where an end may begin), so a slow stream is searched once.
    searched: usize,
    /// An error was found, or the message is too large or cannot be seen: nothing more
    /// to read.
    done: bool,
}

impl Watch {
    /// Reads a frame's data, every contiguous piece of it.
    fn feed_buf(&mut self, data: &impl bytes::Buf) {
        if self.done {
            return;
        }
        if !for_each_chunk(data, |chunk| self.feed(chunk)) {
            self.give_up();
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for piece in bytes.chunks(PIECE) {
            if self.done {
                return;
            }
            if !self.events && self.buf.len() + piece.len() > MESSAGE_CAP {
                return self.give_up();
            }
            self.buf.extend_from_slice(piece);
            if self.events {
                self.read_events();
            }
            if self.buf.len() > MESSAGE_CAP {
                return self.give_up();
            }
        }
    }

    /// Reads the complete events in `buf`, keeping only the unfinished one.
    fn read_events(&mut self) {
        let mut start = 0;
        let mut from = self.searched.saturating_sub(3);
        while let Some(end) = event_end(&self.buf[from..]).map(|end| from + end) {
            let data = event_data(&self.buf[start..end]);
            self.message(&data);
            if self.done {
                return;
            }
            (start, from) = (end, end);
        }
        self.buf.drain(..start);
        self.searched = self.buf.len();
    }

    fn give_up(&mut self) {
        self.done = true;
        self.buf = Vec::new();
        self.searched = 0;
    }

    fn finish(mut self) {
        if !self.done {
            let rest = std::mem::take(&mut self.buf);
            if self.events {
                self.message(&event_data(&rest));
            } else {
                self.message(&rest);
            }
        }
    }

    /// Looks at one JSON-RPC message (or batch).
    fn message(&mut self, json: &[u8]) {
        let Ok(value) = serde_json::from_slice::<Value>(json) else {
            return;
        };
        let messages = match value {
            Value::Array(batch) => batch,
            one => vec![one],
        };
        for message in messages {
            if message.pointer("/result/isError") == Some(&Value::Bool(true)) {
                self.handle.insert_metadata("mcp_tool_error", true);
            }
            let Some(code) = message.pointer("/error/code").and_then(Value::as_i64) else {
                continue;
            };
            let outcome = match code {
                -32700 | -32600 | -32601 | -32602 => Outcome::ClientError,
                _ => Outcome::ServerError,
            };
            self.handle.mark_failed(outcome);
            self.handle.insert_metadata("jsonrpc_error_code", code);
            return self.give_up();
        }
    }
}

/// Where the first complete event in `buf` ends (after its blank line: a line end
/// followed by `\n` or `\r\n`). It looks no further than that end.
fn event_end(buf: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', buf).find_map(|i| match &buf[i + 1..] {
        [b'\n', ..] => Some(i + 2),
        [b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    })
}

/// The `data:` lines of one event, joined by newlines, as the event's payload.
fn event_data(event: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    for line in event.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
        }
    }
    data
}

/// What [`McpResponseBody`] does with the frames it passes: reads JSON-RPC errors
/// (see [`McpLayer`]). `None` when the answer is neither JSON nor events.
#[derive(Debug)]
pub struct McpResponseRead(Option<Watch>);

/// The response body of [`Mcp`]: unchanged, read for JSON-RPC errors.
pub type McpResponseBody<B> = Observed<B, McpResponseRead>;

impl Observer for McpResponseRead {
    fn watching(&self) -> bool {
        self.0.is_some()
    }

    fn data<D: bytes::Buf>(&mut self, data: &D) -> bool {
        if let Some(watch) = self.0.as_mut() {
            watch.feed_buf(data);
        }
        false
    }

    fn end(&mut self) {
        if let Some(watch) = self.0.take() {
            watch.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Buf, Bytes};

    fn watch(events: bool) -> Watch {
        Watch {
            handle: UsageHandle::detached(),
            events,
            buf: Vec::new(),
            searched: 0,
            done: false,
        }
    }

    fn error_code(watch: &Watch) -> Option<Value> {
        watch.handle.metadata().get("jsonrpc_error_code").cloned()
    }

    const ERROR: &str = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#;

    #[test]
    fn an_event_sent_a_byte_at_a_time_is_read() {
        let mut w = watch(true);
        let padding = format!("data: {{\"pad\":\"{}\"}}\n\n", "x".repeat(10_000));
        let stream = format!("{padding}data: {ERROR}\n\n");
        for byte in stream.as_bytes() {
            w.feed(std::slice::from_ref(byte));
            // Only the unfinished event is kept, and it is searched once.
            assert!(w.buf.len() <= padding.len() && w.searched == w.buf.len());
        }
        assert_eq!(error_code(&w), Some(Value::from(-32601)));
    }

    #[test]
    fn many_events_in_one_frame_are_all_read() {
        let mut w = watch(true);
        let mut stream = "data: {\"jsonrpc\":\"2.0\",\"result\":{}}\n\n".repeat(50_000);
        stream.push_str(&format!("data: {ERROR}\r\n\r\n"));
        w.feed(stream.as_bytes());
        assert_eq!(error_code(&w), Some(Value::from(-32601)));
    }

    #[test]
    fn a_huge_frame_never_grows_the_buffer_past_the_cap() {
        let huge = vec![b' '; 5 * MESSAGE_CAP];
        for events in [false, true] {
            let mut w = watch(events);
            w.feed(&huge);
            assert!(w.done && w.buf.capacity() == 0, "events: {events}");
            let mut w = watch(events);
            for piece in huge.chunks(100_000) {
                w.feed(piece);
                assert!(
                    w.buf.capacity() <= MESSAGE_CAP + 2 * PIECE,
                    "events: {events}"
                );
            }
            assert!(w.done);
        }
    }

    #[test]
    fn a_frame_in_several_pieces_is_read_whole() {
        let (a, b) = ERROR.split_at(20);
        let data = Bytes::from_static(a.as_bytes()).chain(Bytes::from_static(b.as_bytes()));
        let mut w = watch(false);
        w.feed_buf(&data);
        let handle = w.handle.clone();
        w.finish();
        let code = handle.metadata().get("jsonrpc_error_code").cloned();
        assert_eq!(code, Some(Value::from(-32601)));
        let mut w = watch(true);
        let (a, b) = ("data: ", format!("{ERROR}\n\n"));
        w.feed_buf(&Bytes::from_static(a.as_bytes()).chain(Bytes::from(b)));
        assert_eq!(error_code(&w), Some(Value::from(-32601)));
    }
}
