//! What operators watch: a health check and metrics for scrapers and collectors.
//!
//! | module | holds |
//! |---|---|
//! | [`health`] | [`Health`]: the store reachable, the recorder's backlog and the cache, as `GET /health` (200 or 503 with the reasons) |
//! | `metrics` | `Metrics` (feature `prometheus`): usage and recorder counters, write latency, the Prometheus text exposition as `GET /metrics`; `Metrics::export_to` an OpenTelemetry meter (feature `otel`) |
//!
//! Both are plain values with an axum router of their own (feature `axum`), to mount
//! beside the service, on another port, or not at all.

pub mod health;
#[cfg(feature = "prometheus")]
mod metrics;

pub use health::{Health, HealthCheck, HealthReport, Unhealthy};
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub use metrics::Metrics;
