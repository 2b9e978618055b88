//! [`DieselStore`]: usage records kept in SQLite, PostgreSQL or MySQL/MariaDB.
//!
//! The store is a [`UsageSink`]: hand it to a [`Recorder`](crate::Recorder) and every
//! record ends up in the `usage_records` table.
//!
//! | URL | backend | Cargo feature |
//! |---|---|---|
//! | `sqlite://usage.db`, `sqlite:///abs/path.db`, `sqlite::memory:` | SQLite, bundled: nothing to install | `sqlite` (default) |
//! | `postgres://user:pass@host/db` (or `postgresql://`) | PostgreSQL | `postgres` |
//! | `mysql://user:pass@host/db` (or `mariadb://`) | MySQL, MariaDB | `mysql` |
//!
//! # Writes
//!
//! A batch is written in one transaction, as multi-row statements sized under each
//! backend's parameter limit (on PostgreSQL, one array per column). A record whose key
//! (start time and id) is already stored is skipped, so a batch the recorder retries after
//! a lost answer never counts twice. When the server refuses some rows but answers (a NUL
//! byte in a PostgreSQL string, say), the other rows are written one by one and the
//! refused ones are reported to the recorder as rejected, with the reason. Text longer
//! than a column keeps (see the table below) is cut on a character boundary; the record is
//! kept. A user id is never cut, since a cut id could be another user's: one longer than
//! 256 characters is stored (and looked up) as a noncharacter `U+FFFF`, its first 128
//! characters, `…` and the SHA-256 of the whole id in hex, and so is the rare id that
//! starts with `U+FFFF`.
//!
//! | column | characters kept |
//! |---|---|
//! | method | 16 |
//! | route | 512 |
//! | user | 256 (longer: a digest, as above) |
//! | service, model | 128 |
//! | provider, country | 64 |
//!
//! Times are stored as whole microseconds since the Unix epoch (UTC) in every backend.
//! SQLite runs in WAL mode with a 5 s busy timeout, and writes a batch in one hop to its
//! blocking thread.
//!
//! # Analytics
//!
//! The store answers the questions of the [`query`](crate::query) module:
//! [`metrics`](DieselStore::metrics), [`breakdown`](DieselStore::breakdown) (and
//! `by_service`, `by_model`, `by_provider`, `by_client`, `by_country`),
//! [`time_series`](DieselStore::time_series), [`top_users`](DieselStore::top_users),
//! [`peak_hours`](DieselStore::peak_hours), [`user_usage`](DieselStore::user_usage),
//! [`dashboard`](DieselStore::dashboard), [`export_csv`](DieselStore::export_csv) and
//! [`export_json_lines`](DieselStore::export_json_lines).
//!
//! Writes keep rollup tables in the batch's transaction, for the records the batch
//! really inserted:
//!
//! | table | slot | key |
//! |---|---|---|
//! | `usage_rollup_15m`, `usage_rollup_1d` | 15 minutes, UTC day | service, model, provider, outcome, status class; sums and latency histograms |
//! | `usage_totals_15m` | 15 minutes | none; sums |
//! | `usage_user_1d` | UTC day | user; sums |
//! | `usage_user_7d` | 7 days | user; sums, written once a later block's records arrive |
//!
//! Per-user questions (top users, unique users) read 7-day blocks of the per-user sums
//! and days for the rest; a block may reach past the range when subtracting its days
//! outside reads fewer rows than adding the days inside. A block's sums are written
//! ("sealed") from its days by the first batch with records of a later block; until
//! then its days are read in its place. Once that batch committed, the writer gives
//! the block's heavy users (at least [`DieselStoreBuilder::user_detail_min_records`]
//! records in it) sums per hour, service and model and daily latency histograms of
//! their own, in a transaction of its own, so that
//! [`user_usage`](DieselStore::user_usage) of a heavy user reads those instead of
//! thousands of raw rows for every whole UTC day of a sealed block.
//!
//! A query reads raw rows for the part of its range that does not fill a slot, the
//! rollups for the rest, and raw rows altogether when it filters or groups by what the
//! rollups do not keep (client platform, country; a user, through the user index). The
//! answers are the same either way: a property test checks every query on every backend
//! with and without the rollups ([`DieselStoreBuilder::read_rollups`]) against a plain
//! computation over the records. Fifteen-minute slots serve time series in every zone in
//! use today; for an offset that is not a whole quarter hour the series is read from raw
//! rows by the second.
//!
//! # Layout
//!
//! For those who work on the store (none of these modules is public), one folder a
//! concern; imports run down this table and never back:
//!
//! | module | holds |
//! |---|---|
//! | `read/` | `analytics` (the queries above), `export`, `plan` (a range cut into rollup and raw parts, and the statements reading them), `detail` (reading heavy users' detail rows) |
//! | `write/` | `steps` (a batch's rollup statements, in rounds), `cells` (dimension rollups), `users` (per-user sums), `totals`, `seal` (7-day blocks), `detail` (heavy users' rows), `apply` (running them on a connection) |
//! | `backend/` | `sqlite`, `postgres`, `mysql` (pool, migrations, a batch's insert), `exec` (running a statement on any of them), `url` |
//! | `sql` | the statement builder both paths share, and the row types statements read |
//! | `schema/` | the registry of tables, columns and measures, `slots` (slot widths), `row` (a record as stored), `migrations/<backend>/` |
//!
//! A batch: `write_batch` → `write` (one transaction; rows one by one if the server
//! refuses some) → the backend's writer inserts the rows not yet stored and runs
//! `write::steps` on them (dimension cells, per-user days, blocks, totals) → after the
//! commit, `write::detail` builds the blocks the batch sealed. A query: `read::analytics`
//! → `read::plan` cuts the range into parts → one statement → rows merged into the
//! [`query`](crate::query) types.
//!
//! # Migrations
//!
//! The schema ships inside the crate, one migration set per backend.
//! [`DieselStore::connect`] runs the pending ones;
//! [`DieselStoreBuilder::run_migrations`] turns that off for deployments that migrate
//! separately with [`DieselStore::migrate`].
//!
//! ```
//! use tower_usage::{store::DieselStore, Recorder, UsageRecord};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = DieselStore::connect("sqlite::memory:").await?;
//! let recorder = Recorder::builder(store.clone()).spawn();
//! recorder.record(UsageRecord::builder().user("alice").build())?;
//! recorder.shutdown().await;
//! assert_eq!(store.count().await?, 1);
//! assert_eq!(store.recent(10).await?[0].user.as_deref(), Some("alice"));
//! # Ok(()) }
//! ```

