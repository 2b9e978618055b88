//! [`McpResponseBody`]: the answer, JSON or server-sent events, read for JSON-RPC errors.

use serde_json::Value;

use crate::body::{Observed, Observer};
use crate::inspect::{for_each_chunk, BodyKind};
use crate::{Outcome, UsageHandle};

/// The most of one response message (a JSON body, or one server-sent event) kept.
const MESSAGE_CAP: usize = 1024 * 1024;
/// A frame is read in pieces of at most this, so that a huge frame never grows the
/// buffer past the cap by more than one piece.
const PIECE: usize = 64 * 1024;

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
/// (see [`McpLayer`](super::McpLayer)). `None` when the answer is neither JSON nor events.
#[derive(Debug)]
pub struct McpResponseRead(Option<Watch>);

impl McpResponseRead {
    /// Reads the answer for `handle` if it is JSON or server-sent events.
    pub(super) fn new(handle: Option<UsageHandle>, kind: BodyKind) -> Self {
        let watch = handle
            .filter(|_| kind != BodyKind::Other)
            .map(|handle| Watch {
                handle,
                events: kind == BodyKind::EventStream,
                buf: Vec::new(),
                searched: 0,
                done: false,
            });
        McpResponseRead(watch)
    }
}

/// The response body of [`Mcp`](super::Mcp): unchanged, read for JSON-RPC errors.
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
