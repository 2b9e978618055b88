//! The one registry of what the store keeps: every table's name, the columns the SQL
//! builders write, and the measures every aggregate carries, so that each is named
//! once. The records' table is also a diesel `table!`; the schema itself is made by the
//! migrations under `migrations/<backend>/`, which the crate embeds.
//!
//! | table | slot | key | serves |
//! |---|---|---|---|
//! | `usage_records` | | start time, id | every record, for exports, edges and what the rollups do not keep |
//! | `usage_rollup_15m` | 15 minutes | service, model, provider, outcome, status class | series in any zone in use, range edges |
//! | `usage_rollup_1d` | UTC day | the same | totals and breakdowns over whole days |
//! | `usage_totals_15m` | 15 minutes | none | series and peak hours when only time filters |
//! | `usage_user_1d` | UTC day | user | top users, unique users: partial weeks |
//! | `usage_user_7d` | 7 days | user | top users, unique users: whole 7-day blocks, sealed |
//! | `usage_user_blocks` | 7 days | | which blocks are sealed; the writers' lock |
//! | `usage_user_hours` | UTC hour | heavy user, service, model | one user's usage |
//! | `usage_user_hist` | UTC day | heavy user, histogram bucket | one user's percentiles |
//! | `usage_audit` | | time, id | the API's audit trail |
//! | `usage_budgets` | | name | budgets, as JSON (module `alert`) |
//! | `usage_alert_rules` | | name | alert rules, as JSON |
//! | `usage_alert_events` | | rule, number | each time a rule fired or resolved; the last is its state |
//! | `usage_retention` | | one row | how far retention removed records and rollups |
//! | `usage_pending_blocks` | 7 days | | blocks whose rollups wait for a rebuild |
//! | `usage_pending_records` | | none (appended) | records waiting for their block's rebuild |

pub(crate) mod histogram;
pub(crate) mod row;
pub(crate) mod slots;

use slots::{DAY_US, HOUR_US, QUARTER_US, WEEK_US};

/// The sealed 7-day blocks of the per-user sums (see the write path's `seal`).
pub(crate) const BLOCKS: &str = "usage_user_blocks";
/// The heavy users' hourly sums.
pub(crate) const HOURS: &str = "usage_user_hours";
/// The heavy users' daily histograms.
pub(crate) const HIST: &str = "usage_user_hist";
/// The per-slot totals.
pub(crate) const TOTALS: &str = "usage_totals_15m";

/// How far retention has cut the records and the rollups (module `retention`).
pub(crate) const RETENTION: &str = "usage_retention";
/// The 7-day blocks holding records stored without their rollups, whose rollups are still
/// to be rebuilt (module `pending`).
pub(crate) const PENDING_BLOCKS: &str = "usage_pending_blocks";
/// The records stored without their rollups, until their block's rebuild moves them into
/// `usage_records` (module `pending`).
pub(crate) const PENDING_RECORDS: &str = "usage_pending_records";

/// Every table derived from the records, which a rebuild empties and fills anew and
/// retention cuts: its name, the column that numbers its slots, and their width in
/// microseconds (slot `n` starts at `n × width` since the Unix epoch).
pub(crate) const ROLLUP_TABLES: [(&str, &str, i64); 8] = [
    (Rollup::Quarter.table(), "slot", QUARTER_US),
    (Rollup::Day.table(), "slot", DAY_US),
    (UserRollup::Day.table(), "slot", DAY_US),
    (UserRollup::Week.table(), "slot", WEEK_US),
    (TOTALS, "slot", QUARTER_US),
    (HOURS, "slot", HOUR_US),
    (HIST, "slot", DAY_US),
    (BLOCKS, "block", WEEK_US),
];

/// One of the two rollups keyed by slot and dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rollup {
    Quarter,
    Day,
}

impl Rollup {
    pub(crate) const ALL: [Rollup; 2] = [Rollup::Quarter, Rollup::Day];

    pub(crate) const fn table(self) -> &'static str {
        match self {
            Rollup::Quarter => "usage_rollup_15m",
            Rollup::Day => "usage_rollup_1d",
        }
    }

    pub(crate) fn width_us(self) -> i64 {
        match self {
            Rollup::Quarter => QUARTER_US,
            Rollup::Day => DAY_US,
        }
    }
}

