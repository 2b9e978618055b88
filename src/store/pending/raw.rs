//! The job that stores records pending and lists their blocks.

use std::collections::BTreeSet;
use std::sync::Arc;

use diesel::QueryResult;
use futures_util::future::BoxFuture;

use crate::store::backend::run::{Job, Run};
use crate::store::schema::row::Row;
use crate::store::schema::slots::WEEK_US;
use crate::store::schema::PENDING_BLOCKS;
use crate::store::sql::Sql;

/// Appends the rows to `usage_pending_records` and lists their blocks in
/// `usage_pending_blocks`, in one transaction.
pub(super) struct RawRows {
    pub(super) rows: Arc<[Row]>,
}

impl Job for RawRows {
    type Output = ();

    fn run<C: Run>(self, conn: &mut C) -> BoxFuture<'_, QueryResult<()>> {
        conn.transaction(Box::new(move |conn: &mut C| {
            Box::pin(async move {
                let blocks: BTreeSet<i64> = self
                    .rows
                    .iter()
                    .map(|r| r.started_at_us.div_euclid(WEEK_US))
                    .collect();
                if blocks.is_empty() {
                    return Ok(());
                }
                // The records first: a settle of these blocks that locked out writers
                // before this insert then ends before the blocks are listed again, and
                // one that did not waits for this transaction and finds them listed.
                conn.stage(&self.rows).await?;
                let mut listed = Sql::new(C::DIALECT);
                listed
                    .insert_ignoring(PENDING_BLOCKS)
                    .push(" (block) VALUES ");
                listed.list(blocks, ", ", |sql, block| {
                    sql.push("(").int(block).push(")");
                });
                listed.or_ignore();
                conn.execute(listed).await?;
                Ok(())
            })
        }))
    }
}
