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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value(Repr);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Repr {
    Header(HeaderValue),
    Text(String),
    Static(&'static str),
    Shared(Arc<str>),
}

impl Value {
    /// The value as text; bytes that are not UTF-8 are replaced by `�`.
    pub fn as_str(&self) -> Cow<'_, str> {
        match &self.0 {
            Repr::Header(value) => match value.to_str() {
                Ok(text) => Cow::Borrowed(text),
                Err(_) => String::from_utf8_lossy(value.as_bytes()),
            },
            Repr::Text(text) => Cow::Borrowed(text),
            Repr::Static(text) => Cow::Borrowed(text),
            Repr::Shared(text) => Cow::Borrowed(text),
        }
    }

    /// Whether the value is empty or only white space (it then counts as missing).
    pub fn is_blank(&self) -> bool {
        match &self.0 {
            Repr::Header(value) => value.as_bytes().iter().all(u8::is_ascii_whitespace),
            Repr::Text(text) => text.trim().is_empty(),
            Repr::Static(text) => text.trim().is_empty(),
            Repr::Shared(text) => text.trim().is_empty(),
        }
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

impl From<HeaderValue> for Value {
    fn from(value: HeaderValue) -> Self {
        Value(Repr::Header(value))
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
    }
}
