//! Running a hand-built [`Sql`] statement on any backend's async connection.

use diesel::backend::Backend;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::serialize::ToSql;
use diesel::sql_types::{Binary, HasSqlType, Text};
use diesel::QueryResult;
use diesel_async::methods::{ExecuteDsl, LoadQuery};
use diesel_async::AsyncConnection;
use futures_util::future::{BoxFuture, FutureExt};

use crate::store::sql::{Dialect, Sql};

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
    dialect: Dialect,
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
    if dialect != Dialect::Postgres {
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

/// A stored value the crate cannot read, as a query error.
pub(crate) fn corrupt(what: String) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(what.into())
}
