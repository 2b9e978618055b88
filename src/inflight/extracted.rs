//! What the layer took from the request head, kept cheaply until the record is written.

use quanta::Instant;
use std::borrow::Cow;

use super::Anchor;
use crate::client::ClientPlatform;
use crate::extract::{clean, Inline, Value};
use crate::record::UsageRecord;

/// The request-side values of a record in flight. They share memory with the request
/// where they can (header values, the URI, axum's matched path) and are turned into
/// the record's text fields by [`Extracted::fill`], in the recorder's worker.
#[derive(Debug, Default)]
pub(crate) struct Extracted {
    pub(crate) user: Option<Value>,
    pub(crate) service: Option<Value>,
    pub(crate) model: Option<Value>,
    pub(crate) provider: Option<Value>,
    pub(crate) country: Option<Value>,
    pub(crate) route: Option<Route>,
    /// The `User-Agent`, copied when short; a longer one is shared with the request.
    pub(crate) user_agent: Option<Value>,
    pub(crate) max_value_len: usize,
    /// When the request arrived; the record's start time and id are made from it in the
    /// worker, which spares the request path a reading of the wall clock.
    pub(crate) start: Option<Instant>,
}

/// Where the route comes from.
#[derive(Debug)]
pub(crate) enum Route {
    #[cfg(feature = "axum")]
    Matched(axum::extract::MatchedPath),
    /// A short path, copied (see [`Value`]'s header values for why).
    Short(Inline),
    Path(http::uri::PathAndQuery),
}

impl Route {
    /// axum's route template when the router matched one, else the path.
    pub(crate) fn of(request: &http::request::Parts) -> Option<Self> {
        #[cfg(feature = "axum")]
        if let Some(matched) = request.extensions.get::<axum::extract::MatchedPath>() {
            return Some(Route::Matched(matched.clone()));
        }
        let path = request.uri.path();
        match Inline::new(path.as_bytes()) {
            Some(inline) => Some(Route::Short(inline)),
            // A path too long to copy has a path-and-query to share.
            None => request.uri.path_and_query().cloned().map(Route::Path),
        }
    }

    fn as_str(&self) -> Cow<'_, str> {
        match self {
            #[cfg(feature = "axum")]
            Route::Matched(matched) => Cow::Borrowed(matched.as_str()),
            Route::Short(path) => String::from_utf8_lossy(path.as_bytes()),
            Route::Path(path) => Cow::Borrowed(path.path()),
        }
    }
}

impl Extracted {
    /// Fills the record's fields that are still empty (a response hook may have set some).
    pub(crate) fn fill(self, record: &mut UsageRecord, anchor: &Anchor) {
        if let Some(start) = self.start {
            record.started_at = anchor.at(start);
            record.id = crate::id::new_v7(record.started_at);
        }
        let max = self.max_value_len;
        for (field, value) in [
            (&mut record.user, self.user),
            (&mut record.service, self.service),
            (&mut record.model, self.model),
            (&mut record.provider, self.provider),
            (&mut record.country, self.country),
        ] {
            if field.is_none() {
                *field = value.and_then(|v| v.into_field(max));
            }
        }
        if record.route.is_none() {
            record.route = self.route.and_then(|r| clean(r.as_str().into_owned(), max));
        }
        if record.client == ClientPlatform::Unknown {
            if let Some(agent) = self.user_agent {
                record.client = ClientPlatform::from_user_agent(&agent.as_str());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(uri: &str) -> String {
        let (parts, ()) = http::Request::get(uri).body(()).unwrap().into_parts();
        Route::of(&parts).expect("a path").as_str().into_owned()
    }

    #[test]
    fn the_route_is_the_path_without_its_query_short_or_long() {
        assert_eq!(route("/v1/chat?x=1"), "/v1/chat");
        let long = format!("/v1/{}", "segment/".repeat(10));
        assert!(long.len() > Inline::CAPACITY);
        assert_eq!(route(&format!("{long}?key=secret")), long);
    }
}
