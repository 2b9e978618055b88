//! What a body's `Content-Type` says it holds, as the body readers need to know.

/// The kinds of body worth reading for usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// `application/json` and `…+json` (or any media type ending in `json`).
    Json,
    /// `text/event-stream`.
    EventStream,
    /// Anything else, or no content type.
    Other,
}

/// The kind of body `headers` announce. Media types compare without case and without
/// their parameters; nothing is allocated.
pub(crate) fn body_kind(headers: &http::HeaderMap) -> BodyKind {
    let Some(value) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return BodyKind::Other;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let ends_with = |suffix: &str| {
        essence.len() >= suffix.len()
            && essence.as_bytes()[essence.len() - suffix.len()..]
                .eq_ignore_ascii_case(suffix.as_bytes())
    };
    if essence.eq_ignore_ascii_case("text/event-stream") {
        BodyKind::EventStream
    } else if ends_with("json") {
        BodyKind::Json
    } else {
        BodyKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(value: &str) -> BodyKind {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, value.parse().unwrap());
        body_kind(&headers)
    }

    #[test]
    fn media_types_are_read_without_case_or_parameters() {
        assert_eq!(kind("application/json; charset=utf-8"), BodyKind::Json);
        assert_eq!(kind("Application/Problem+JSON"), BodyKind::Json);
        assert_eq!(
            kind("text/event-stream;charset=UTF-8"),
            BodyKind::EventStream
        );
        assert_eq!(kind("text/plain"), BodyKind::Other);
        assert_eq!(body_kind(&http::HeaderMap::new()), BodyKind::Other);
    }
}
