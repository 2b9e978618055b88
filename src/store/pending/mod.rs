//! Records stored pending, without their rollups, for a rebuild of each 7-day block
//! they fall in once, instead of a rollup row per record: how a bulk import writes
//! history spread thin over time, and how a store with [`defer_late_records`] writes the
//! records of a batch spread thin (see [`spread`]). They are appended to
//! `usage_pending_records`, and their blocks listed in `usage_pending_blocks`, in one
//! transaction; a block's settle moves its records into `usage_records` in time order
//! and rebuilds its rollups, in another (see [`settle`]). So a crash leaves a list that
//! the next [`DieselStore::settle`] (an import, a `connect`) finishes. Until then, no
//! answer counts the pending records.
//!
//! [`defer_late_records`]: crate::store::DieselStoreBuilder::defer_late_records

mod deferral;
mod raw;
mod settle;
mod spread;

pub(crate) use deferral::Deferral;
pub(crate) use spread::spread_thin;

use std::sync::Arc;

use raw::RawRows;
use settle::SettleBlock;

use crate::store::schema::row::Row;
use crate::store::schema::slots::{QUARTER_US, WEEK_US};
use crate::store::schema::PENDING_BLOCKS;
use crate::store::sql::{Count, Sql};
use crate::store::{DieselStore, StoreError};

impl DieselStore {
    /// Stores `rows` pending, listing their blocks for [`settle`](Self::settle). No
    /// answer changes until then.
    pub(crate) async fn store_pending(&self, rows: Arc<[Row]>) -> Result<(), StoreError> {
        // The partitions the settle moves them into.
        self.ensure_partitions(rows.iter().map(|row| row.started_at_us))
            .await;
        self.run(RawRows { rows }).await
    }

    /// Settles every block that holds records stored pending (by a bulk import, or
    /// deferred by [`defer_late_records`](super::DieselStoreBuilder::defer_late_records)):
    /// moves its pending records into the records and rebuilds its rollups from them,
    /// oldest block first, each in a transaction of its own; returns the records read. A
    /// store that defers records settles by itself once they stop coming; this is for
    /// when the answers must count them now. `connect` settles what a process that
    /// stopped left.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_usage::store::DieselStore;
    ///
    /// let store = DieselStore::connect("sqlite::memory:").await?;
    /// assert_eq!(store.settle().await?, 0); // nothing pending
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// When the database fails; the blocks not rebuilt stay listed.
    pub async fn settle(&self) -> Result<u64, StoreError> {
        let mut sql = Sql::new(self.dialect());
        sql.push("SELECT block AS n FROM ")
            .push(PENDING_BLOCKS)
            .push(" ORDER BY block");
        let blocks: Vec<Count> = self.load(sql).await?;
        let detail_min = self.inner.limits.detail_min_records;
        let mut read = 0;
        for block in &blocks {
            let block = block.n;
            read += self.run(SettleBlock { block, detail_min }).await?;
            // Every answer over the block changes.
            let quarters = (0..WEEK_US / QUARTER_US).map(|q| block * WEEK_US + q * QUARTER_US);
            self.note_stored(quarters, true).await;
        }
        Ok(read)
    }
}
