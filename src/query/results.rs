//! What the queries answer. Every number is computed in Rust from integer sums the
//! database returns, so every backend gives the same answer for the same records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::histogram::Histogram;
use super::Granularity;

/// Token counts. `input` includes `cached_input`, as on the records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct Tokens {
    /// Input (prompt) tokens, cached ones included.
    pub input: u64,
    /// Output (completion) tokens.
    pub output: u64,
    /// The part of `input` served from a cache.
    pub cached_input: u64,
    /// `input + output`.
    pub total: u64,
}

/// Mean and percentiles of a duration, in microseconds; `None` when no record had one.
///
/// Percentiles are nearest-rank over a log-bucketed histogram: the reported value is
/// within 2% of the true nearest-rank percentile (see
/// [`quantize_micros`](super::quantize_micros)). The mean is exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct Latency {
    /// The arithmetic mean.
    pub mean_us: Option<f64>,
    /// The median.
    pub p50_us: Option<u64>,
    /// The 95th percentile.
    pub p95_us: Option<u64>,
    /// The 99th percentile.
    pub p99_us: Option<u64>,
}

/// The headline numbers for a filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Metrics {
    /// Records.
    pub requests: u64,
    /// Distinct users among them (records without a user are not counted).
    pub unique_users: u64,
    /// Tokens consumed.
    pub tokens: Tokens,
    /// Cost in micro-units of the currency; records without a cost count 0.
    pub cost_micros: i64,
    /// Records whose outcome is not `success` (see [`Outcome::is_error`](crate::Outcome::is_error)).
    pub errors: u64,
    /// `errors / requests`; 0 when there are no requests.
    pub error_rate: f64,
    /// Response body bytes sent.
    pub response_bytes: u64,
    /// Total duration, until the response's last byte.
    pub latency: Latency,
    /// Time to the response head; records without a head are left out.
    pub ttfb: Latency,
    /// Records whose model had no price (cost 0, marked `"unpriced"`; see
    /// [`pricing`](crate::pricing)).
    pub unpriced: u64,
}

/// A dimension to break records down by or to split a series by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// The service.
    Service,
    /// The model.
    Model,
    /// The provider.
    Provider,
    /// The client platform.
    Client,
    /// The country.
    Country,
    /// The user.
    User,
}

/// One group of a breakdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct BreakdownRow {
    /// The dimension's value; `None` for records without one.
    pub key: Option<String>,
    /// Records.
    pub requests: u64,
    /// Tokens consumed.
    pub tokens: Tokens,
    /// Cost in micro-units.
    pub cost_micros: i64,
    /// Records that did not succeed.
    pub errors: u64,
    /// `errors / requests`.
    pub error_rate: f64,
    /// Mean total duration in microseconds.
    pub mean_latency_us: Option<f64>,
    /// This group's part of all requests in the filter, from 0 to 1.
    pub share: f64,
}

/// Records grouped by one dimension, largest first.
///
/// Rows are sorted by requests (descending), then by key (`None` last, then byte
/// order); the rows past the limit are summed into `other`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Breakdown {
    /// What the records are grouped by.
    pub dimension: Dimension,
    /// The largest groups, at most the limit asked for.
    pub rows: Vec<BreakdownRow>,
    /// Every group past the limit, summed; `None` when there are none.
    pub other: Option<BreakdownRow>,
    /// All records in the filter.
    pub total_requests: u64,
}

/// Which series of a split time series a [`Series`] is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum SeriesKey {
    /// Every record (the series is not split).
    Total,
    /// Records with this value.
    Value(String),
    /// Records without a value for the dimension.
    Missing,
    /// Records whose value is not among the top ones.
    Other,
}

/// One bucket of a series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct Point {
    /// Records.
    pub requests: u64,
    /// Records that did not succeed.
    pub errors: u64,
    /// Tokens consumed.
    pub tokens: Tokens,
    /// Cost in micro-units.
    pub cost_micros: i64,
    /// Mean total duration in microseconds.
    pub mean_latency_us: Option<f64>,
}

/// One line of a chart: a point per bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct Series {
    /// Which records the series counts.
    pub key: SeriesKey,
    /// One point per bucket of [`TimeSeries::buckets`], empty buckets as zeros.
    pub points: Vec<Point>,
}

