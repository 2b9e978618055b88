//! MySQL and MariaDB through diesel-async's native connection (mysql_async, no
//! libmysqlclient).

use std::borrow::Cow;

use diesel::mysql::Mysql;
use diesel::QueryResult;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use futures_util::future::{BoxFuture, FutureExt};

use super::new_rows;
use super::run::{Body, Readable, Run};
use crate::store::schema::row::Row;
use crate::store::schema::usage_records;
use crate::store::sql::{Dialect, KeyRow, Sql};

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

pub(crate) async fn migrate(url: &str, revert: bool) -> Result<usize, String> {
    super::native::run_migrations::<Conn>(url, MIGRATIONS, revert).await
}

impl Run for Conn {
    const DIALECT: Dialect = Dialect::Mysql;

    fn load<T: Readable>(&mut self, sql: Sql) -> BoxFuture<'_, QueryResult<Vec<T>>> {
        RunQueryDsl::load(sql.boxed::<Mysql>(), self).boxed()
    }

    fn execute(&mut self, sql: Sql) -> BoxFuture<'_, QueryResult<usize>> {
        RunQueryDsl::execute(sql.boxed::<Mysql>(), self).boxed()
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
            // A locking read: it waits for a transaction writing the same keys, and keeps
            // others from inserting them until this one ends.
            let locking = new_rows::existing(Dialect::Mysql, rows, true);
            let stored: Vec<KeyRow> = Run::load(self, locking).await?;
            let new = new_rows::only_new(rows, &stored);
            for chunk in new.chunks(ROWS_PER_STATEMENT) {
                diesel::insert_or_ignore_into(usage_records::table)
                    .values(chunk)
                    .execute(self)
                    .await?;
            }
            Ok(new)
        }
        .boxed()
    }
}
