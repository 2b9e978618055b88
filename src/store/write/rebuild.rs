//! The rollups recomputed from the stored records: what a migration that creates them
//! over existing records, or a hand edit of `usage_records`, needs. Only the time after
//! the records' retention horizon is recomputed: before it, the records are gone and
//! the rollups are all that is left.

use diesel::QueryResult;
use futures_util::future::BoxFuture;

use super::apply;
use crate::store::backend::run::{Job, Run};
use crate::store::records;
use crate::store::retention::cut::{self, Horizons};
use crate::store::schema::{self, row::Row};
use crate::store::sql::Sql;

/// Empties the rollup tables (after the records' horizon) and replays the records into
/// them, page by page, in one transaction; the output is the number of records read.
pub(crate) struct Rebuild {
    /// The records a user needs in a block for detail rows.
    pub(crate) detail_min: i64,
}

impl Job for Rebuild {
    type Output = u64;

    fn run<C: Run>(self, conn: &mut C) -> BoxFuture<'_, QueryResult<u64>> {
        conn.transaction(Box::new(move |conn: &mut C| {
            Box::pin(async move {
                // Before the records' horizon, the rollups hold the sums of records
                // retention removed: they stay, and the replay starts there (every id
                // is longer than the empty one).
                let horizons: Vec<Horizons> = conn.load(cut::horizons(C::DIALECT)).await?;
                let from = horizons.first().and_then(|h| h.raw_before_us);
                for (table, column, width) in schema::ROLLUP_TABLES {
                    let sql = match from {
                        Some(from) => cut::delete_slots(
                            C::DIALECT,
                            table,
                            column,
                            ">=",
                            from.div_euclid(width),
                        ),
                        None => {
                            let mut sql = Sql::new(C::DIALECT);
                            sql.push("DELETE FROM ").push(table);
                            sql
                        }
                    };
                    conn.execute(sql).await?;
                }
                let mut after: Option<(i64, Vec<u8>)> = from.map(|from| (from, Vec::new()));
                let mut read = 0u64;
                loop {
                    let sql = records::page_after(C::DIALECT, after.as_ref());
                    let rows: Vec<Row> = conn.load(sql).await?;
                    let Some(last) = rows.last() else { break };
                    after = Some((last.started_at_us, last.id.clone()));
                    read += rows.len() as u64;
                    let sealed = apply::maintain_rollups(conn, &rows).await?;
                    apply::build_details(conn, sealed, self.detail_min, false).await?;
                }
                Ok(read)
            })
        }))
    }
}
