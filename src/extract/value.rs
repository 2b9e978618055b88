//! [`Value`]: an extracted value, kept as cheaply as possible until the record is written.

use std::borrow::Cow;
use std::sync::Arc;

use http::HeaderValue;

/// A value an [`Extract`](super::Extract) found in a request.
///
/// Extractors run on the request path, so a value is kept in the form it was found in: a
/// header value is shared with the request (no copy), a fixed value is shared with the
/// layer. It becomes a `String` — trimmed, cut to the layer's
/// [`max_value_len`](crate::UsageLayer::max_value_len), non-UTF-8 bytes replaced by `�` —
/// only in the recorder's worker, off the request path.
///
/// ```
/// use tower_usage::extract::Value;
///
/// let from_header = Value::from(http::HeaderValue::from_static("alice"));
/// let from_string = Value::from(String::from("alice"));
/// assert_eq!(from_header.as_str(), from_string.as_str());
/// assert!(Value::from("  ").is_blank());
/// ```
#[derive(Debug, Clone)]
pub struct Value(Repr);

#[derive(Debug, Clone)]
enum Repr {
    /// A short header value, copied: cheaper than sharing the request's buffer, whose
    /// reference count both threads would then touch (and whose memory the worker
    /// would often be the one to free).
    Inline(Inline),
    Header(HeaderValue),
    Text(String),
    Static(&'static str),
    Shared(Arc<str>),
}

/// Up to [`Inline::CAPACITY`] bytes kept in place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inline {
    len: u8,
    bytes: [u8; Inline::CAPACITY],
}

impl Inline {
    /// As much as fits beside the length in a header value's own size.
    pub(crate) const CAPACITY: usize = 38;

    pub(crate) fn new(bytes: &[u8]) -> Option<Self> {
        let len = u8::try_from(bytes.len())
            .ok()
            .filter(|&n| usize::from(n) <= Self::CAPACITY)?;
        let mut inline = Inline {
            len,
            bytes: [0; Self::CAPACITY],
        };
        inline.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(inline)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl Value {
    /// A header value, copied when short, else shared with the request.
    pub(crate) fn header(value: &HeaderValue) -> Self {
        match Inline::new(value.as_bytes()) {
            Some(inline) => Value(Repr::Inline(inline)),
            None => Value(Repr::Header(value.clone())),
        }
    }

    fn bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline(inline) => inline.as_bytes(),
            Repr::Header(value) => value.as_bytes(),
            Repr::Text(text) => text.as_bytes(),
            Repr::Static(text) => text.as_bytes(),
            Repr::Shared(text) => text.as_bytes(),
        }
    }

    /// The value as text; bytes that are not UTF-8 are replaced by `�`.
    pub fn as_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.bytes())
    }

    /// Whether the value is empty or only white space (it then counts as missing).
    pub fn is_blank(&self) -> bool {
        // Runs on the request path (fallback chains): no text is made. Bytes that are not
        // UTF-8 become `�` in the record, which is not white space.
        std::str::from_utf8(self.bytes()).is_ok_and(|text| text.trim().is_empty())
    }

    /// The text the record keeps: trimmed, at most `max` bytes (cut on a character
    /// boundary), `None` when nothing is left.
    pub(crate) fn into_field(self, max: usize) -> Option<String> {
        let text = match self.0 {
            Repr::Text(text) => text,
            other => Value(other).as_str().into_owned(),
        };
        clean(text, max)
    }
}

/// Trims `value`, treats empty as missing, and cuts it to `max` bytes on a char boundary.
pub(crate) fn clean(mut value: String, max: usize) -> Option<String> {
    let trimmed = value.trim();
    if trimmed.len() != value.len() {
        value = trimmed.to_owned();
    }
    if value.len() > max {
        let mut end = max;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
    (!value.is_empty()).then_some(value)
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for Value {}

impl From<HeaderValue> for Value {
    fn from(value: HeaderValue) -> Self {
        match Inline::new(value.as_bytes()) {
            Some(inline) => Value(Repr::Inline(inline)),
            None => Value(Repr::Header(value)),
        }
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value(Repr::Text(value))
    }
}

impl From<&'static str> for Value {
    fn from(value: &'static str) -> Self {
        Value(Repr::Static(value))
    }
}

impl From<Arc<str>> for Value {
    fn from(value: Arc<str>) -> Self {
        Value(Repr::Shared(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_trimmed_cut_and_lossy() {
        let binary = Value::from(HeaderValue::from_bytes(b" ab\xffcd ").unwrap());
        assert_eq!(binary.into_field(100).as_deref(), Some("ab\u{FFFD}cd"));
        assert_eq!(Value::from("ééé").into_field(3).as_deref(), Some("é"));
        assert_eq!(Value::from(String::from("   ")).into_field(10), None);
        assert_eq!(Value::from(Arc::<str>::from("x")).into_field(0), None);
        assert!(Value::from(HeaderValue::from_static("")).is_blank());
        assert!(!Value::from(HeaderValue::from_static("a")).is_blank());
        assert!(!Value::from(HeaderValue::from_bytes(b" \xff ").unwrap()).is_blank());
        let long = "x".repeat(Inline::CAPACITY + 1);
        let shared = Value::header(&HeaderValue::from_str(&long).unwrap());
        assert_eq!(shared.as_str(), long);
        let short = Value::header(&HeaderValue::from_static(" user-1 "));
        assert_eq!(short, Value::from(" user-1 "));
        assert_eq!(short.into_field(100).as_deref(), Some("user-1"));
    }
}
