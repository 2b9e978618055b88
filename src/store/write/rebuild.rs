//! The rollups recomputed from the stored records: all of them (what a migration that
//! creates them over existing records, or a hand edit of `usage_records`, needs), or a
//! range's (one 7-day block's, for module `pending`). Only the time after the records'
//! retention horizon is recomputed: before it, the records are gone and the rollups are
//! all that is left.

use diesel::QueryResult;
use futures_util::future::BoxFuture;

use super::apply;
use crate::store::backend::run::{Job, Run};
use crate::store::records;
use crate::store::retention::cut::{self, Horizons};
use crate::store::schema::{self, row::Row};
use crate::store::sql::{Count, Dialect, Sql};

/// Empties the rollup tables (after the records' horizon) and replays the records into
/// them, in one transaction; the output is the number of records read.
pub(crate) struct Rebuild {
    /// The records a user needs in a block for detail rows.
    pub(crate) detail_min: i64,
}

impl Job for Rebuild {
    type Output = u64;

    fn run<C: Run>(self, conn: &mut C) -> BoxFuture<'_, QueryResult<u64>> {
        conn.transaction(Box::new(move |conn: &mut C| {
            Box::pin(async move {
                keep_writers_out(conn, None, None).await?;
                // Before the records' horizon, the rollups hold the sums of records
                // retention removed: they stay, and the replay starts there.
                let from = raw_horizon(conn).await?;
                replay(conn, from, None, self.detail_min).await
            })
        }))
    }
}

/// Where the records start since retention cut them, if it did.
pub(crate) async fn raw_horizon<C: Run>(conn: &mut C) -> QueryResult<Option<i64>> {
    let horizons: Vec<Horizons> = conn.load(cut::horizons(C::DIALECT)).await?;
    Ok(horizons.first().and_then(|h| h.raw_before_us))
}

/// Empties every rollup's slots in `[from, to)` (unbounded where `None`; both at block
/// starts) and replays the records of that time into them, page by page in time order,
/// once [`keep_writers_out`] holds the writers of that time.
pub(crate) async fn replay<C: Run>(
    conn: &mut C,
    from: Option<i64>,
    to: Option<i64>,
    detail_min: i64,
) -> QueryResult<u64> {
    for (table, column, width) in schema::ROLLUP_TABLES {
        let mut sql = Sql::new(C::DIALECT);
        sql.push("DELETE FROM ").push(table).push(" WHERE 1 = 1");
        if let Some(from) = from {
            sql.push(" AND ")
                .push(column)
                .push(" >= ")
                .int(from.div_euclid(width));
        }
        if let Some(to) = to {
            sql.push(" AND ")
                .push(column)
                .push(" < ")
                .int(to.div_euclid(width));
        }
        conn.execute(sql).await?;
    }
    // Every id is longer than the empty one: the first page starts at `from`.
    let mut after: Option<(i64, Vec<u8>)> = from.map(|from| (from, Vec::new()));
    let mut read = 0u64;
    loop {
        let sql = records::page_after(C::DIALECT, after.as_ref(), to);
        let rows: Vec<Row> = conn.load(sql).await?;
        let Some(last) = rows.last() else { break };
        after = Some((last.started_at_us, last.id.clone()));
        read += rows.len() as u64;
        let sealed = apply::maintain_rollups(conn, &rows).await?;
        apply::build_details(conn, sealed, detail_min, false).await?;
    }
    Ok(read)
}

/// Keeps other transactions from storing records in `[from, to)` until this one ends,
/// so that no record is both replayed here and added by its own writer. SQLite needs
/// nothing: the transaction's first write holds every other writer off.
///
/// It comes before the transaction's first plain read: on MySQL that read fixes the
/// snapshot the replay reads, which must hold the records of the writers waited for.
pub(crate) async fn keep_writers_out<C: Run>(
    conn: &mut C,
    from: Option<i64>,
    to: Option<i64>,
) -> QueryResult<()> {
    let mut sql = Sql::new(C::DIALECT);
    match C::DIALECT {
        Dialect::Sqlite => {}
        // The table's SHARE lock waits for the writers under way and holds new ones;
        // readers go on.
        Dialect::Postgres => {
            sql.push("LOCK TABLE usage_records IN SHARE MODE");
            conn.execute(sql).await?;
        }
        // A locking read of the range takes its next-key locks: inserts into the range
        // wait, other times are free.
        Dialect::Mysql => {
            sql.push("SELECT COUNT(*) AS n FROM usage_records WHERE 1 = 1");
            if let Some(from) = from {
                sql.push(" AND started_at_us >= ").int(from);
            }
            if let Some(to) = to {
                sql.push(" AND started_at_us < ").int(to);
            }
            sql.push(" LOCK IN SHARE MODE");
            conn.load::<Count>(sql).await?;
        }
    }
    Ok(())
}