mod backend;
mod error;
mod schema;
mod sql;
mod write;

pub use error::StoreError;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use diesel_async::pooled_connection::deadpool::Pool;

use crate::record::UsageRecord;
use crate::sink::{SinkError, UsageSink};
use backend::exec;
#[cfg(feature = "mysql")]
use backend::mysql;
#[cfg(feature = "postgres")]
use backend::postgres;
#[cfg(feature = "sqlite")]
use backend::sqlite;
use backend::url::{mask, Target};
use schema::row::Row;

/// Usage records in a SQL database, behind one type whatever the backend.
///
/// Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct DieselStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The URL as given, for the migration runner's own connection.
    url: String,
    backend: Backend,
    limits: Limits,
    /// The latency histogram's bucket bounds, for bucketing in SQL; made on first use.
    buckets: std::sync::OnceLock<Vec<i64>>,
}

/// What queries may ask for, how they read, and which users get detail rows.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_range: Duration,
    max_buckets: u64,
    max_limit: usize,
    read_rollups: bool,
    detail_min_records: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_range: Duration::from_secs(3_660 * 86_400),
            max_buckets: 10_000,
            max_limit: 10_000,
            read_rollups: true,
            detail_min_records: write::detail::MIN_RECORDS,
        }
    }
}

impl std::fmt::Debug for DieselStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DieselStore")
            .field("backend", &self.backend_name())
            .field("url", &mask(&self.inner.url))
            .finish()
    }
}