/// Records counted per calendar bucket, optionally split into stacked series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct TimeSeries {
    /// The bucket width.
    pub granularity: Granularity,
    /// The IANA name of the zone whose calendar the buckets follow.
    pub time_zone: String,
    /// What the series are split by, if anything.
    pub split: Option<Dimension>,
    /// Each bucket's start. The first may start before the filter's range and the last
    /// end after it; only records inside the range are counted.
    pub buckets: Vec<DateTime<Utc>>,
    /// One series, or one per top value plus `Missing` and `Other` when split.
    pub series: Vec<Series>,
}

/// Latency and time-to-first-byte statistics per calendar bucket: what a percentile
/// chart draws. Percentiles do not add up across series, so the series is never split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct LatencySeries {
    /// The bucket width.
    pub granularity: Granularity,
    /// The IANA name of the zone whose calendar the buckets follow.
    pub time_zone: String,
    /// Each bucket's start, as in [`TimeSeries::buckets`].
    pub buckets: Vec<DateTime<Utc>>,
    /// The total duration's statistics, one per bucket; all `None` in an empty bucket.
    pub latency: Vec<Latency>,
    /// The time to first byte's statistics, one per bucket.
    pub ttfb: Vec<Latency>,
}

/// What [`top_users`](crate::store::DieselStore::top_users) ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    /// Number of records.
    Requests,
    /// Total tokens.
    Tokens,
    /// Cost.
    Cost,
}

/// One user's totals in a ranking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct UserRank {
    /// The user.
    pub user: String,
    /// Records.
    pub requests: u64,
    /// Records that did not succeed.
    pub errors: u64,
    /// Tokens consumed.
    pub tokens: Tokens,
    /// Cost in micro-units.
    pub cost_micros: i64,
}

/// Requests per local weekday and hour: `counts[weekday][hour]`, Monday = 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct PeakHours {
    /// The zone whose local time the hours are.
    pub time_zone: String,
    /// Seven rows (Monday first) of 24 hours.
    pub counts: Vec<Vec<u64>>,
}

/// One user's own usage: what a "my usage" page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct UserUsage {
    /// The user.
    pub user: String,
    /// The user's headline numbers.
    pub metrics: Metrics,
    /// The user's records per day.
    pub daily: TimeSeries,
    /// By service.
    pub by_service: Breakdown,
    /// By model.
    pub by_model: Breakdown,
}

/// Everything a dashboard page shows, in one answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Dashboard {
    /// The headline numbers.
    pub metrics: Metrics,
    /// By service, top 10.
    pub by_service: Breakdown,
    /// By model, top 10.
    pub by_model: Breakdown,
    /// Per day.
    pub daily: TimeSeries,
    /// The 10 users with the most requests.
    pub top_users: Vec<UserRank>,
    /// Requests per local weekday and hour.
    pub peak_hours: PeakHours,
}

