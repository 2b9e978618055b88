//! `GET /health` for axum.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::Health;

impl Health {
    /// `GET /health`: the [report](Self::report) as JSON, `200 OK` when healthy and
    /// `503 Service Unavailable` with the reasons otherwise. Never cached. Merge it into
    /// an app, or serve it on a port of its own for the load balancer.
    ///
    /// ```
    /// use axum::Router;
    /// use tower_usage::ops::Health;
    /// use tower_usage::{MemorySink, Recorder};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let recorder = Recorder::builder(MemorySink::new()).spawn();
    /// let app: Router = Router::new().merge(Health::new().check(recorder.watch()).router());
    /// # }
    /// ```
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let health = self.clone();
        Router::new().route(
            "/health",
            get(move || {
                let health = health.clone();
                async move { respond(&health).await }
            }),
        )
    }
}

async fn respond(health: &Health) -> Response {
    let report = health.report().await;
    let status = if report.healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = report.to_json().to_string();
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