enum Backend {
    #[cfg(feature = "sqlite")]
    Sqlite(Pool<sqlite::Conn>),
    #[cfg(feature = "postgres")]
    Postgres(Pool<postgres::Conn>),
    #[cfg(feature = "mysql")]
    Mysql(Pool<mysql::Conn>),
}

/// Configures a [`DieselStore`]; made by [`DieselStore::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `connect` is awaited"]
pub struct DieselStoreBuilder {
    url: String,
    pool_size: usize,
    run_migrations: bool,
    connect_timeout: Duration,
    limits: Limits,
}

impl DieselStoreBuilder {
    /// The most connections the pool opens (default 8; an in-memory SQLite database always
    /// uses exactly one).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Whether `connect` runs pending migrations (default `true`).
    pub fn run_migrations(mut self, run: bool) -> Self {
        self.run_migrations = run;
        self
    }

    /// How long `connect` may take to reach the server and migrate (default 30 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The longest time range a query may cover (default 3,660 days); longer ones are
    /// refused with [`QueryError::RangeTooLong`](crate::query::QueryError::RangeTooLong).
    pub fn max_range(mut self, range: Duration) -> Self {
        self.limits.max_range = range;
        self
    }

    /// The most buckets a time series may have (default 10,000: over a year of hours).
    pub fn max_buckets(mut self, buckets: u64) -> Self {
        self.limits.max_buckets = buckets;
        self
    }

    /// The largest row limit a breakdown or ranking may ask for (default 10,000).
    pub fn max_limit(mut self, limit: usize) -> Self {
        self.limits.max_limit = limit;
        self
    }

    /// Whether queries read the rollup tables where they can (default `true`). Writes
    /// keep the rollups up to date either way; `false` makes every query read raw rows,
    /// which gives the same answers, slower.
    pub fn read_rollups(mut self, read: bool) -> Self {
        self.limits.read_rollups = read;
        self
    }

    /// How many records a user needs in a 7-day block for
    /// [`user_usage`](DieselStore::user_usage) to read that block from per-user sums
    /// and histograms instead of the user's records (default 1,024). The sums are built
    /// once a later block's records arrive, for the users at or above this number then;
    /// a lower number reads fewer raw rows for more stored rows (about one per record
    /// for a light user). It only decides which users get the rows: the answers are the
    /// same either way, and writers with different numbers can share a database.
    ///
    /// ```
    /// let builder = tower_usage::store::DieselStore::builder("sqlite::memory:")
    ///     .user_detail_min_records(1_000);
    /// # drop(builder);
    /// ```
    pub fn user_detail_min_records(mut self, records: u32) -> Self {
        self.limits.detail_min_records = i64::from(records.max(1));
        self
    }

    /// Opens the pool, checks that the database answers, and runs the migrations unless
    /// told not to.
    pub async fn connect(self) -> Result<DieselStore, StoreError> {
        let url = self.url.clone();
        let backend = backend(&url, self.pool_size)?;
        let store = DieselStore {
            inner: Arc::new(Inner {
                url,
                backend,
                limits: self.limits,
                buckets: std::sync::OnceLock::new(),
            }),
        };
        let ready = async {
            store.check().await?;
            if self.run_migrations {
                store.migrate().await?;
            }
            Ok::<_, StoreError>(())
        };
        match tokio::time::timeout(self.connect_timeout, ready).await {
            Ok(result) => result.map(|()| store),
            Err(_) => Err(StoreError::connect(
                &self.url,
                format!("no answer within {:?}", self.connect_timeout),
            )),
        }
    }
}