/// Integer sums over a set of records: what every query reads from the database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) requests: i64,
    pub(crate) errors: i64,
    pub(crate) tokens_in: i64,
    pub(crate) tokens_out: i64,
    pub(crate) tokens_cached: i64,
    pub(crate) cost_micros: i64,
    pub(crate) response_bytes: i64,
    pub(crate) duration_sum_us: i64,
    pub(crate) ttfb_sum_us: i64,
    pub(crate) ttfb_count: i64,
    pub(crate) unpriced: i64,
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn ratio(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn mean(sum: i64, count: i64) -> Option<f64> {
    (count > 0).then(|| sum as f64 / count as f64)
}

impl Totals {
    pub(crate) fn add(&mut self, other: &Totals) {
        let fields = [
            (&mut self.requests, other.requests),
            (&mut self.errors, other.errors),
            (&mut self.tokens_in, other.tokens_in),
            (&mut self.tokens_out, other.tokens_out),
            (&mut self.tokens_cached, other.tokens_cached),
            (&mut self.cost_micros, other.cost_micros),
            (&mut self.response_bytes, other.response_bytes),
            (&mut self.duration_sum_us, other.duration_sum_us),
            (&mut self.ttfb_sum_us, other.ttfb_sum_us),
            (&mut self.ttfb_count, other.ttfb_count),
            (&mut self.unpriced, other.unpriced),
        ];
        for (mine, theirs) in fields {
            // Symmetric, as the stored sums are: a sum can always be negated.
            *mine = mine.saturating_add(theirs).max(-i64::MAX);
        }
    }

    /// The sums in the order of the stored measure columns.
    pub(crate) fn values(&self) -> [i64; 11] {
        [
            self.requests,
            self.errors,
            self.tokens_in,
            self.tokens_out,
            self.tokens_cached,
            self.cost_micros,
            self.response_bytes,
            self.duration_sum_us,
            self.ttfb_sum_us,
            self.ttfb_count,
            self.unpriced,
        ]
    }

    pub(crate) fn tokens(&self) -> Tokens {
        let (input, output) = (unsigned(self.tokens_in), unsigned(self.tokens_out));
        Tokens {
            input,
            output,
            cached_input: unsigned(self.tokens_cached),
            total: input.saturating_add(output),
        }
    }

    pub(crate) fn point(&self) -> Point {
        Point {
            requests: unsigned(self.requests),
            errors: unsigned(self.errors),
            tokens: self.tokens(),
            cost_micros: self.cost_micros,
            mean_latency_us: mean(self.duration_sum_us, self.requests),
        }
    }

    pub(crate) fn breakdown_row(&self, key: Option<String>, all: i64) -> BreakdownRow {
        BreakdownRow {
            key,
            requests: unsigned(self.requests),
            tokens: self.tokens(),
            cost_micros: self.cost_micros,
            errors: unsigned(self.errors),
            error_rate: ratio(self.errors, self.requests),
            mean_latency_us: mean(self.duration_sum_us, self.requests),
            share: ratio(self.requests, all),
        }
    }

    /// The total duration's and the time to first byte's statistics: means from the
    /// sums, percentiles from the histograms of the same records.
    pub(crate) fn latency(&self, latency: &Histogram, ttfb: &Histogram) -> (Latency, Latency) {
        let stats = |sum, count, h: &Histogram| Latency {
            mean_us: mean(sum, count),
            p50_us: h.percentile(500),
            p95_us: h.percentile(950),
            p99_us: h.percentile(990),
        };
        (
            stats(self.duration_sum_us, self.requests, latency),
            stats(self.ttfb_sum_us, self.ttfb_count, ttfb),
        )
    }

    pub(crate) fn metrics(
        &self,
        unique_users: i64,
        latency: &Histogram,
        ttfb: &Histogram,
    ) -> Metrics {
        let (latency, ttfb) = self.latency(latency, ttfb);
        Metrics {
            requests: unsigned(self.requests),
            unique_users: unsigned(unique_users),
            tokens: self.tokens(),
            cost_micros: self.cost_micros,
            errors: unsigned(self.errors),
            error_rate: ratio(self.errors, self.requests),
            response_bytes: unsigned(self.response_bytes),
            latency,
            ttfb,
            unpriced: unsigned(self.unpriced),
        }
    }
}

impl Breakdown {
    /// Sorts `groups`, keeps `limit` and sums the rest into `other`.
    pub(crate) fn from_groups(
        dimension: Dimension,
        mut groups: Vec<(Option<String>, Totals)>,
        limit: usize,
    ) -> Breakdown {
        let all = groups
            .iter()
            .fold(0i64, |all, (_, t)| all.saturating_add(t.requests));
        groups.sort_by(|(ka, a), (kb, b)| {
            b.requests
                .cmp(&a.requests)
                .then_with(|| ka.is_none().cmp(&kb.is_none()))
                .then_with(|| {
                    ka.as_deref()
                        .map(str::as_bytes)
                        .cmp(&kb.as_deref().map(str::as_bytes))
                })
        });
        let rest = groups.split_off(limit.min(groups.len()));
        let other = (!rest.is_empty()).then(|| {
            let mut sum = Totals::default();
            rest.iter().for_each(|(_, t)| sum.add(t));
            sum.breakdown_row(None, all)
        });
        Breakdown {
            dimension,
            rows: groups
                .into_iter()
                .map(|(k, t)| t.breakdown_row(k, all))
                .collect(),
            other,
            total_requests: unsigned(all),
        }
    }
}
