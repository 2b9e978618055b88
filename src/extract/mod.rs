//! Extractors: where the layer finds the user, service, model, provider and country.
//!
//! An [`Extract`] takes one value from the request head (method, URI, headers and
//! extensions) before the inner service runs. Built-ins cover the usual places:
//!
//! | built-in | takes the value from |
//! |---|---|
//! | [`header`] | a request header (non-UTF-8 bytes are replaced, not refused) |
//! | [`extension`] | a typed request extension, e.g. claims an auth layer put there |
//! | [`path_segment`] | the n-th segment of the path (`/v1/{model}/…`) |
//! | [`query`] | a query-string parameter |
//! | [`fixed`] | always the same value (`fixed("chat")` for a service name) |
//! | any `Fn(&request::Parts) -> Option<String>` | whatever the closure returns |
//!
//! [`Extract::or`] chains them: the first that finds a value wins. `()` extracts nothing
//! and costs nothing; it is what the layer uses until a setter is called.
//!
//! On the way back, an [`OnResponse`] hook sees the response head and can fill in the
//! record: [`token_usage`] reads a [`TokenUsage`](crate::TokenUsage) the handler put into
//! the response extensions, [`usage_headers`] reads usage from response headers.
//!
//! Extractors run on the request path, so they should be cheap. One that panics is
//! caught: the value is left empty, the request is served as usual, and the panic is
//! counted in [`RecorderStats::extractor_panics`](crate::RecorderStats::extractor_panics).
//! Values longer than the layer's limit (see
//! [`UsageLayer::max_value_len`](crate::UsageLayer::max_value_len)) are cut on a character
//! boundary; empty values count as missing.
//!
//! ```
//! use tower_usage::extract::{self, Extract};
//!
//! #[derive(Clone)]
//! struct Claims {
//!     sub: String,
//! }
//!
//! // The authenticated subject if an auth layer ran, else a header, else a query parameter.
//! let user = extract::extension(|claims: &Claims| Some(claims.sub.clone()))
//!     .or(extract::header("x-user-id"))
//!     .or(extract::query("user"));
//!
//! let (mut parts, ()) = http::Request::get("/v1/chat?user=bob").body(()).unwrap().into_parts();
//! assert_eq!(user.extract(&parts).as_deref(), Some("bob"));
//! parts.extensions.insert(Claims { sub: "alice".into() });
//! assert_eq!(user.extract(&parts).as_deref(), Some("alice"));
//! ```

mod request;
mod response;

pub use request::{extension, header, path_segment, query, Extension, Header, PathSegment, Query};
pub use response::{token_usage, usage_headers, OnResponse, TokenUsageExtension, UsageHeaders};

use http::request::Parts;

/// Takes one value from a request head.
///
/// Implemented for `()` (nothing), for the built-ins of this module, and for every
/// `Fn(&http::request::Parts) -> Option<String>`.
pub trait Extract {
    /// The value, or `None` when the request does not carry one.
    fn extract(&self, request: &Parts) -> Option<String>;

    /// Tries `self`, then `other` when `self` finds nothing.
    fn or<B>(self, other: B) -> Or<Self, B>
    where
        Self: Sized,
        B: Extract,
    {
        Or {
            first: self,
            second: other,
        }
    }
}

impl Extract for () {
    #[inline]
    fn extract(&self, _: &Parts) -> Option<String> {
        None
    }
}

impl<F> Extract for F
where
    F: Fn(&Parts) -> Option<String>,
{
    fn extract(&self, request: &Parts) -> Option<String> {
        self(request)
    }
}

/// Two extractors tried in turn; made by [`Extract::or`].
#[derive(Debug, Clone, Copy)]
pub struct Or<A, B> {
    first: A,
    second: B,
}

impl<A: Extract, B: Extract> Extract for Or<A, B> {
    fn extract(&self, request: &Parts) -> Option<String> {
        self.first
            .extract(request)
            .filter(|v| !v.is_empty())
            .or_else(|| self.second.extract(request))
    }
}

/// Always the same value; made by [`fixed`].
#[derive(Debug, Clone)]
pub struct Fixed(String);

/// An extractor that always gives `value`, e.g. the service name of a route group.
///
/// ```
/// use tower_usage::extract::{self, Extract};
///
/// let (parts, ()) = http::Request::new(()).into_parts();
/// assert_eq!(extract::fixed("chat").extract(&parts).as_deref(), Some("chat"));
/// ```
pub fn fixed(value: impl Into<String>) -> Fixed {
    Fixed(value.into())
}

impl Extract for Fixed {
    fn extract(&self, _: &Parts) -> Option<String> {
        Some(self.0.clone())
    }
}
