//! MySQL and MariaDB through diesel-async's native connection (mysql_async, no
//! libmysqlclient).

use std::sync::Arc;

use async_trait::async_trait;
use diesel::prelude::*;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};

use crate::store::schema::row::Row;
use crate::store::schema::usage_records;
use crate::store::sql::{Dialect, KeyRow};
use crate::store::write::{apply, detail, steps, Insert};

pub(crate) type Conn = AsyncMysqlConnection;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("src/store/schema/migrations/mysql");

/// MySQL allows 65,535 bound parameters per statement; 24 columns a row.
const ROWS_PER_STATEMENT: usize = 2_000;

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
    async fn insert(&mut self, rows: Arc<[Row]>) -> QueryResult<()> {
        let sealed = self
            .0
            .transaction::<_, diesel::result::Error, _>(async |conn| {
                // A locking read: it waits for a transaction writing the same keys, and
                // keeps others from inserting them until this one ends.
                let sql = steps::existing(Dialect::Mysql, &rows, true);
                let stored: Vec<KeyRow> = super::exec::load(conn, sql).await?;
                let stored: Vec<_> = stored
                    .into_iter()
                    .map(|k| (k.started_at_us, k.id))
                    .collect();
                let new = steps::only_new(&rows, &stored);
                for chunk in new.chunks(ROWS_PER_STATEMENT) {
                    diesel::insert_or_ignore_into(usage_records::table)
                        .values(chunk)
                        .execute(conn)
                        .await?;
                }
                apply::maintain_rollups(conn, Dialect::Mysql, &new).await
            })
            .await?;
        let built = apply::build_details(&mut *self.0, Dialect::Mysql, &sealed, self.1, true).await;
        detail::report(built);
        Ok(())
    }

    async fn ping(&mut self) -> bool {
        self.0.batch_execute("SELECT 1").await.is_ok()
    }
}

pub(crate) async fn recent(conn: &mut Conn, limit: i64) -> QueryResult<Vec<Row>> {
    usage_records::table
        .order((
            usage_records::started_at_us.desc(),
            usage_records::id.desc(),
        ))
        .limit(limit)
        .load::<Row>(conn)
        .await
}

pub(crate) async fn count(conn: &mut Conn) -> QueryResult<i64> {
    usage_records::table.count().get_result(conn).await
}
