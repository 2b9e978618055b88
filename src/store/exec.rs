//! Running a hand-built [`Sql`] statement on any backend's async connection.

use diesel::backend::Backend;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::serialize::ToSql;
use diesel::sql_types::{Binary, HasSqlType, Text};
use diesel::QueryResult;
use diesel_async::methods::{ExecuteDsl, LoadQuery};
use diesel_async::AsyncConnection;
use futures_util::future::{BoxFuture, FutureExt};

use super::sql::Sql;

// The futures are boxed: an unboxed one, awaited inside a transaction's async closure,
// trips the compiler's proof that the closure's future is `Send` for every lifetime.

/// Runs a query and reads its rows as `T`.
pub(crate) fn load<C, T>(conn: &mut C, sql: Sql) -> BoxFuture<'_, QueryResult<Vec<T>>>
where
    C: AsyncConnection,
    C::Backend: Backend + HasSqlType<Text> + HasSqlType<Binary> + 'static,
    String: ToSql<Text, C::Backend>,
    Vec<u8>: ToSql<Binary, C::Backend>,
    BoxedSqlQuery<'static, C::Backend, SqlQuery>: LoadQuery<'static, C, T>,
    T: Send + 'static,
{
    diesel_async::RunQueryDsl::load(sql.boxed::<C::Backend>(), conn).boxed()
}

/// [`load`] for a statement over the rollups, which read tens of thousands of rows at
/// most: PostgreSQL is told not to start parallel workers for it, whose start-up and
/// merge cost more than such a read (twice the time on a two-core server).
pub(crate) fn load_rollups<C, T>(
    conn: &mut C,
    dialect: super::sql::Dialect,
    sql: Sql,
) -> BoxFuture<'_, QueryResult<Vec<T>>>
where
    C: AsyncConnection,
    C::Backend: Backend + HasSqlType<Text> + HasSqlType<Binary> + 'static,
    String: ToSql<Text, C::Backend>,
    Vec<u8>: ToSql<Binary, C::Backend>,
    BoxedSqlQuery<'static, C::Backend, SqlQuery>: LoadQuery<'static, C, T>,
    T: Send + 'static,
{
    if dialect != super::sql::Dialect::Postgres {
        return load(conn, sql);
    }
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        conn.batch_execute("SET LOCAL max_parallel_workers_per_gather = 0")
            .await?;
        load(conn, sql).await
    })
    .boxed()
}

/// Runs a statement, returning the number of rows it changed.
pub(crate) fn execute<C>(conn: &mut C, sql: Sql) -> BoxFuture<'_, QueryResult<usize>>
where
    C: AsyncConnection,
    C::Backend: Backend + HasSqlType<Text> + HasSqlType<Binary> + 'static,
    String: ToSql<Text, C::Backend>,
    Vec<u8>: ToSql<Binary, C::Backend>,
    BoxedSqlQuery<'static, C::Backend, SqlQuery>: ExecuteDsl<C>,
{
    diesel_async::RunQueryDsl::execute(sql.boxed::<C::Backend>(), conn).boxed()
}

/// Brings the rollups up to date with `new`, the rows the batch inserted, on the
/// transaction's connection; returns the blocks it sealed, whose detail rows
/// [`build_details`] builds once the transaction committed.
pub(crate) fn maintain_rollups<'a, C>(
    conn: &'a mut C,
    dialect: super::sql::Dialect,
    new: &'a [super::row::Row],
) -> BoxFuture<'a, QueryResult<Vec<i64>>>
where
    C: AsyncConnection,
    C::Backend: Backend + HasSqlType<Text> + HasSqlType<Binary> + 'static,
    String: ToSql<Text, C::Backend>,
    Vec<u8>: ToSql<Binary, C::Backend>,
    BoxedSqlQuery<'static, C::Backend, SqlQuery>: ExecuteDsl<C>
        + LoadQuery<'static, C, super::rollup::Stored>
        + LoadQuery<'static, C, super::seal::Block>,
{
    use super::rollup::{steps, upsert, Step, ROWS_PER_STEP};
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
                        for sql in super::seal::statements(dialect, new, &locked) {
                            execute(conn, sql).await?;
                        }
                        sealed.extend(super::seal::sealing(new, &locked));
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
/// own (see [`user_detail::build`](super::user_detail::build)), for users with at least
/// `min` records in it. With `own_transactions` false, the statements run in the
/// caller's transaction.
pub(crate) fn build_details<'a, C>(
    conn: &'a mut C,
    dialect: super::sql::Dialect,
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
            let statements = super::user_detail::build(dialect, block, min, &buckets);
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

/// A stored value the crate cannot read, as a query error.
pub(crate) fn corrupt(what: String) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(what.into())
}
