//! [`Observed`]: the one body wrapper of the crate. It passes every frame through
//! unchanged and tells an observer what went by, so the usage layer, the inspectors and
//! the MCP preset each say only what they do with a frame, not how a body is polled.
//!
//! | the observer is told | when |
//! |---|---|
//! | a data frame's bytes | as each passes; the observer may answer that it was the last (a declared length reached) |
//! | the end | no more frames, a trailers frame, the inner body's `is_end_stream` after a frame, or the observer's own last frame |
//! | an error | the inner body failed |
//! | a drop | the body was dropped before its end (the client went away) |
//!
//! Once the observer stops watching (it saw the end, or wants no more), frames pass
//! without a call. The wrapper forwards `size_hint` and `is_end_stream`, so hyper keeps
//! a `Content-Length` instead of going chunked.

mod observed;

pub use observed::Observed;
pub(crate) use observed::Observer;
