//! The dashboard page (feature `dashboard`): one HTML document with its style and script
//! inlined, embedded in the crate and served by the API router at its root. It calls the
//! same API with the bearer token the user pastes (kept in the tab's session storage),
//! so it shows what the token's role may see: an admin the whole dashboard, a user only
//! their own usage (`/me` tells the page which).
//!
//! The page fetches nothing from anywhere else: no CDN, no web font; its charts are SVG
//! drawn by its own script.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header;

const PAGE: &str = include_str!("page.html");
const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("page.js");

/// What the page may load and where it may connect: itself and its own API only.
const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data: blob:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page, with its style and script inlined and costs in `currency` (an ISO 4217
/// code, checked by the config).
pub(super) fn page(currency: &str) -> Bytes {
    PAGE.replace("{{style}}", STYLE)
        .replace("{{currency}}", currency)
        .replace("{{script}}", SCRIPT)
        .into()
}

/// The page as a response (a shared buffer, not a copy): never cached stale (it is
/// small), never framed.
pub(super) async fn serve(page: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        page,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_inlines_its_assets_and_fetches_nothing_from_elsewhere() {
        let page = page("EUR");
        let page = std::str::from_utf8(&page).unwrap();
        assert!(!page.contains("{{"), "a placeholder is left");
        assert!(page.contains(r#"content="EUR""#));
        for outside in ["http://", "https://", "//cdn", "@import", "<link"] {
            let found = page
                .match_indices(outside)
                .map(|(i, _)| &page[i..(i + 60).min(page.len())]);
            let found: Vec<&str> = found
                .filter(|s| !s.starts_with("http://www.w3.org/2000/svg"))
                .collect();
            assert!(found.is_empty(), "{outside}: {found:?}");
        }
    }
}
