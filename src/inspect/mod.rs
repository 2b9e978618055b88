//! Token usage and the model read from the response body itself, streamed or not; and
//! the model a request asked for ([`RequestModelLayer`]).
//!
//! [`InspectLayer`] goes *inside* [`UsageLayer`](crate::UsageLayer) (so that the
//! request carries the [`UsageHandle`](crate::UsageHandle)). It watches JSON and
//! server-sent-event responses as they stream to the client, without buffering them, and
//! when the body ends tells the handle the token usage and the model it found: OpenAI
//! chat completions, completions, embeddings and the Responses API (the last chunk of a
//! stream with `stream_options.include_usage`, or `response.completed`), and Anthropic
//! messages (`message_start` and `message_delta` events). The body reaches the client
//! unchanged. What a handler set through the handle wins over what the body says.
//!
//! Cached input tokens are counted *inside* the input, the crate's convention: OpenAI
//! already reports them so; Anthropic's cache reads and cache writes are added to its
//! `input_tokens` (and kept as `cached_input` and `cache_write_input`). When the client goes away mid-stream, the record (then
//! `Cancelled`) keeps whatever usage had streamed by. Memory stays bounded whatever the
//! response: the scanner keeps a few bytes between frames and copies at most 8 KiB of
//! one `usage` object.
//!
//! ```
//! use axum::{routing::post, Router};
//! use tower::ServiceBuilder;
//! use tower_usage::{inspect::InspectLayer, MemorySink, Recorder, UsageLayer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let recorder = Recorder::builder(MemorySink::new()).spawn();
//! let app: Router = Router::new()
//!     .route("/v1/chat/completions", post(|| async {
//!         ([("content-type", "application/json")],
//!          r#"{"model":"gpt-4o-2024-08-06","usage":{"prompt_tokens":12,"completion_tokens":3}}"#)
//!     }))
//!     // Outermost first: the usage layer, then the inspector inside it.
//!     .layer(ServiceBuilder::new().layer(UsageLayer::new(recorder)).layer(InspectLayer::new()));
//! # }
//! ```

mod body;
mod content;
mod future;
mod layer;
mod request;
mod scanner;
mod service;
mod usage;

pub(crate) use content::{body_kind, BodyKind};

/// Hands every contiguous piece of `data` to `f`, in order, without consuming it; false
/// when the buffer does not show all of its bytes that way (a `Buf` whose
/// `chunks_vectored` shows only part), and `f` then saw only a prefix.
pub(crate) fn for_each_chunk(data: &impl bytes::Buf, mut f: impl FnMut(&[u8])) -> bool {
    let chunk = data.chunk();
    if chunk.len() == data.remaining() {
        f(chunk);
        return true;
    }
    let mut slices = [std::io::IoSlice::new(&[]); 64];
    let n = data.chunks_vectored(&mut slices);
    let mut seen = 0;
    for slice in &slices[..n] {
        f(slice);
        seen += slice.len();
    }
    seen == data.remaining()
}
pub use body::{InspectBody, Inspection};
pub use future::ResponseFuture;
pub use layer::InspectLayer;
pub use request::{ModelSearch, RequestBody, RequestModel, RequestModelLayer};
pub use service::Inspect;
