//! Retention: old records removed while the rollups keep their sums, and old rollups
//! removed after a horizon of their own.
//!
//! A run first moves the horizons forward in `usage_retention` (never back), then removes
//! what lies before them: whole partitions of the records on partitioned PostgreSQL,
//! the records left in batches of about
//! [`RetentionPolicy::batch_rows`] (each its own statement and transaction, so writes go
//! on between them), rollup rows a 7-day block per statement. Horizons fall on the start
//! of a 7-day block, the unit every rollup divides into, so no rollup row straddles one
//! and a [rebuild](crate::store::DieselStore::rebuild_rollups) replays only the records
//! after the records' horizon, keeping the sums before it. A run that fails part way is
//! finished by the next; two processes running at once remove the same rows once.
//!
//! Before the records' horizon the store answers from its rollups alone (see
//! [`Retained`]).

pub(crate) mod cut;
mod policy;
mod retained;
mod run;

pub use policy::{BadRetentionPolicy, RetentionPolicy};
pub(crate) use retained::Lately;
pub use retained::{Retained, RetentionReport};
