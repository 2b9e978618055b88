//! PostgreSQL through diesel-async's native connection (tokio-postgres, no libpq).

use std::borrow::Cow;

use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{Array, BigInt, Binary, Nullable, SmallInt, Text};
use diesel::QueryResult;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use futures_util::future::{BoxFuture, FutureExt};

use super::new_rows;
use super::run::{Body, Readable, Run};
use crate::store::schema::row::Row;
use crate::store::schema::slots::WEEK_US;
use crate::store::schema::{PENDING_RECORDS, RECORD_COLUMNS, RECORD_NAMES};
use crate::store::sql::{Dialect, KeyRow, Sql};

pub(crate) type Conn = AsyncPgConnection;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("src/store/schema/migrations/postgres");

/// Rows per statement. Each column is bound as one array, so the parameter limit does not
/// apply; this only bounds the size of one message.
const ROWS_PER_STATEMENT: usize = 10_000;

/// One array bound per column, unnested into rows: far fewer parameters and much less
/// parsing than a multi-row `VALUES` list.
static INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    unnest_insert(
        "usage_records",
        "",
        " ON CONFLICT DO NOTHING RETURNING started_at_us, id",
    )
});

/// The same for `usage_pending_records`, with each row's block bound last.
static STAGE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| unnest_insert(PENDING_RECORDS, "block", ""));

/// `INSERT INTO table` of the records' columns, bound as arrays in the order of
/// [`RECORD_COLUMNS`], and of the BIGINT column `extra` (if not empty) bound after them;
/// `tail` ends the statement.
fn unnest_insert(table: &str, extra: &str, tail: &str) -> String {
    let mut names = RECORD_NAMES.clone();
    let mut arrays: Vec<String> = RECORD_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, &(_, kind))| format!("${}::{kind}[]", i + 1))
        .collect();
    if !extra.is_empty() {
        names = format!("{names}, {extra}");
        arrays.push(format!("${}::int8[]", arrays.len() + 1));
    }
    let selected = names.replace("metadata", "metadata::jsonb");
    format!(
        "INSERT INTO {table} ({names}) SELECT {selected} FROM UNNEST({}) AS t({names}){tail}",
        arrays.join(", ")
    )
}

/// Connections are checked with a query before reuse, so one the server dropped is
/// replaced instead of failing the next batch.
pub(crate) fn pool(url: &str, size: usize) -> Result<Pool<Conn>, String> {
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Verified;
    let manager = AsyncDieselConnectionManager::<Conn>::new_with_config(url, config);
    Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| e.to_string())
}

pub(crate) async fn migrate(url: &str, revert: bool) -> Result<usize, String> {
    super::native::run_migrations::<Conn>(url, MIGRATIONS, revert).await
}

impl Run for Conn {
    const DIALECT: Dialect = Dialect::Postgres;

    fn load<T: Readable>(&mut self, sql: Sql) -> BoxFuture<'_, QueryResult<Vec<T>>> {
        RunQueryDsl::load(sql.boxed::<Pg>(), self).boxed()
    }

    fn load_rollups<T: Readable>(&mut self, sql: Sql) -> BoxFuture<'_, QueryResult<Vec<T>>> {
        // Parallel workers' start-up and merge cost more than a read of tens of thousands
        // of rows (twice the time on a two-core server).
        Run::transaction(
            self,
            Box::new(move |conn: &mut Conn| {
                async move {
                    conn.batch_execute("SET LOCAL max_parallel_workers_per_gather = 0")
                        .await?;
                    Run::load(conn, sql).await
                }
                .boxed()
            }),
        )
    }

    fn execute(&mut self, sql: Sql) -> BoxFuture<'_, QueryResult<usize>> {
        RunQueryDsl::execute(sql.boxed::<Pg>(), self).boxed()
    }

    fn ping(&mut self) -> BoxFuture<'_, QueryResult<()>> {
        self.batch_execute("SELECT 1").boxed()
    }

    fn transaction<T: Send + 'static>(
        &mut self,
        body: Body<Self, T>,
    ) -> BoxFuture<'_, QueryResult<T>> {
        AsyncConnection::transaction(self, async move |conn| body(conn).await).boxed()
    }

    fn insert_new<'c, 'r: 'c>(
        &'c mut self,
        rows: &'r [Row],
    ) -> BoxFuture<'c, QueryResult<Cow<'r, [Row]>>> {
        async move {
            // RETURNING names exactly the rows this insert added, even when another
            // transaction writes the same records at the same time.
            let mut added = Vec::with_capacity(rows.len());
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                added.extend(insert_chunk(self, chunk).await?);
            }
            if added.len() == rows.len() {
                // Every row was new, and so none was there twice.
                return Ok(Cow::Borrowed(rows));
            }
            Ok(new_rows::only_added(rows, &added))
        }
        .boxed()
    }

    fn stage<'c>(&'c mut self, rows: &'c [Row]) -> BoxFuture<'c, QueryResult<()>> {
        async move {
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let blocks: Vec<i64> = chunk
                    .iter()
                    .map(|r| r.started_at_us.div_euclid(WEEK_US))
                    .collect();
                bound(STAGE.as_str(), chunk)
                    .bind::<Array<BigInt>, _>(blocks)
                    .execute(self)
                    .await?;
            }
            Ok(())
        }
        .boxed()
    }
}

async fn insert_chunk(conn: &mut Conn, rows: &[Row]) -> diesel::QueryResult<Vec<KeyRow>> {
    bound(INSERT.as_str(), rows).load(conn).await
}

/// `statement` with the columns of `rows` bound, as arrays in the order of
/// [`RECORD_COLUMNS`].
fn bound(statement: &str, rows: &[Row]) -> BoxedSqlQuery<'static, Pg, SqlQuery> {
    fn column<T>(rows: &[Row], f: impl Fn(&Row) -> T) -> Vec<T> {
        rows.iter().map(f).collect()
    }
    diesel::sql_query(statement)
        .into_boxed()
        .bind::<Array<Binary>, _>(column(rows, |r| r.id.clone()))
        .bind::<Array<BigInt>, _>(column(rows, |r| r.started_at_us))
        .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.method.clone()))
        .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.route.clone()))
        .bind::<Array<Nullable<SmallInt>>, _>(column(rows, |r| r.status))
        .bind::<Array<Text>, _>(column(rows, |r| r.outcome.clone()))
        .bind::<Array<Nullable<BigInt>>, _>(column(rows, |r| r.ttfb_us))
        .bind::<Array<BigInt>, _>(column(rows, |r| r.duration_us))
        .bind::<Array<Nullable<BigInt>>, _>(column(rows, |r| r.request_bytes))
        .bind::<Array<BigInt>, _>(column(rows, |r| r.response_bytes))
        .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.user_id.clone()))
        .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.service.clone()))
        .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.model.clone()))
        .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.provider.clone()))
        .bind::<Array<Text>, _>(column(rows, |r| r.client.clone()))
        .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.country.clone()))
        .bind::<Array<BigInt>, _>(column(rows, |r| r.tokens_in))
        .bind::<Array<BigInt>, _>(column(rows, |r| r.tokens_out))
        .bind::<Array<BigInt>, _>(column(rows, |r| r.tokens_cached_in))
        .bind::<Array<BigInt>, _>(column(rows, |r| r.tokens_cache_write_in))
        .bind::<Array<Nullable<BigInt>>, _>(column(rows, |r| r.cost_micros))
        .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.metadata.clone()))
        .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.requested_model.clone()))
        .bind::<Array<SmallInt>, _>(column(rows, |r| r.unpriced))
}
