//! PostgreSQL through diesel-async's native connection (tokio-postgres, no libpq).

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use diesel::sql_types::{Array, BigInt, Binary, Nullable, SmallInt, Text};
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};

use crate::store::schema::row::Row;
use crate::store::schema::{PG_COLUMNS, RECORD_COLUMNS};
use crate::store::sql::{Dialect, KeyRow};
use crate::store::write::{apply, detail, Insert};

pub(crate) type Conn = AsyncPgConnection;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("src/store/schema/migrations/postgres");

/// Rows per statement. Each column is bound as one array, so the parameter limit does not
/// apply; this only bounds the size of one message.
const ROWS_PER_STATEMENT: usize = 10_000;

/// One array bound per column, unnested into rows: far fewer parameters and much less
/// parsing than a multi-row `VALUES` list.
static INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let names: Vec<&str> = RECORD_COLUMNS.iter().map(|&(name, _)| name).collect();
    let names = names.join(", ");
    let arrays: Vec<String> = RECORD_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, &(_, kind))| format!("${}::{kind}[]", i + 1))
        .collect();
    let selected = names.replace("metadata", "metadata::jsonb");
    format!(
        "INSERT INTO usage_records ({names}) SELECT {selected} FROM UNNEST({}) AS t({names}) \
         ON CONFLICT DO NOTHING RETURNING started_at_us, id",
        arrays.join(", ")
    )
});

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

pub(crate) async fn run_migrations(url: &str, revert: bool) -> Result<usize, String> {
    super::native::run_migrations::<Conn>(url, MIGRATIONS, revert).await
}

/// A pooled connection, and the records a user needs in a block for detail rows.
pub(crate) struct Writer(pub(crate) Object<Conn>, pub(crate) i64);

#[async_trait]
impl Insert for Writer {
    async fn insert(&mut self, rows: Arc<[Row]>) -> diesel::QueryResult<()> {
        let sealed = self
            .0
            .transaction::<_, diesel::result::Error, _>(async |conn| {
                // RETURNING names exactly the rows this insert added, even when another
                // transaction writes the same records at the same time.
                let mut added = Vec::with_capacity(rows.len());
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    added.extend(insert_chunk(conn, chunk).await?);
                }
                if added.len() == rows.len() {
                    // Every row was new, and so none was there twice.
                    return apply::maintain_rollups(conn, Dialect::Postgres, &rows).await;
                }
                let mut added: HashSet<(i64, &[u8])> = added
                    .iter()
                    .map(|k| (k.started_at_us, k.id.as_slice()))
                    .collect();
                // Taken out as found: a record the batch holds twice was added once.
                let new: Vec<Row> = rows
                    .iter()
                    .filter(|r| added.remove(&(r.started_at_us, r.id.as_slice())))
                    .cloned()
                    .collect();
                apply::maintain_rollups(conn, Dialect::Postgres, &new).await
            })
            .await?;
        let built =
            apply::build_details(&mut *self.0, Dialect::Postgres, &sealed, self.1, true).await;
        detail::report(built);
        Ok(())
    }

    async fn ping(&mut self) -> bool {
        self.0.batch_execute("SELECT 1").await.is_ok()
    }
}

async fn insert_chunk(conn: &mut Conn, rows: &[Row]) -> diesel::QueryResult<Vec<KeyRow>> {
    fn column<T>(rows: &[Row], f: impl Fn(&Row) -> T) -> Vec<T> {
        rows.iter().map(f).collect()
    }
    diesel::sql_query(INSERT.as_str())
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
        .load(conn)
        .await
}

pub(crate) async fn recent(conn: &mut Conn, limit: i64) -> diesel::QueryResult<Vec<Row>> {
    diesel::sql_query(format!(
        "SELECT {} FROM usage_records ORDER BY started_at_us DESC, id DESC LIMIT $1",
        *PG_COLUMNS
    ))
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

pub(crate) async fn count(conn: &mut Conn) -> diesel::QueryResult<i64> {
    use diesel::QueryDsl;
    let query = crate::store::schema::usage_records::table.count();
    diesel_async::RunQueryDsl::get_result(query, conn).await
}
