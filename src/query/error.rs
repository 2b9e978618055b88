//! Why a query was refused before it reached the database.

/// A query the store refuses to run, with the reason; nothing was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The range ends before (or where) it starts.
    #[error("the time range is empty: `from` ({from}) is not before `to` ({to})")]
    EmptyRange {
        /// The start asked for.
        from: chrono::DateTime<chrono::Utc>,
        /// The end asked for.
        to: chrono::DateTime<chrono::Utc>,
    },
    /// The range is longer than the store allows.
    #[error("the time range spans {days} days; at most {max_days} are allowed")]
    RangeTooLong {
        /// The range's length, in whole days.
        days: i64,
        /// The store's limit ([`DieselStoreBuilder::max_range`](crate::store::DieselStoreBuilder::max_range)).
        max_days: i64,
    },
    /// The range starts before the Unix epoch or ends past what the store can represent.
    #[error("the time range must lie between 1970-01-01 and 9999-12-31")]
    RangeOutOfBounds,
    /// A name filter (user, service, …) is empty or only white space.
    #[error("the `{field}` filter is empty")]
    EmptyName {
        /// Which filter.
        field: &'static str,
    },
    /// A time series would have more buckets than the store allows.
    #[error("{buckets} buckets asked for; at most {max} are allowed (use a coarser granularity or a shorter range)")]
    TooManyBuckets {
        /// How many the range and granularity make.
        buckets: u64,
        /// The store's limit.
        max: u64,
    },
    /// A row limit above the store's maximum.
    #[error("limit {limit} is above the maximum of {max}")]
    LimitTooLarge {
        /// The limit asked for.
        limit: usize,
        /// The store's maximum.
        max: usize,
    },
    /// A limit of zero rows.
    #[error("limit must be at least 1")]
    ZeroLimit,
}
