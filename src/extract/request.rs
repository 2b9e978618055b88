//! The built-in request extractors.

use std::marker::PhantomData;

use http::{request::Parts, HeaderName};

use super::{Extract, Value};

/// A request header's value; made by [`header`].
#[derive(Debug, Clone)]
pub struct Header {
    /// `None` when the configured name is not a valid header name: no request can carry
    /// such a header, so the extractor simply never finds one.
    name: Option<HeaderName>,
}

/// An extractor for the value of the request header `name` (case-insensitive).
///
/// Values that are not valid UTF-8 are kept with the bad bytes replaced by `�`. A name
/// that is not a valid header name is reported once with a `tracing` warning, and the
/// extractor then finds nothing, since no request can carry such a header.
///
/// ```
/// use tower_usage::extract::{self, Extract};
///
/// let (parts, ()) = http::Request::get("/").header("X-User-Id", "u-1").body(()).unwrap().into_parts();
/// assert_eq!(extract::header("x-user-id").extract(&parts).unwrap().as_str(), "u-1");
/// assert_eq!(extract::header("not a header").extract(&parts), None);
/// ```
pub fn header(name: &str) -> Header {
    let parsed = HeaderName::from_bytes(name.as_bytes()).ok();
    if parsed.is_none() {
        tracing::warn!(
            name,
            "tower-usage: not a valid header name; this extractor will find nothing"
        );
    }
    Header { name: parsed }
}

impl Extract for Header {
    fn extract(&self, request: &Parts) -> Option<Value> {
        let value = request.headers.get(self.name.as_ref()?)?;
        Some(Value::header(value))
    }
}

/// A value taken from a typed request extension; made by [`extension`].
pub struct Extension<T, F> {
    f: F,
    // `fn() -> T` keeps the extractor `Send + Sync` whatever `T` is: no `T` is stored.
    _type: PhantomData<fn() -> T>,
}

impl<T, F: Clone> Clone for Extension<T, F> {
    fn clone(&self) -> Self {
        Extension {
            f: self.f.clone(),
            _type: PhantomData,
        }
    }
}

impl<T, F> std::fmt::Debug for Extension<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extension")
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

/// An extractor that reads the request extension of type `T` (for example the claims an
/// authentication layer inserted) through `f`.
///
/// The usage layer must run inside the layer that inserts the extension for it to be there.
///
/// ```
/// use tower_usage::extract::{self, Extract};
///
/// #[derive(Clone)]
/// struct Tenant(String);
///
/// let tenant = extract::extension(|t: &Tenant| Some(t.0.clone()));
/// let (mut parts, ()) = http::Request::new(()).into_parts();
/// assert_eq!(tenant.extract(&parts), None);
/// parts.extensions.insert(Tenant("acme".into()));
/// assert_eq!(tenant.extract(&parts).unwrap().as_str(), "acme");
/// ```
pub fn extension<T, F, V>(f: F) -> Extension<T, F>
where
    T: Send + Sync + 'static,
    F: Fn(&T) -> Option<V>,
    V: Into<Value>,
{
    Extension {
        f,
        _type: PhantomData,
    }
}

impl<T, F, V> Extract for Extension<T, F>
where
    T: Send + Sync + 'static,
    F: Fn(&T) -> Option<V>,
    V: Into<Value>,
{
    fn extract(&self, request: &Parts) -> Option<Value> {
        request
            .extensions
            .get::<T>()
            .and_then(&self.f)
            .map(Into::into)
    }
}

/// One segment of the request path; made by [`path_segment`].
#[derive(Debug, Clone, Copy)]
pub struct PathSegment {
    index: usize,
}

/// An extractor for the `index`-th segment (from 0) of the request path, percent-decoded.
///
/// ```
/// use tower_usage::extract::{self, Extract};
///
/// let (parts, ()) = http::Request::get("/v1/models/gpt%2D4o/chat").body(()).unwrap().into_parts();
/// assert_eq!(extract::path_segment(2).extract(&parts).unwrap().as_str(), "gpt-4o");
/// assert_eq!(extract::path_segment(9).extract(&parts), None);
/// ```
pub fn path_segment(index: usize) -> PathSegment {
    PathSegment { index }
}

impl Extract for PathSegment {
    fn extract(&self, request: &Parts) -> Option<Value> {
        let segment = request
            .uri
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .nth(self.index)?;
        Some(Value::from(percent_decode(segment, false)))
    }
}

/// A query-string parameter; made by [`query`].
#[derive(Debug, Clone)]
pub struct Query {
    name: String,
}

/// An extractor for the first value of the query parameter `name`, decoded as a form
/// value (`+` is a space, `%XX` a byte).
///
/// ```
/// use tower_usage::extract::{self, Extract};
///
/// let (parts, ()) = http::Request::get("/?a=1&user=J%C3%BCrgen+M").body(()).unwrap().into_parts();
/// assert_eq!(extract::query("user").extract(&parts).unwrap().as_str(), "Jürgen M");
/// ```
pub fn query(name: impl Into<String>) -> Query {
    Query { name: name.into() }
}

impl Extract for Query {
    fn extract(&self, request: &Parts) -> Option<Value> {
        request.uri.query()?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key, true) == self.name)
                .then(|| Value::from(percent_decode(value, true)))
        })
    }
}

/// Decodes `%XX` escapes (and `+` as a space in form values); malformed escapes are kept
/// as they are and bytes that are not UTF-8 become `�`.
fn percent_decode(input: &str, plus_is_space: bool) -> String {
    if !input
        .bytes()
        .any(|b| b == b'%' || (plus_is_space && b == b'+'))
    {
        return input.to_owned();
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str) -> Parts {
        http::Request::get(uri).body(()).unwrap().into_parts().0
    }

    #[test]
    fn percent_decoding_never_panics_on_malformed_input() {
        assert_eq!(percent_decode("a%", false), "a%");
        assert_eq!(percent_decode("a%4", false), "a%4");
        assert_eq!(percent_decode("%zz%41", false), "%zzA");
        assert_eq!(percent_decode("%FF", false), "\u{FFFD}");
        assert_eq!(percent_decode("%C3%A9+x", true), "é x");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("%e2%82", false), "\u{FFFD}");
    }

    #[test]
    fn query_finds_the_first_match_and_handles_bare_keys() {
        let p = parts("/x?flag&user=&user=b&u%73er=c");
        assert_eq!(query("flag").extract(&p), Some(Value::from(String::new())));
        assert_eq!(query("user").extract(&p), Some(Value::from(String::new())));
        assert_eq!(query("missing").extract(&p), None);
        assert_eq!(query("x").extract(&parts("/x")), None);
    }

    #[test]
    fn header_with_binary_value_is_kept_lossily() {
        let mut p = parts("/");
        p.headers.insert(
            "x-user-id",
            http::HeaderValue::from_bytes(b"ab\xffcd").unwrap(),
        );
        assert_eq!(
            header("X-USER-ID").extract(&p).unwrap().as_str(),
            "ab\u{FFFD}cd"
        );
    }

    #[test]
    fn path_segments_skip_empty_ones() {
        let p = parts("//v1//chat/");
        assert_eq!(path_segment(0).extract(&p).unwrap().as_str(), "v1");
        assert_eq!(path_segment(1).extract(&p).unwrap().as_str(), "chat");
        assert_eq!(path_segment(2).extract(&p), None);
    }
}
