//! Records stored without their rollups, for a rebuild of each 7-day block they fall in
//! once, instead of a rollup row per record: how a bulk import writes history spread
//! thin over time, and how a store with [`defer_late_records`] writes batches of late
//! records. The blocks are listed in `usage_pending_blocks` in the transaction that
//! stores the records, and taken off in the one that rebuilds their rollups, so a crash
//! leaves a list that the next [`DieselStore::settle`] (an import, a `connect`) finishes.
//!
//! [`defer_late_records`]: crate::store::DieselStoreBuilder::defer_late_records

mod deferral;
mod raw;

pub(crate) use deferral::Deferral;

use raw::RawRows;

use crate::store::schema::row::Row;
use crate::store::schema::slots::{QUARTER_US, WEEK_US};
use crate::store::schema::PENDING_BLOCKS;
use crate::store::sql::{Count, Sql};
use crate::store::write::rebuild::RebuildBlock;
use crate::store::{DieselStore, StoreError};

impl DieselStore {
    /// Stores `rows` without their rollups, listing their blocks for
    /// [`settle`](Self::settle).
    pub(crate) async fn store_raw(&self, rows: Vec<Row>) -> Result<(), StoreError> {
        self.ensure_partitions(rows.iter().map(|row| row.started_at_us))
            .await;
        let starts: Vec<i64> = rows.iter().map(|row| row.started_at_us).collect();
        let stored = self.run(RawRows { rows: rows.into() }).await;
        // Answers read from the records themselves change already.
        self.note_stored(starts, stored.is_ok()).await;
        stored
    }

    /// Rebuilds the rollups of every block that holds records stored without them (by a
    /// bulk import, or deferred by
    /// [`defer_late_records`](super::DieselStoreBuilder::defer_late_records)), oldest
    /// first, each in a transaction of its own; returns the records read. A store that
    /// defers late records settles by itself once they stop coming; this is for when the
    /// answers must count them now. `connect` settles what a process that stopped left.
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
            read += self.run(RebuildBlock { block, detail_min }).await?;
            // Every answer over the block may have been read while its rollups lagged.
            let quarters = (0..WEEK_US / QUARTER_US).map(|q| block * WEEK_US + q * QUARTER_US);
            self.note_stored(quarters, true).await;
        }
        Ok(read)
    }
}
