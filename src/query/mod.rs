//! The analytics' questions and answers, free of any database type.
//!
//! A [`Filter`] says which records; the store's query methods
//! ([`DieselStore::metrics`](crate::store::DieselStore::metrics),
//! [`by_service`](crate::store::DieselStore::by_service),
//! [`time_series`](crate::store::DieselStore::time_series),
//! [`top_users`](crate::store::DieselStore::top_users),
//! [`user_usage`](crate::store::DieselStore::user_usage),
//! [`dashboard`](crate::store::DieselStore::dashboard), the exports) answer with the
//! types here. All of them serialize with serde, so an HTTP layer can return them as
//! they are.
//!
//! # Definitions
//!
//! - **Ranges** are half-open, `[from, to)`, to the microsecond.
//! - **Errors** are records whose outcome is not `success`
//!   ([`Outcome::is_error`](crate::Outcome::is_error)), client errors and cancellations
//!   included; breakdowns give the error rate per group.
//! - **Percentiles** are nearest-rank (the `ceil(p·n)`-th smallest value) over a
//!   histogram of logarithmic buckets 4% wide: the reported value is the bucket's
//!   midpoint, within 2% of the exact nearest-rank percentile. [`quantize_micros`] maps an
//!   exact value to what the histogram reports. Every backend and the rollups use the same
//!   histogram, so they agree exactly.
//! - **Buckets** of a time series follow the calendar of an IANA time zone; see
//!   [`Granularity::bucket_start`].
//!
//! ```
//! use tower_usage::query::{Filter, TimeRange};
//! use tower_usage::store::DieselStore;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = DieselStore::connect("sqlite::memory:").await?;
//! let metrics = store.metrics(&Filter::new(TimeRange::last_days(30))).await?;
//! assert_eq!(metrics.requests, 0);
//! assert_eq!(metrics.latency.p95_us, None);
//! # Ok(()) }
//! ```

// The crate-private helpers here (bounds checks, sums, buckets) serve the store.
#![cfg_attr(not(feature = "store"), allow(dead_code))]

mod audit;
mod error;
mod filter;
mod histogram;
mod results;
mod time;

pub use audit::{AuditEntry, AuditQuery};
pub use chrono_tz::Tz;
pub use error::QueryError;
pub use filter::{Filter, StatusClass, TimeRange};
pub use histogram::quantize_micros;
pub use results::{
    Breakdown, BreakdownRow, Dashboard, Dimension, Latency, LatencySeries, Metrics, PeakHours,
    Point, RankBy, Series, SeriesKey, TimeSeries, Tokens, UserRank, UserUsage,
};
pub use time::Granularity;

#[cfg(feature = "store")]
pub(crate) use histogram::{bucket, lower_bounds, Histogram};
#[cfg(feature = "store")]
pub(crate) use results::Totals;
#[cfg(feature = "store")]
pub(crate) use time::weekday_hour;