/// The per-user rollups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UserRollup {
    Day,
    Week,
}

impl UserRollup {
    pub(crate) const fn table(self) -> &'static str {
        match self {
            UserRollup::Day => "usage_user_1d",
            UserRollup::Week => "usage_user_7d",
        }
    }

    pub(crate) fn width_us(self) -> i64 {
        match self {
            UserRollup::Day => DAY_US,
            UserRollup::Week => WEEK_US,
        }
    }
}

/// The records' columns, in the order of the `table!` below and of
/// [`Row`](row::Row)'s fields, each with its PostgreSQL type (the writer binds one
/// array of that type per column).
pub(crate) const RECORD_COLUMNS: [(&str, &str); 24] = [
    ("id", "bytea"),
    ("started_at_us", "int8"),
    ("method", "text"),
    ("route", "text"),
    ("status", "int2"),
    ("outcome", "text"),
    ("ttfb_us", "int8"),
    ("duration_us", "int8"),
    ("request_bytes", "int8"),
    ("response_bytes", "int8"),
    ("user_id", "text"),
    ("service", "text"),
    ("model", "text"),
    ("provider", "text"),
    ("client", "text"),
    ("country", "text"),
    ("tokens_in", "int8"),
    ("tokens_out", "int8"),
    ("tokens_cached_in", "int8"),
    ("tokens_cache_write_in", "int8"),
    ("cost_micros", "int8"),
    // JSONB on PostgreSQL: bound and read as text.
    ("metadata", "text"),
    ("requested_model", "text"),
    ("unpriced", "int2"),
];

/// The names of [`RECORD_COLUMNS`], comma-separated: the column list of a statement that
/// writes whole records.
pub(crate) static RECORD_NAMES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let names: Vec<&str> = RECORD_COLUMNS.iter().map(|&(name, _)| name).collect();
    names.join(", ")
});

/// The records' columns as PostgreSQL must select them for a [`Row`](row::Row):
/// `metadata` is JSONB there, read back as text.
pub(crate) static PG_COLUMNS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let columns = RECORD_COLUMNS.iter().map(|&(name, _)| match name {
        "metadata" => "metadata::text AS metadata",
        name => name,
    });
    columns.collect::<Vec<_>>().join(", ")
});

/// The key columns of the dimension rollups.
pub(crate) const KEY: [&str; 6] = [
    "slot",
    "service",
    "model",
    "provider",
    "outcome",
    "status_class",
];
/// The histogram columns of the dimension rollups, after the [`MEASURES`].
pub(crate) const HISTOGRAMS: [&str; 2] = ["latency_hist", "ttfb_hist"];

/// The sums every aggregate and rollup row carries, in the order of
/// [`Measures`](super::sql::Measures)' fields. The per-user rollups keep the first six.
pub(crate) const MEASURES: [&str; 11] = [
    "requests",
    "errors",
    "tokens_in",
    "tokens_out",
    "tokens_cached",
    "cost_micros",
    "response_bytes",
    "duration_sum_us",
    "ttfb_sum_us",
    "ttfb_count",
    "unpriced",
];

/// The measures the per-user rollups keep: the first six.
pub(crate) const USER_MEASURES: &[&str] = MEASURES.split_at(6).0;

/// Each measure of [`MEASURES`] as an expression over one raw row's columns.
pub(crate) const RAW_MEASURES: [&str; 11] = [
    "1",
    "CASE WHEN outcome <> 'success' THEN 1 ELSE 0 END",
    "tokens_in",
    "tokens_out",
    "tokens_cached_in",
    "COALESCE(cost_micros, 0)",
    "response_bytes",
    "duration_us",
    "COALESCE(ttfb_us, 0)",
    "CASE WHEN ttfb_us IS NULL THEN 0 ELSE 1 END",
    "unpriced",
];

/// The raw columns [`RAW_MEASURES`] read.
pub(crate) const RAW_COLUMNS: &str = "outcome, duration_us, ttfb_us, tokens_in, tokens_out, \
     tokens_cached_in, cost_micros, response_bytes, unpriced";

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
