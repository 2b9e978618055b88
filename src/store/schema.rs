//! The table every backend shares. Types are the portable subset (integers, text, bytes),
//! so one definition serves SQLite, PostgreSQL and MySQL alike.

diesel::table! {
    /// One row per [`UsageRecord`](crate::UsageRecord). Times are whole microseconds since
    /// the Unix epoch (UTC); the primary key starts with the time so rows are clustered
    /// by it and the table can be range-partitioned by time.
    usage_records (started_at_us, id) {
        /// The record's UUID v7, 16 bytes.
        id -> Binary,
        started_at_us -> BigInt,
        method -> Nullable<Text>,
        route -> Nullable<Text>,
        status -> Nullable<SmallInt>,
        outcome -> Text,
        ttfb_us -> Nullable<BigInt>,
        duration_us -> BigInt,
        request_bytes -> Nullable<BigInt>,
        response_bytes -> BigInt,
        user_id -> Nullable<Text>,
        service -> Nullable<Text>,
        model -> Nullable<Text>,
        provider -> Nullable<Text>,
        client -> Text,
        country -> Nullable<Text>,
        tokens_in -> BigInt,
        tokens_out -> BigInt,
        tokens_cached_in -> BigInt,
        tokens_cache_write_in -> BigInt,
        cost_micros -> Nullable<BigInt>,
        /// JSON text (JSONB on PostgreSQL, read back as text).
        metadata -> Nullable<Text>,
        requested_model -> Nullable<Text>,
        unpriced -> SmallInt,
    }
}
