//! Bulk writing for imports: a batch's records are stored without touching the rollups,
//! and their 7-day blocks are listed in `usage_import_weeks` in the same transaction;
//! once the input is read, each listed block's rollups are rebuilt once from its records,
//! in time order. History in any order then costs about what records in time order cost,
//! and a crash leaves a list the next import, or the next `connect`, finishes.

use std::collections::BTreeSet;
use std::sync::Arc;

use diesel::QueryResult;
use futures_util::future::BoxFuture;

use crate::store::backend::run::{Job, Run};
use crate::store::schema::row::Row;
use crate::store::schema::slots::{QUARTER_US, WEEK_US};
use crate::store::schema::IMPORT_WEEKS;
use crate::store::sql::{Count, Sql};
use crate::store::write::rebuild::RebuildWeek;
use crate::store::{DieselStore, StoreError};

/// Stores rows that are not stored yet, and lists their blocks, in one transaction.
struct RawRows {
    rows: Arc<[Row]>,
}

impl Job for RawRows {
    type Output = ();

    fn run<C: Run>(self, conn: &mut C) -> BoxFuture<'_, QueryResult<()>> {
        conn.transaction(Box::new(move |conn: &mut C| {
            Box::pin(async move {
                let weeks: BTreeSet<i64> = self
                    .rows
                    .iter()
                    .map(|r| r.started_at_us.div_euclid(WEEK_US))
                    .collect();
                if weeks.is_empty() {
                    return Ok(());
                }
                let mut listed = Sql::new(C::DIALECT);
                listed.insert_ignoring(IMPORT_WEEKS).push(" (week) VALUES ");
                listed.list(weeks, ", ", |sql, week| {
                    sql.push("(").int(week).push(")");
                });
                listed.or_ignore();
                conn.execute(listed).await?;
                conn.insert_new(&self.rows).await?;
                Ok(())
            })
        }))
    }
}

impl DieselStore {
    /// Stores `rows` without their rollups, listing their blocks for
    /// [`finish_import`](Self::finish_import).
    pub(super) async fn store_raw(&self, rows: Vec<Row>) -> Result<(), StoreError> {
        self.ensure_partitions(rows.iter().map(|row| row.started_at_us))
            .await;
        let starts: Vec<i64> = rows.iter().map(|row| row.started_at_us).collect();
        let stored = self.run(RawRows { rows: rows.into() }).await;
        // Answers read from the records themselves change already.
        self.note_stored(starts, stored.is_ok()).await;
        stored
    }

    /// Rebuilds the rollups of every block a bulk import listed, oldest first, each in a
    /// transaction of its own that also takes it off the list; returns the records read.
    pub(crate) async fn finish_import(&self) -> Result<u64, StoreError> {
        let mut sql = Sql::new(self.dialect());
        sql.push("SELECT week AS n FROM ")
            .push(IMPORT_WEEKS)
            .push(" ORDER BY week");
        let weeks: Vec<Count> = self.load(sql).await?;
        let detail_min = self.inner.limits.detail_min_records;
        let mut read = 0;
        for week in &weeks {
            let week = week.n;
            read += self.run(RebuildWeek { week, detail_min }).await?;
            // Every answer over the block may have been read while its rollups lagged.
            let quarters = (0..WEEK_US / QUARTER_US).map(|q| week * WEEK_US + q * QUARTER_US);
            self.note_stored(quarters, true).await;
        }
        Ok(read)
    }
}
