//! Running the write path's statements on any backend's connection: the rollup steps of
//! a batch in its transaction, and the detail rows of the blocks it sealed.

use diesel::QueryResult;
use futures_util::future::BoxFuture;

use super::cells::upsert;
use super::steps::{steps, Step, ROWS_PER_STEP};
use super::{detail, seal};
use crate::store::backend::run::{corrupt, Run};
use crate::store::schema::row::Row;

/// Brings the rollups up to date with `new`, the rows the batch inserted, on the
/// transaction's connection; returns the blocks it sealed, whose detail rows
/// [`build_details`] builds once the transaction committed.
pub(crate) fn maintain_rollups<'a, C: Run>(
    conn: &'a mut C,
    new: &'a [Row],
) -> BoxFuture<'a, QueryResult<Vec<i64>>> {
    Box::pin(async move {
        let dialect = C::DIALECT;
        let mut sealed = Vec::new();
        for new in new.chunks(ROWS_PER_STEP) {
            for step in steps(dialect, new) {
                match step {
                    Step::Execute(sql) => {
                        conn.execute(sql).await?;
                    }
                    Step::Select(rollup, sql, cells) => {
                        let stored = conn.load(sql).await?;
                        let sql = upsert(dialect, rollup, cells, stored).map_err(corrupt)?;
                        conn.execute(sql).await?;
                    }
                    Step::Blocks(sql) => {
                        let locked = conn.load(sql).await?;
                        let late = seal::late(new, &locked);
                        for sql in seal::statements(dialect, new, &locked, &late) {
                            conn.execute(sql).await?;
                        }
                        if let Some(sql) = detail::detailed(dialect, &late) {
                            let marked = conn.load(sql).await?;
                            for sql in detail::add(dialect, &detail::of_detailed(late, &marked)) {
                                conn.execute(sql).await?;
                            }
                        }
                        sealed.extend(seal::sealing(new, &locked));
                    }
                }
            }
        }
        sealed.sort_unstable();
        sealed.dedup();
        Ok(sealed)
    })
}

/// Builds the per-user detail rows of the `sealed` blocks (see
/// [`detail::build`](super::detail::build)) for users with at least `min` records in
/// one. With `own_transactions`, each block in a transaction of its own; without, in the
/// caller's.
pub(crate) fn build_details<C: Run>(
    conn: &mut C,
    sealed: Vec<i64>,
    min: i64,
    own_transactions: bool,
) -> BoxFuture<'_, QueryResult<()>> {
    Box::pin(async move {
        if sealed.is_empty() {
            return Ok(());
        }
        let buckets = crate::query::lower_bounds();
        for block in sealed {
            let statements = super::detail::build(C::DIALECT, block, min, &buckets);
            if own_transactions {
                conn.transaction(Box::new(move |conn: &mut C| {
                    Box::pin(async move {
                        for sql in statements {
                            conn.execute(sql).await?;
                        }
                        Ok(())
                    })
                }))
                .await?;
            } else {
                for sql in statements {
                    conn.execute(sql).await?;
                }
            }
        }
        Ok(())
    })
}