fn backend(url: &str, pool_size: usize) -> Result<Backend, StoreError> {
    // Only used for backends whose feature is off.
    #[allow(unused_variables)]
    let not_enabled = |feature| StoreError::BackendNotEnabled {
        url: mask(url),
        feature,
    };
    let pool_error = |e: String| StoreError::connect(url, e);
    match Target::parse(url)? {
        #[cfg(feature = "sqlite")]
        Target::Sqlite(path) => sqlite::pool(path.as_deref(), pool_size)
            .map(Backend::Sqlite)
            .map_err(pool_error),
        #[cfg(not(feature = "sqlite"))]
        Target::Sqlite(_) => Err(not_enabled("sqlite")),
        #[cfg(feature = "postgres")]
        Target::Postgres(url) => postgres::pool(&url, pool_size)
            .map(Backend::Postgres)
            .map_err(pool_error),
        #[cfg(not(feature = "postgres"))]
        Target::Postgres(_) => Err(not_enabled("postgres")),
        #[cfg(feature = "mysql")]
        Target::Mysql(url) => mysql::pool(&url, pool_size)
            .map(Backend::Mysql)
            .map_err(pool_error),
        #[cfg(not(feature = "mysql"))]
        Target::Mysql(_) => Err(not_enabled("mysql")),
    }
}

/// Runs `$body` with `$conn` bound to a pooled connection of whichever backend, and
/// `$module` to that backend's module.
macro_rules! with_conn {
    ($self:expr, $err:expr, |$conn:ident, $module:ident| $body:expr) => {
        match &$self.inner.backend {
            #[cfg(feature = "sqlite")]
            $crate::store::Backend::Sqlite(pool) => {
                #[allow(unused_imports)]
                use $crate::store::backend::sqlite as $module;
                #[allow(unused_mut)]
                let mut $conn = pool.get().await.map_err($err)?;
                $body
            }
            #[cfg(feature = "postgres")]
            $crate::store::Backend::Postgres(pool) => {
                #[allow(unused_imports)]
                use $crate::store::backend::postgres as $module;
                #[allow(unused_mut)]
                let mut $conn = pool.get().await.map_err($err)?;
                $body
            }
            #[cfg(feature = "mysql")]
            $crate::store::Backend::Mysql(pool) => {
                #[allow(unused_imports)]
                use $crate::store::backend::mysql as $module;
                #[allow(unused_mut)]
                let mut $conn = pool.get().await.map_err($err)?;
                $body
            }
        }
    };
}

// After the macro: these modules use it.
mod audit;
mod read;
#[cfg(test)]
mod snapshots;

pub use audit::AuditSink;

impl DieselStore {
    /// Connects to `url` with the default settings and runs pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }

    /// Starts configuring a store for `url`.
    pub fn builder(url: impl Into<String>) -> DieselStoreBuilder {
        DieselStoreBuilder {
            url: url.into(),
            pool_size: 8,
            run_migrations: true,
            connect_timeout: Duration::from_secs(30),
            limits: Limits::default(),
        }
    }

