//! `GET /metrics` for axum.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::Metrics;

/// The OpenMetrics text format, which Prometheus asks for and reads.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Metrics {
    /// `GET /metrics`: the [text exposition](Self::render) for a Prometheus scrape.
    /// Merge it into an app, or serve it on a port of its own. (The analytics API's own
    /// `/metrics` answers business questions, under the prefix it is nested at.)
    ///
    /// ```
    /// use axum::Router;
    /// use tower_usage::ops::Metrics;
    ///
    /// let app: Router = Router::new().merge(Metrics::new().router());
    /// ```
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let metrics = self.clone();
        Router::new().route(
            "/metrics",
            get(move || {
                let text = metrics.render();
                async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response() }
            }),
        )
    }
}
