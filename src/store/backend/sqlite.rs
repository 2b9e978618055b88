//! SQLite through diesel-async's `SyncConnectionWrapper`, with a bundled libsqlite3.

use std::sync::Arc;

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use futures_util::FutureExt;

use crate::store::schema::row::Row;
use crate::store::schema::usage_records;
use crate::store::sql::{Dialect, KeyRow};
use crate::store::write::steps::{self, Step, ROWS_PER_STEP};
use crate::store::write::{cells, detail, seal, Insert};

pub(crate) type Conn = SyncConnectionWrapper<SqliteConnection>;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("src/store/schema/migrations/sqlite");

/// Rows per INSERT: 24 columns a row stays far under SQLite's 32,766 parameters, and a
/// fixed count lets diesel prepare the statement once and reuse it (a statement built for
/// whatever number of rows a batch has would be parsed anew every time).
const ROWS_PER_STATEMENT: usize = 64;

/// Writers wait this long for the lock instead of failing at once (set before WAL mode,
/// since switching the journal needs the lock too). A 64 MiB page cache keeps the indexes'
/// hot pages in memory: with the default 2 MiB, inserts spend their time re-reading pages.
const SETUP: &str = "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536;";

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

pub(crate) async fn run_migrations(conn: &mut Conn) -> Result<usize, String> {
    conn.spawn_blocking(|c| {
        Ok(c.run_pending_migrations(MIGRATIONS)
            .map(|v| v.len())
            .map_err(|e| e.to_string()))
    })
    .await
    .map_err(|e| e.to_string())?
}

pub(crate) async fn revert_migrations(conn: &mut Conn) -> Result<usize, String> {
    conn.spawn_blocking(|c| {
        Ok(c.revert_all_migrations(MIGRATIONS)
            .map(|v| v.len())
            .map_err(|e| e.to_string()))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A pooled connection, ready to insert, and the records a user needs in a block for
/// detail rows.
pub(crate) struct Writer(pub(crate) Object<Conn>, pub(crate) i64);

#[async_trait]
impl Insert for Writer {
    async fn insert(&mut self, rows: Arc<[Row]>) -> QueryResult<()> {
        let detail_min = self.1;
        // The whole batch in one blocking hop, not one per row or statement. The
        // transaction takes the write lock when it begins, waiting for another writer
        // (the busy timeout): a transaction that reads first and then asks for the lock
        // fails at once with "database is locked" when another connection writes.
        self.0
            .spawn_blocking(move |c| {
                let sealed = c.immediate_transaction(|c| {
                    // SQLite runs one writing transaction at a time: what this finds
                    // stored cannot change before the insert.
                    let stored: Vec<KeyRow> = steps::existing(Dialect::Sqlite, &rows, false)
                        .boxed()
                        .load(c)?;
                    let stored: Vec<_> = stored
                        .into_iter()
                        .map(|k| (k.started_at_us, k.id))
                        .collect();
                    let new = steps::only_new(&rows, &stored);
                    insert_rows(c, &new)?;
                    maintain_rollups(c, &new)
                })?;
                detail::report(build_details(c, &sealed, detail_min));
                Ok(())
            })
            .await
    }

    async fn ping(&mut self) -> bool {
        self.0.batch_execute("SELECT 1").await.is_ok()
    }
}

fn insert_rows(c: &mut SqliteConnection, rows: &[Row]) -> QueryResult<()> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
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
    Ok(())
}

/// [`apply::build_details`](crate::store::write::apply::build_details) on the blocking side, each block
/// in a transaction of its own.
fn build_details(c: &mut SqliteConnection, sealed: &[i64], min: i64) -> QueryResult<()> {
    if sealed.is_empty() {
        return Ok(());
    }
    let buckets = crate::query::lower_bounds();
    for &block in sealed {
        c.immediate_transaction(|c| {
            for sql in detail::build(Dialect::Sqlite, block, min, &buckets) {
                sql.boxed().execute(c)?;
            }
            Ok::<_, diesel::result::Error>(())
        })?;
    }
    Ok(())
}

/// [`apply::maintain_rollups`](crate::store::write::apply::maintain_rollups) on the blocking side.
fn maintain_rollups(c: &mut SqliteConnection, new: &[Row]) -> QueryResult<Vec<i64>> {
    let mut sealed = Vec::new();
    for new in new.chunks(ROWS_PER_STEP) {
        for step in steps::steps(Dialect::Sqlite, new) {
            match step {
                Step::Execute(sql) => {
                    sql.boxed().execute(c)?;
                }
                Step::Select(table, sql, cells) => {
                    let stored = sql.boxed().load(c)?;
                    let sql = cells::upsert(Dialect::Sqlite, table, cells, stored)
                        .map_err(super::exec::corrupt)?;
                    sql.boxed().execute(c)?;
                }
                Step::Blocks(sql) => {
                    let locked: Vec<seal::Block> = sql.boxed().load(c)?;
                    for sql in seal::statements(Dialect::Sqlite, new, &locked) {
                        sql.boxed().execute(c)?;
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

pub(crate) async fn recent(conn: &mut Conn, limit: i64) -> QueryResult<Vec<Row>> {
    conn.spawn_blocking(move |c| {
        usage_records::table
            .order((
                usage_records::started_at_us.desc(),
                usage_records::id.desc(),
            ))
            .limit(limit)
            .load::<Row>(c)
    })
    .await
}

pub(crate) async fn count(conn: &mut Conn) -> QueryResult<i64> {
    conn.spawn_blocking(|c| usage_records::table.count().get_result::<i64>(c))
        .await
}
