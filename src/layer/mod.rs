//! The metering middleware: [`UsageLayer`] and the service, future and body it is made of.
//!
//! # When things happen
//!
//! | moment | what the layer does |
//! |---|---|
//! | request arrives | reads the clock; takes method, route, declared request size, client platform, and runs the [extractors](crate::extract); puts a [`UsageHandle`](crate::UsageHandle) into the request extensions |
//! | inner service answers | notes the status and time to first byte; runs the [`OnResponse`](crate::extract::OnResponse) hook; wraps the body |
//! | each body frame | counts its data bytes |
//! | body ends | finishes the record ([`Success`](crate::Outcome::Success), [`ClientError`](crate::Outcome::ClientError) or [`ServerError`](crate::Outcome::ServerError) by status) |
//! | body fails | finishes it as [`BodyError`](crate::Outcome::BodyError) |
//! | body or future dropped early | finishes it as [`Cancelled`](crate::Outcome::Cancelled) (no status if no head was produced) |
//! | inner service errors | finishes it as [`ServiceError`](crate::Outcome::ServiceError) and passes the error on |
//!
//! "Body ends" is any of: the body yields no more frames; it yields trailers; it reports
//! `is_end_stream()` after a frame; the bytes sent reach its exact declared length; or it
//! had ended before it was wrapped (`HEAD` requests, `204`, `304` and other bodiless
//! statuses, empty bodies). Servers stop polling a body in all these cases, so waiting for
//! a final `None` would turn complete responses into cancellations.
//!
//! A record is finished exactly once and then handed to the
//! [`Recorder`](crate::Recorder) without waiting. Nothing the layer does can fail the
//! request or change the response: the service's error type is the inner service's, and
//! the body wrapper forwards `size_hint` and `is_end_stream` so `Content-Length` is kept.

mod body;
mod extractors;
mod future;
mod guard;
#[allow(clippy::module_inception)]
mod layer;
mod service;

pub use body::{Metering, ResponseBody};
pub use extractors::Extractors;
pub use future::ResponseFuture;
pub use layer::UsageLayer;
pub use service::Usage;
