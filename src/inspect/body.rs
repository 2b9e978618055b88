//! [`InspectBody`]: the response body, scanned for usage as it streams.

use bytes::Buf;
use http_body::Body;

use super::scanner::Scanner;
use crate::body::{Observed, Observer};
use crate::UsageHandle;

/// What the inspector's body does with the frames it passes: scans them, and tells
/// the handle what it found, once, when the body ends, fails or is dropped (before the
/// usage layer around it finishes the record). `None` when there is nothing to inspect.
#[derive(Debug)]
pub struct Inspection(Option<Watch>);

#[derive(Debug)]
struct Watch {
    scanner: Box<Scanner>,
    handle: UsageHandle,
    sent: u64,
    exact_len: Option<u64>,
}

/// The response body of [`Inspect`](super::Inspect): the inner body, unchanged, scanned as it goes.
///
/// Reports to the request's [`UsageHandle`] when the body ends, fails, or is dropped
/// early, always before the usage layer around it finishes the record.
pub type InspectBody<B> = Observed<B, Inspection>;

pub(super) fn inspect_body<B: Body>(inner: B, handle: Option<UsageHandle>) -> InspectBody<B> {
    let exact_len = inner.size_hint().exact();
    let watch = handle.map(|handle| Watch {
        scanner: Box::default(),
        handle,
        sent: 0,
        exact_len,
    });
    Observed::new(inner, Inspection(watch))
}

impl Observer for Inspection {
    fn watching(&self) -> bool {
        self.0.is_some()
    }

    fn data<D: Buf>(&mut self, data: &D) -> bool {
        let Some(watch) = self.0.as_mut() else {
            return false;
        };
        super::for_each_chunk(data, |chunk| watch.scanner.feed(chunk));
        watch.sent = watch.sent.saturating_add(data.remaining() as u64);
        // The same end as the usage layer's body: report before it finishes the record.
        watch.exact_len.is_some_and(|len| watch.sent >= len)
    }

    /// Tells the handle what was found, once.
    fn end(&mut self) {
        if let Some(watch) = self.0.take() {
            let seen = &watch.scanner.seen;
            let tokens = seen.has_usage().then(|| seen.usage_tokens());
            if tokens.is_some() || seen.model.is_some() {
                watch.handle.fill_from_response(tokens, seen.model.clone());
            }
        }
    }
}
