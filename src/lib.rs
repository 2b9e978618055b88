//! Usage analytics for any [tower] HTTP service: a layer that meters every request, a
//! batching recorder, and sinks that keep the records.
//!
//! Built for services that sell AI calls: each record says who called which service and
//! model, how many tokens and how much money it cost, how fast it was and how it ended —
//! streamed responses included.
//!
//! # Quick start
//!
//! ```
//! use axum::{routing::{get, post}, Extension, Router};
//! use tower_usage::{extract, MemorySink, Recorder, UsageHandle, UsageLayer};
//!
//! async fn chat(Extension(usage): Extension<UsageHandle>) -> &'static str {
//!     usage.set_model("gpt-4o");
//!     usage.add_tokens(1000, 100);
//!     "Hello!"
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let sink = MemorySink::new();
//! let recorder = Recorder::builder(sink.clone()).spawn();
//!
//! let app = Router::new()
//!     .route("/", get(|| async { "ok" }))
//!     .route("/chat", post(chat))
//!     .layer(
//!         UsageLayer::new(recorder.clone())
//!             .user(extract::header("x-user-id"))
//!             .service(extract::fixed("chat")),
//!     );
//!
//! // Serve `app` with `axum::serve`; here one request goes through it directly.
//! use tower::ServiceExt;
//! use http_body_util::BodyExt;
//! let request = http::Request::post("/chat").header("x-user-id", "alice").body(axum::body::Body::empty()).unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(&body[..], b"Hello!");
//!
//! recorder.shutdown().await; // writes everything still queued
//! let record = &sink.records()[0];
//! assert_eq!(record.user.as_deref(), Some("alice"));
//! assert_eq!(record.model.as_deref(), Some("gpt-4o"));
//! assert_eq!(record.tokens.total(), 1100);
//! assert_eq!(record.route.as_deref(), Some("/chat"));
//! assert_eq!(record.response_bytes, 6);
//! # }
//! ```
//!
//! # The parts
//!
//! | module | holds |
//! |---|---|
//! | [`layer`] | [`UsageLayer`] and its service, future and body: when each value is taken |
//! | [`extract`] | where user, service, model, provider and country come from; response hooks |
//! | [`presets`] | usage layers configured for credit and authentication routes |
//! | [`pricing`] | what tokens cost: prices per model and provider, with start dates |
//! | [`inspect`] | token usage and the resolved model read from JSON and SSE response bodies |
//! | [`UsageHandle`] | what a handler tells the record while the request runs |
//! | [`UsageRecord`] | the record itself |
//! | [`recorder`] | the bounded queue, the batching worker, the spill on disk, [`record_usage`] |
//! | [`sink`] | where batches go: [`MemorySink`], [`JsonLinesSink`], [`FanoutSink`], your own |
//! | `store` | [`DieselStore`](store::DieselStore): the records in SQLite, PostgreSQL or MySQL, and the analytics over them |
//! | [`query`] | the analytics' filter and result types, free of any database type |
//! | [`ops`] | what operators watch: `GET /health`, and metrics for Prometheus and OpenTelemetry |
//!
//! # Cargo features
//!
//! | feature | default | enables |
//! |---|---|---|
//! | `axum` | yes | the route is axum's matched path template (`/users/{id}`) rather than the raw path |
//! | `sqlite` | yes | [`store::DieselStore`] on SQLite, bundled: nothing to install |
//! | `postgres` | no | [`store::DieselStore`] on PostgreSQL |
//! | `mysql` | no | [`store::DieselStore`] on MySQL and MariaDB |
//! | `prometheus` | no | `ops::Metrics`: usage and recorder counters, write latency, the Prometheus text exposition |
//! | `otel` | no | the same counters sent to an OpenTelemetry meter |
//! | `full` | no | all of the above |
//!
//! [tower]: https://docs.rs/tower

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod handle;
mod id;
mod inflight;
mod record;
mod unknown_name;

// `store` (and `api`, which needs it) hold the machinery shared by the backends: alone,
// there is no database to keep anything in.
#[cfg(all(
    feature = "store",
    not(any(feature = "sqlite", feature = "postgres", feature = "mysql"))
))]
compile_error!(
    "tower-usage: the `store` and `api` features need a database: \
     enable `sqlite`, `postgres` or `mysql` as well"
);

// Without a database the compile error above is the only one: the modules that need
// one are left out.
#[cfg(all(
    feature = "store",
    any(feature = "sqlite", feature = "postgres", feature = "mysql")
))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql")))
)]
pub mod alert;
#[cfg(all(
    feature = "api",
    any(feature = "sqlite", feature = "postgres", feature = "mysql")
))]
#[cfg_attr(docsrs, doc(cfg(feature = "api")))]
pub mod api;
pub mod body;
pub mod extract;
pub mod inspect;
pub mod layer;
#[cfg(all(
    feature = "store",
    any(feature = "sqlite", feature = "postgres", feature = "mysql")
))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql")))
)]
pub mod notify;
pub mod ops;
pub mod presets;
pub mod pricing;
pub mod query;
pub mod recorder;
pub mod sink;
#[cfg(all(
    feature = "store",
    any(feature = "sqlite", feature = "postgres", feature = "mysql")
))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql")))
)]
pub mod store;

pub use client::ClientPlatform;
pub use handle::UsageHandle;
pub use layer::{Usage, UsageLayer};
pub use record::{Outcome, TokenUsage, UsageRecord, UsageRecordBuilder};
pub use recorder::{install, record_usage, RecordError, Recorder, RecorderStats};
pub use sink::{FanoutSink, JsonLinesSink, MemorySink, SinkError, UsageSink};
pub use unknown_name::UnknownName;

/// The README's examples are compiled as doctests, so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
