//! Running the write path's statements on a backend's async connection: the rollup
//! steps of a batch in its transaction, and the detail rows of the blocks it sealed.

use diesel::backend::Backend;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::serialize::ToSql;
use diesel::sql_types::{Binary, HasSqlType, Text};
use diesel::QueryResult;
use diesel_async::methods::{ExecuteDsl, LoadQuery};
use diesel_async::AsyncConnection;
use futures_util::future::{BoxFuture, FutureExt};

use super::cells::{upsert, Stored};
use super::seal::{self, Block};
use super::steps::{steps, Step, ROWS_PER_STEP};
use crate::store::backend::exec::{corrupt, execute, load};
use crate::store::schema::row::Row;
use crate::store::sql::Dialect;

/// Brings the rollups up to date with `new`, the rows the batch inserted, on the
/// transaction's connection; returns the blocks it sealed, whose detail rows
/// [`build_details`] builds once the transaction committed.
pub(crate) fn maintain_rollups<'a, C>(
    conn: &'a mut C,
    dialect: Dialect,
    new: &'a [Row],
) -> BoxFuture<'a, QueryResult<Vec<i64>>>
where
    C: AsyncConnection,
    C::Backend: Backend + HasSqlType<Text> + HasSqlType<Binary> + 'static,
    String: ToSql<Text, C::Backend>,
    Vec<u8>: ToSql<Binary, C::Backend>,
    BoxedSqlQuery<'static, C::Backend, SqlQuery>:
        ExecuteDsl<C> + LoadQuery<'static, C, Stored> + LoadQuery<'static, C, Block>,
{
    async move {
        let mut sealed = Vec::new();
        for new in new.chunks(ROWS_PER_STEP) {
            for step in steps(dialect, new) {
                match step {
                    Step::Execute(sql) => {
                        execute(conn, sql).await?;
                    }
                    Step::Select(rollup, sql, cells) => {
                        let stored = load(conn, sql).await?;
                        let sql = upsert(dialect, rollup, cells, stored).map_err(corrupt)?;
                        execute(conn, sql).await?;
                    }
                    Step::Blocks(sql) => {
                        let locked = load(conn, sql).await?;
                        for sql in seal::statements(dialect, new, &locked) {
                            execute(conn, sql).await?;
                        }
                        sealed.extend(seal::sealing(new, &locked));
                    }
                }
            }
        }
        sealed.sort_unstable();
        sealed.dedup();
        Ok(sealed)
    }
    .boxed()
}

/// Builds the per-user detail rows of the `sealed` blocks, each in a transaction of its
/// own (see [`detail::build`](super::detail::build)), for users with at least
/// `min` records in it. With `own_transactions` false, the statements run in the
/// caller's transaction.
pub(crate) fn build_details<'a, C>(
    conn: &'a mut C,
    dialect: Dialect,
    sealed: &'a [i64],
    min: i64,
    own_transactions: bool,
) -> BoxFuture<'a, QueryResult<()>>
where
    C: AsyncConnection,
    C::Backend: Backend + HasSqlType<Text> + HasSqlType<Binary> + 'static,
    String: ToSql<Text, C::Backend>,
    Vec<u8>: ToSql<Binary, C::Backend>,
    BoxedSqlQuery<'static, C::Backend, SqlQuery>: ExecuteDsl<C>,
{
    async move {
        if sealed.is_empty() {
            return Ok(());
        }
        let buckets = crate::query::lower_bounds();
        for &block in sealed {
            let statements = super::detail::build(dialect, block, min, &buckets);
            if own_transactions {
                conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                    for sql in statements {
                        execute(conn, sql).await?;
                    }
                    Ok(())
                })
                .await?;
            } else {
                for sql in statements {
                    execute(conn, sql).await?;
                }
            }
        }
        Ok(())
    }
    .boxed()
}
