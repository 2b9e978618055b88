//! SQLite through diesel-async's `SyncConnectionWrapper`, with a bundled libsqlite3.

use std::borrow::Cow;
use std::future::{ready, Future};
use std::task::{Context, Poll, Waker};

use diesel::prelude::*;
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::new_rows;
use super::run::{Body, Job, Readable, Run};
use crate::store::schema::row::Row;
use crate::store::schema::usage_records;
use crate::store::sql::{Dialect, KeyRow, Sql};

pub(crate) type Conn = SyncConnectionWrapper<SqliteConnection>;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("src/store/schema/migrations/sqlite");

/// Rows per INSERT: 24 columns a row stays far under SQLite's 32,766 parameters, and a
/// fixed count lets diesel prepare the statement once and reuse it (a statement built for
/// whatever number of rows a batch has would be parsed anew every time).
const ROWS_PER_STATEMENT: usize = 64;

/// Writers wait this long for the lock instead of failing at once (set before WAL mode,
/// since switching the journal needs the lock too). A 64 MiB page cache keeps the indexes'
/// hot pages in memory: with the default 2 MiB, inserts spend their time re-reading pages.
/// The log is copied back into the database every 16,384 pages (64 MiB) instead of every
/// 1,000: a batch of records out of time order dirties a page per record in every index,
/// and each copy-back wrote them all again; fewer copy-backs write a hot page once for
/// many batches. The log file grows to that size before it is reused.
const SETUP: &str = "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 16384;";

pub(crate) fn pool(path: Option<&str>, size: usize) -> Result<Pool<Conn>, String> {
    // Each connection to `:memory:` is a database of its own: one connection only.
    let (url, size) = match path {
        Some(path) => (path, size),
        None => (":memory:", 1),
    };
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Verified;
    config.custom_setup = Box::new(|url| {
        let url = url.to_owned();
        async move {
            let mut conn = Conn::establish(&url).await?;
            conn.batch_execute(SETUP)
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::<Conn>::new_with_config(url, config);
    Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| e.to_string())
}

/// Runs (or reverts) the embedded migrations on the pool's connection.
pub(crate) async fn migrate(conn: &mut Conn, revert: bool) -> Result<usize, String> {
    conn.spawn_blocking(move |c| {
        let done = if revert {
            c.revert_all_migrations(MIGRATIONS)
        } else {
            c.run_pending_migrations(MIGRATIONS)
        };
        Ok(done.map(|v| v.len()).map_err(|e| e.to_string()))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Runs `job` whole on the blocking thread, in one hop rather than one a statement.
pub(crate) async fn run<J: Job>(conn: &mut Conn, job: J) -> QueryResult<J::Output> {
    conn.spawn_blocking(move |c| now(job.run(c))).await
}

/// The result of a future over the blocking connection, whose statements all finish
/// before they return: polled once, it is ready.
fn now<T>(future: BoxFuture<'_, QueryResult<T>>) -> QueryResult<T> {
    let mut context = Context::from_waker(Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        Poll::Ready(result) => result,
        // Not reached: nothing on this connection waits.
        Poll::Pending => Err(diesel::result::Error::QueryBuilderError(
            "a statement on the SQLite connection did not finish at once".into(),
        )),
    }
}

impl Run for SqliteConnection {
    const DIALECT: Dialect = Dialect::Sqlite;

    fn load<T: Readable>(&mut self, sql: Sql) -> BoxFuture<'_, QueryResult<Vec<T>>> {
        Box::pin(ready(sql.boxed::<Sqlite>().load(self)))
    }

    fn execute(&mut self, sql: Sql) -> BoxFuture<'_, QueryResult<usize>> {
        Box::pin(ready(sql.boxed::<Sqlite>().execute(self)))
    }

    fn ping(&mut self) -> BoxFuture<'_, QueryResult<()>> {
        Box::pin(ready(diesel::connection::SimpleConnection::batch_execute(
            self, "SELECT 1",
        )))
    }

    fn transaction<T: Send + 'static>(
        &mut self,
        body: Body<Self, T>,
    ) -> BoxFuture<'_, QueryResult<T>> {
        // The transaction takes the write lock when it begins, waiting for another writer
        // (the busy timeout): one that reads first and then asks for the lock fails at
        // once with "database is locked" when another connection writes.
        Box::pin(ready(self.immediate_transaction(|c| now(body(c)))))
    }

    fn insert_new<'c, 'r: 'c>(
        &'c mut self,
        rows: &'r [Row],
    ) -> BoxFuture<'c, QueryResult<Cow<'r, [Row]>>> {
        Box::pin(ready(insert_new(self, rows)))
    }
}

fn insert_new<'r>(c: &mut SqliteConnection, rows: &'r [Row]) -> QueryResult<Cow<'r, [Row]>> {
    // SQLite runs one writing transaction at a time: what this finds stored cannot
    // change before the insert.
    let stored: Vec<KeyRow> = new_rows::existing(Dialect::Sqlite, rows, false)
        .boxed()
        .load(c)?;
    let new = new_rows::only_new(rows, &stored);
    for chunk in new.chunks(ROWS_PER_STATEMENT) {
        match <&[Row; ROWS_PER_STATEMENT]>::try_from(chunk) {
            Ok(full) => {
                diesel::insert_or_ignore_into(usage_records::table)
                    .values(full)
                    .execute(c)?;
            }
            // The last, shorter chunk row by row: a reused one-row statement.
            Err(_) => {
                for row in chunk {
                    diesel::insert_or_ignore_into(usage_records::table)
                        .values(std::array::from_ref(row))
                        .execute(c)?;
                }
            }
        }
    }
    Ok(new)
}