    /// `"sqlite"`, `"postgres"` or `"mysql"`.
    pub fn backend_name(&self) -> &'static str {
        match &self.inner.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => "postgres",
            #[cfg(feature = "mysql")]
            Backend::Mysql(_) => "mysql",
        }
    }

    fn connect_error(
        &self,
    ) -> impl Fn(diesel_async::pooled_connection::deadpool::PoolError) -> StoreError + '_ {
        move |e| StoreError::connect(&self.inner.url, e)
    }

    fn query_error(&self) -> impl Fn(diesel::result::Error) -> StoreError + '_ {
        move |e| StoreError::query(&self.inner.url, e)
    }

    /// Takes a connection from the pool, proving the database answers.
    async fn check(&self) -> Result<(), StoreError> {
        with_conn!(self, self.connect_error(), |conn, backend| {
            drop(conn);
            Ok(())
        })
    }

    /// Runs the migrations that have not run yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.migrations(false).await
    }

    /// Reverts every migration: **drops the usage tables and all they hold**. For tests
    /// and uninstalls.
    pub async fn revert_migrations(&self) -> Result<(), StoreError> {
        self.migrations(true).await
    }

    async fn migrations(&self, revert: bool) -> Result<(), StoreError> {
        let url = &self.inner.url;
        let done = match &self.inner.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                // On the pool's own connection: an in-memory database exists only there.
                let mut conn = pool.get().await.map_err(self.connect_error())?;
                if revert {
                    sqlite::revert_migrations(&mut conn).await
                } else {
                    sqlite::run_migrations(&mut conn).await
                }
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => postgres::run_migrations(url, revert).await,
            #[cfg(feature = "mysql")]
            Backend::Mysql(_) => {
                mysql::run_migrations(&url.replacen("mariadb://", "mysql://", 1), revert).await
            }
        };
        let done = done.map_err(|e| StoreError::migration(url, e))?;
        if done > 0 && !revert && self.rollups_missing().await? {
            self.rebuild_rollups().await?;
        }
        Ok(())
    }

    /// Whether records are stored but the rollups are empty: the rollup tables were
    /// just created over an existing table.
    async fn rollups_missing(&self) -> Result<bool, StoreError> {
        let mut sql = sql::Sql::new(self.dialect());
        sql.push(
            "SELECT COUNT(*) AS n FROM (SELECT 1 AS x FROM usage_records LIMIT 1) r \
             WHERE NOT EXISTS (SELECT 1 FROM usage_rollup_15m)",
        );
        let rows = with_conn!(self, self.connect_error(), |conn, backend| {
            exec::load::<_, sql::Count>(&mut *conn, sql)
                .await
                .map_err(self.query_error())?
        });
        Ok(rows.first().is_some_and(|c| c.n > 0))
    }

    /// Recomputes the rollup tables from the stored records, in one transaction, and
    /// returns how many records were read. [`migrate`](Self::migrate) does this when it
    /// creates the rollups over existing records; call it after changing the
    /// `usage_records` table by hand.
    pub async fn rebuild_rollups(&self) -> Result<u64, StoreError> {
        let dialect = self.dialect();
        let detail_min = self.inner.limits.detail_min_records;
        let read = with_conn!(self, self.connect_error(), |conn, backend| {
            use diesel_async::AsyncConnection;
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                for table in [
                    schema::Rollup::Quarter.table(),
                    schema::Rollup::Day.table(),
                    schema::UserRollup::Day.table(),
                    schema::UserRollup::Week.table(),
                    schema::TOTALS,
                    schema::HOURS,
                    schema::HIST,
                    schema::BLOCKS,
                ] {
                    let mut sql = sql::Sql::new(dialect);
                    sql.push("DELETE FROM ").push(table);
                    exec::execute(conn, sql).await?;
                }
                let mut after: Option<(i64, Vec<u8>)> = None;
                let mut read = 0u64;
                loop {
                    let sql = read::export::all_after(dialect, after.as_ref());
                    let rows: Vec<Row> = exec::load(conn, sql).await?;
                    let Some(last) = rows.last() else { break };
                    after = Some((last.started_at_us, last.id.clone()));
                    read += rows.len() as u64;
                    let sealed = write::apply::maintain_rollups(conn, dialect, &rows).await?;
                    write::apply::build_details(conn, dialect, &sealed, detail_min, false).await?;
                }
                Ok(read)
            })
            .await
            .map_err(self.query_error())?
        });
        Ok(read)
    }

    /// The `limit` most recent records, newest first.
    pub async fn recent(&self, limit: usize) -> Result<Vec<UsageRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = with_conn!(self, self.connect_error(), |conn, backend| {
            backend::recent(&mut conn, limit)
                .await
                .map_err(self.query_error())?
        });
        rows.into_iter().map(UsageRecord::try_from).collect()
    }

    /// How many records are stored.
    pub async fn count(&self) -> Result<u64, StoreError> {
        let count = with_conn!(self, self.connect_error(), |conn, backend| {
            backend::count(&mut conn)
                .await
                .map_err(self.query_error())?
        });
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

#[async_trait]
impl UsageSink for DieselStore {
    async fn write_batch(&self, records: &[UsageRecord]) -> Result<(), SinkError> {
        let rows: Vec<Row> = records.iter().map(Row::from).collect();
        let detail_min = self.inner.limits.detail_min_records;
        with_conn!(self, SinkError::transient, |conn, backend| {
            write::write_rows(&mut backend::Writer(conn, detail_min), rows).await
        })
    }
}
