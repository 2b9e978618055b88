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
//! Extractors run on the request path, so they should be cheap: they hand back a
//! [`Value`] that shares what it can with the request (a header value is not copied), and
//! the recorder's worker turns it into text later. One that panics is caught: the value is
//! left empty, the request is served as usual, and the panic is counted in
//! [`RecorderStats::extractor_panics`](crate::RecorderStats::extractor_panics). Values
//! longer than the layer's limit (see
//! [`UsageLayer::max_value_len`](crate::UsageLayer::max_value_len)) are cut on a character
//! boundary; blank values count as missing.
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
//! assert_eq!(user.extract(&parts).unwrap().as_str(), "bob");
//! parts.extensions.insert(Claims { sub: "alice".into() });
//! assert_eq!(user.extract(&parts).unwrap().as_str(), "alice");
//! ```

mod request;
mod response;
mod value;

pub use request::{extension, header, path_segment, query, Extension, Header, PathSegment, Query};
pub(crate) use response::text as header_text;
pub use response::{token_usage, usage_headers, OnResponse, TokenUsageExtension, UsageHeaders};
pub use value::Value;
pub(crate) use value::{clean, Inline};

use std::sync::Arc;

use http::request::Parts;

/// Takes one value from a request head.
///
/// Implemented for `()` (nothing), for the built-ins of this module, and for every
/// `Fn(&http::request::Parts) -> Option<T>` where `T` converts into a [`Value`] (`String`,
/// `&'static str`, `HeaderValue`, `Arc<str>`).
pub trait Extract {
    /// The value, or `None` when the request does not carry one.
    fn extract(&self, request: &Parts) -> Option<Value>;

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
    fn extract(&self, _: &Parts) -> Option<Value> {
        None
    }
}

impl<F, T> Extract for F
where
    F: Fn(&Parts) -> Option<T>,
    T: Into<Value>,
{
    fn extract(&self, request: &Parts) -> Option<Value> {
        self(request).map(Into::into)
    }
}

/// Two extractors tried in turn; made by [`Extract::or`].
#[derive(Debug, Clone, Copy)]
pub struct Or<A, B> {
    first: A,
    second: B,
}

impl<A: Extract, B: Extract> Extract for Or<A, B> {
    fn extract(&self, request: &Parts) -> Option<Value> {
        self.first
            .extract(request)
            .filter(|v| !v.is_blank())
            .or_else(|| self.second.extract(request))
    }
}

/// Always the same value; made by [`fixed`].
#[derive(Debug, Clone)]
pub struct Fixed(Arc<str>);

/// An extractor that always gives `value`, e.g. the service name of a route group.
///
/// ```
/// use tower_usage::extract::{self, Extract};
///
/// let (parts, ()) = http::Request::new(()).into_parts();
/// assert_eq!(extract::fixed("chat").extract(&parts).unwrap().as_str(), "chat");
/// ```
pub fn fixed(value: impl Into<Arc<str>>) -> Fixed {
    Fixed(value.into())
}

impl Extract for Fixed {
    fn extract(&self, _: &Parts) -> Option<Value> {
        Some(Value::from(Arc::clone(&self.0)))
    }
}
