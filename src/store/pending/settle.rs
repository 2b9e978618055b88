//! One pending block settled: its pending records moved into `usage_records` in time
//! order, and its rollups recomputed from its records, in one transaction that takes
//! the block off `usage_pending_blocks`.

use diesel::QueryResult;
use futures_util::future::BoxFuture;

use crate::store::backend::run::{Job, Run};
use crate::store::schema::slots::WEEK_US;
use crate::store::schema::{PENDING_BLOCKS, PENDING_RECORDS, RECORD_NAMES};
use crate::store::sql::{Count, Dialect, Sql};
use crate::store::write::rebuild::{keep_writers_out, raw_horizon, replay};

/// Settles one 7-day block of the per-user sums (the unit every rollup's slots divide
/// into); the output is the number of records read.
pub(super) struct SettleBlock {
    pub(super) block: i64,
    /// The records a user needs in a block for detail rows.
    pub(super) detail_min: i64,
}

impl Job for SettleBlock {
    type Output = u64;

    fn run<C: Run>(self, conn: &mut C) -> BoxFuture<'_, QueryResult<u64>> {
        conn.transaction(Box::new(move |conn: &mut C| {
            Box::pin(async move {
                let (from, to) = (self.block * WEEK_US, (self.block + 1) * WEEK_US);
                // Writers first, then the list: a writer that stored records here
                // before these locks has listed the block by now (it lists after it
                // stores), and one that stores after them waits, and lists the block
                // again.
                keep_writers_out(conn, Some(from), Some(to)).await?;
                keep_pending_writers_out(conn, self.block).await?;
                let mut done = Sql::new(C::DIALECT);
                done.push("DELETE FROM ")
                    .push(PENDING_BLOCKS)
                    .push(" WHERE block = ")
                    .int(self.block);
                if conn.execute(done).await? == 0 {
                    // Another process (its own import, or its connect) took the block
                    // off the list and settled it after this one read the list.
                    return Ok(0);
                }
                // A block past the records' horizon keeps the sums of records retention
                // removed: emptying its rollups would lose them. Its pending records are
                // older than the records kept, and go as retention's would have.
                // (Retention settles before it cuts; this covers records stored pending
                // between the two.)
                if raw_horizon(conn).await?.is_some_and(|before| from < before) {
                    conn.execute(pending_of(C::DIALECT, "DELETE", self.block))
                        .await?;
                    return Ok(0);
                }
                move_pending(conn, self.block).await?;
                replay(conn, Some(from), Some(to), self.detail_min).await
            })
        }))
    }
}

/// Keeps other transactions from adding pending records to `block` until this one
/// ends, so that the move and the delete after it see the same rows. SQLite needs
/// nothing: the transaction's first write holds every other writer off.
async fn keep_pending_writers_out<C: Run>(conn: &mut C, block: i64) -> QueryResult<()> {
    match C::DIALECT {
        Dialect::Sqlite => {}
        Dialect::Postgres => {
            let mut sql = Sql::new(C::DIALECT);
            sql.push("LOCK TABLE ")
                .push(PENDING_RECORDS)
                .push(" IN SHARE MODE");
            conn.execute(sql).await?;
        }
        // The locking read's next-key locks keep inserts out of the block's range of
        // the block index.
        Dialect::Mysql => {
            let mut sql = pending_of(C::DIALECT, "SELECT COUNT(*) AS n", block);
            sql.push(" LOCK IN SHARE MODE");
            conn.load::<Count>(sql).await?;
        }
    }
    Ok(())
}

/// Moves `block`'s pending records into `usage_records` in time order, which writes
/// the key and the indexes as records in time order do and leaves the rows of a time in
/// neighbouring pages for the replay; a record stored already stays as it is.
async fn move_pending<C: Run>(conn: &mut C, block: i64) -> QueryResult<()> {
    let names = RECORD_NAMES.as_str();
    let mut sql = Sql::new(C::DIALECT);
    sql.insert_ignoring("usage_records")
        .push(" (")
        .push(names)
        .push(") SELECT ")
        .push(names)
        .push(" FROM ")
        .push(PENDING_RECORDS)
        .push(" WHERE block = ")
        .int(block)
        .push(" ORDER BY started_at_us, id");
    sql.or_ignore();
    conn.execute(sql).await?;
    conn.execute(pending_of(C::DIALECT, "DELETE", block))
        .await?;
    Ok(())
}

/// `verb FROM usage_pending_records WHERE block = block`.
fn pending_of(dialect: Dialect, verb: &str, block: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push(verb)
        .push(" FROM ")
        .push(PENDING_RECORDS)
        .push(" WHERE block = ")
        .int(block);
    sql
}
