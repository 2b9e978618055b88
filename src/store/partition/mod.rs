//! Partitioned records on PostgreSQL: `usage_records` range-partitioned by start time,
//! a partition a day or a month, so that retention drops partitions instead of deleting
//! rows and queries over a range read only its partitions. The rollups stay as they are.
//!
//! [`DieselStoreBuilder::partition_records`](crate::store::DieselStoreBuilder::partition_records)
//! turns it on. `connect` then makes a plain `usage_records` partitioned, in one
//! transaction: the old table becomes the partition of every time up to the end of the
//! current period (or, empty, goes), a default partition takes what no other holds,
//! and the partitions of the current and the next period are made. Before each batch,
//! the store makes the partitions of the periods its records fall in that have none
//! (moving any of their rows out of the default partition), so history and late
//! records land in partitions of their own too. Upkeep is serialised between processes
//! by an advisory lock; every statement of it is one transaction.

mod ddl;
mod layout;
mod upkeep;

pub(crate) use layout::Partitioned;
pub use layout::Partitions;
