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
//! | `write/` | `steps` (a batch's rollup statements, in rounds), `cells` (dimension rollups), `users` (per-user sums), `totals`, `seal` (7-day blocks), `detail` (heavy users' rows), `apply` (running them on a connection), `rebuild` |
//! | `backend/` | `run` (what every backend's connection does: the `Run` trait, and the jobs a pool runs), `sqlite`, `postgres`, `mysql` (pool, migrations, `Run` on its connection), `url`; the pool of whichever backend in `mod` |
//! | `sql` | the statement builder both paths share, and the row types statements read |
//! | `records` | the statements that read records in key order (exports, rebuilds, `recent`) |
//! | `replica` | the read replica: when a read may go to it, and what it did |
//! | `schema/` | the registry of tables, columns and measures, `slots` (slot widths), `row` (a record as stored), `histogram` (the stored histogram format), `migrations/<backend>/` |
//!
//! The write and read sequences are written once, generic over `Run`; a backend is a
//! module implementing it (SQLite on its blocking connection, so that a whole job runs
//! in one hop to the blocking thread) and a variant of the pool.
//!
//! A batch: `write_batch` → `write::write_rows` takes one connection → a `Batch` job:
//! one transaction in which the backend's `insert_new` adds the rows not yet stored and
//! `write::apply` runs `write::steps` on them (dimension cells, per-user days, blocks,
//! totals) → after the commit, `write::detail` builds the blocks the batch sealed. If
//! the batch fails and the connection still answers, the rows are written one by one
//! and the refused ones reported. A query: `read::analytics` → `read::plan` cuts the
//! range into parts and writes one statement → a `Load` job on a pooled connection →
//! rows merged into the [`query`](crate::query) types.
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
mod cache;
pub(crate) mod definitions;
mod error;
mod import;
mod partition;
mod pending;
mod read;
mod records;
#[cfg(feature = "redis")]
pub(crate) mod redis;
mod replica;
mod retention;
mod schema;
#[cfg(test)]
mod snapshots;
pub(crate) mod sql;
mod write;

pub use cache::{AnswerCache, CacheStats};
pub use error::StoreError;
pub use import::{CsvColumns, Field, ImportError, ImportReport, TimeFormat};
pub use partition::Partitions;
#[cfg(feature = "redis")]
pub use redis::BadRedisUrl;
pub use replica::ReplicaStats;
pub use retention::{BadRetentionPolicy, Retained, RetentionPolicy, RetentionReport};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::record::UsageRecord;
use crate::sink::{SinkError, UsageSink};
use backend::run::{Claim, Execute, Job, Load, Readable};
use backend::{Failure, Pool};
use error::mask;
use schema::row::Row;
use sql::{Count, Sql};

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
    pool: Pool,
    limits: Limits,
    /// The latency histogram's bucket bounds, for bucketing in SQL; made on first use.
    buckets: std::sync::OnceLock<Vec<i64>>,
    /// How many batches this process has written: watchers wake on a change, and a
    /// writer never waits for them (a watch keeps only the latest value).
    written: tokio::sync::watch::Sender<u64>,
    cache: Option<AnswerCache>,
    replica: Option<replica::Replica>,
    /// The retention horizons as last read, for the API's answers.
    retained: retention::Lately,
    partitions: Option<partition::Partitioned>,
    /// Set when records spread thin are deferred
    /// ([`DieselStoreBuilder::defer_late_records`]).
    deferral: Option<pending::Deferral>,
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

/// Configures a [`DieselStore`]; made by [`DieselStore::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `connect` is awaited"]
pub struct DieselStoreBuilder {
    url: String,
    pool_size: usize,
    run_migrations: bool,
    connect_timeout: Duration,
    limits: Limits,
    cache: Option<AnswerCache>,
    replica: Option<String>,
    max_replica_lag: Duration,
    partitions: Option<Partitions>,
    defer_late: Option<Duration>,
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

    /// Keeps what the analytics read in `cache`, and tells it of every batch this store
    /// writes, so that each answer stays exact (see [`AnswerCache`]). Give one cache to
    /// every store of the process over the same database (a clone shares it).
    ///
    /// ```
    /// use tower_usage::store::{AnswerCache, DieselStore};
    ///
    /// let builder = DieselStore::builder("sqlite::memory:").answer_cache(AnswerCache::new(64 << 20));
    /// # drop(builder);
    /// ```
    pub fn answer_cache(mut self, cache: AnswerCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Sends the analytics reads (metrics, breakdowns, series, rankings, dashboards,
    /// exports) to a PostgreSQL streaming replica at `url`; writes, rollup upkeep,
    /// budgets, alerts and the API's own tables stay on the primary. A read goes to the
    /// primary instead, counted in [`DieselStore::replica_stats`], while the replica does
    /// not answer, lags past [`max_replica_lag`](Self::max_replica_lag), or has not yet
    /// replayed a batch this store wrote: a process always reads its own records, and an
    /// [`AnswerCache`] stays exact. Not for an `AnswerCache::shared` between processes,
    /// whose other writers' batches the replica may not have replayed yet: `connect`
    /// refuses that, and a URL of another backend.
    ///
    /// ```
    /// let builder = tower_usage::store::DieselStore::builder("postgres://db-primary/usage")
    ///     .read_replica("postgres://db-replica/usage");
    /// # drop(builder);
    /// ```
    pub fn read_replica(mut self, url: impl Into<String>) -> Self {
        self.replica = Some(url.into());
        self
    }

    /// How far behind the primary the replica may be and still answer (default 10 s):
    /// the age of the last commit it replayed, while it has more to replay.
    pub fn max_replica_lag(mut self, lag: Duration) -> Self {
        self.max_replica_lag = lag;
        self
    }

    /// Keeps the records in a table range-partitioned by start time on PostgreSQL, a
    /// partition per UTC day or month (see [`Partitions`]): retention then drops
    /// partitions instead of deleting rows, and queries read only the partitions of
    /// their range. `connect` turns an existing plain table into a partitioned one in
    /// one transaction (the old table becomes the partition of every time up to the end
    /// of the current period), makes a default partition for records no other holds,
    /// and the store makes each period's partition before the first batch that needs
    /// it. The rollups are not partitioned. `connect` refuses it for SQLite and MySQL.
    ///
    /// ```
    /// use tower_usage::store::{DieselStore, Partitions};
    ///
    /// let builder = DieselStore::builder("postgres://db/usage").partition_records(Partitions::Daily);
    /// # drop(builder);
    /// ```
    pub fn partition_records(mut self, layout: Partitions) -> Self {
        self.partitions = Some(layout);
        self
    }

    /// Stores the records a batch spreads thin over time (64 or more, each in a
    /// 15-minute slot holding fewer than 16 of the batch's records) pending, without
    /// their rollups, and settles their 7-day blocks once, when no such batch has come for
    /// `quiet`; off by default.
    ///
    /// A replay of history in random order, or a broker's redelivery of a backlog, then
    /// costs about what records in time order cost, instead of a rollup row and an index
    /// probe per record: pending records are appended, and a block's settle moves them
    /// into the records in time order and rebuilds its rollups from them. Until the store
    /// settles, no answer counts them (not `count`, not exports either);
    /// [`DieselStore::settle`] settles at once. Records crowded in time, as a live
    /// service's batches are, and stragglers, go through the write path as without this.
    /// A block's settle holds that block's writers (on PostgreSQL, all writers) until it
    /// commits: a seconds-long pause when deferred records fall in the block a live
    /// service is writing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use tower_usage::store::DieselStore;
    ///
    /// let store = DieselStore::builder("sqlite::memory:")
    ///     .defer_late_records(Duration::from_secs(1))
    ///     .connect()
    ///     .await?;
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    pub fn defer_late_records(mut self, quiet: Duration) -> Self {
        self.defer_late = Some(quiet);
        self
    }

    /// Opens the pool, checks that the database answers, and runs the migrations unless
    /// told not to.
    pub async fn connect(self) -> Result<DieselStore, StoreError> {
        let url = self.url.clone();
        let pool = Pool::open(&url, self.pool_size)?;
        let replica = match &self.replica {
            None => None,
            Some(replica) => Some(self.open_replica(replica, &pool)?),
        };
        if self.partitions.is_some() && pool.dialect() != sql::Dialect::Postgres {
            return Err(StoreError::UnsupportedUrl {
                url: mask(&url),
                reason: "partitioned records are supported on PostgreSQL",
            });
        }
        let store = DieselStore {
            inner: Arc::new(Inner {
                url,
                pool,
                limits: self.limits,
                buckets: std::sync::OnceLock::new(),
                written: tokio::sync::watch::Sender::new(0),
                cache: self.cache,
                replica,
                retained: retention::Lately::default(),
                partitions: self.partitions.map(partition::Partitioned::new),
                deferral: self.defer_late.map(pending::Deferral::new),
            }),
        };
        let ready = async {
            store.check().await?;
            if self.run_migrations {
                store.migrate().await?;
            }
            store.prepare_partitions().await?;
            Ok::<_, StoreError>(())
        };
        match tokio::time::timeout(self.connect_timeout, ready).await {
            Ok(Ok(())) => {
                store.spawn_settling();
                if self.run_migrations {
                    // What a process that stopped left pending (a crash during an
                    // import), rebuilt beside the answers rather than before them.
                    store.spawn_settle_once();
                }
                Ok(store)
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(StoreError::connect(
                &self.url,
                format!("no answer within {:?}", self.connect_timeout),
            )),
        }
    }
}

impl DieselStoreBuilder {
    /// The replica's pool: not connected yet, since the store works without it.
    fn open_replica(&self, url: &str, primary: &Pool) -> Result<replica::Replica, StoreError> {
        let refuse = |reason: &'static str| StoreError::UnsupportedUrl {
            url: mask(url),
            reason,
        };
        let pool = Pool::open(url, self.pool_size)?;
        if primary.dialect() != sql::Dialect::Postgres || pool.dialect() != sql::Dialect::Postgres {
            return Err(refuse(
                "read replicas are supported on PostgreSQL, for a PostgreSQL primary",
            ));
        }
        if self.cache.as_ref().is_some_and(AnswerCache::is_shared) {
            return Err(refuse(
                "an answer cache shared between processes cannot tell whether the replica \
                 has replayed the other processes' writes; use the replica without it",
            ));
        }
        Ok(replica::Replica::new(pool, self.max_replica_lag))
    }
}

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
            cache: None,
            replica: None,
            max_replica_lag: Duration::from_secs(10),
            partitions: None,
            defer_late: None,
        }
    }

    /// `"sqlite"`, `"postgres"` or `"mysql"`.
    pub fn backend_name(&self) -> &'static str {
        self.inner.pool.name()
    }

    pub(crate) fn dialect(&self) -> sql::Dialect {
        self.inner.pool.dialect()
    }

    /// The longest range a query may cover.
    #[cfg_attr(not(feature = "api"), allow(dead_code))]
    pub(crate) fn max_range(&self) -> Duration {
        self.inner.limits.max_range
    }

    /// Runs `job` on a pooled connection.
    async fn run<J: Job>(&self, job: J) -> Result<J::Output, StoreError> {
        let url = &self.inner.url;
        self.inner
            .pool
            .run(job)
            .await
            .map_err(|failure| match failure {
                Failure::Connect(e) => StoreError::connect(url, e),
                Failure::Query(e) => StoreError::query(url, e),
            })
    }

    /// Runs a query and reads its rows as `T`.
    pub(crate) async fn load<T: Readable>(&self, sql: Sql) -> Result<Vec<T>, StoreError> {
        self.run(Load::new(sql)).await
    }

    /// [`load`](Self::load) for a statement that reads the rollups only.
    pub(crate) async fn load_rollups<T: Readable>(&self, sql: Sql) -> Result<Vec<T>, StoreError> {
        self.run(Load::rollups(sql)).await
    }

    /// An analytics read: on the replica when there is one that may answer it (see
    /// [`DieselStoreBuilder::read_replica`]), on the primary otherwise. `rollups` when
    /// it reads the rollups only.
    pub(crate) async fn load_analytics<T: Readable>(
        &self,
        sql: Sql,
        rollups: bool,
    ) -> Result<Vec<T>, StoreError> {
        let sql = match &self.inner.replica {
            None => sql,
            Some(replica) => match replica.load(sql.clone(), rollups).await {
                Ok(rows) => return Ok(rows),
                Err(_) => sql,
            },
        };
        match rollups {
            true => self.load_rollups(sql).await,
            false => self.load(sql).await,
        }
    }

    /// What the read replica did, or `None` without one
    /// ([`DieselStoreBuilder::read_replica`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = tower_usage::store::DieselStore::connect("sqlite::memory:").await?;
    /// assert!(store.replica_stats().is_none());
    /// # Ok(()) }
    /// ```
    pub fn replica_stats(&self) -> Option<ReplicaStats> {
        self.inner.replica.as_ref().map(replica::Replica::stats)
    }

    /// Tells the replica where the primary's log stands after a batch was written (or
    /// may have been), so that reads wait for the replica to replay it.
    async fn note_written(&self) {
        if let Some(replica) = &self.inner.replica {
            let ticket = replica.ticket();
            let position: Result<Vec<Count>, _> = self.load(replica::Replica::position()).await;
            replica.written(
                ticket,
                position.ok().and_then(|rows| rows.first().map(|c| c.n)),
            );
        }
    }

    /// The number a query of one row and one column `n` answers (0 for no row).
    async fn number(&self, text: &str) -> Result<i64, StoreError> {
        let mut sql = Sql::new(self.dialect());
        sql.push(text);
        let rows: Vec<Count> = self.load(sql).await?;
        Ok(rows.first().map_or(0, |c| c.n))
    }

    /// What follows a write, whatever its outcome (one that failed may have committed):
    /// the replica learns where the primary stands, the answer cache forgets the slots
    /// of `starts` (records' start times), and when something was `stored`, the watch of
    /// written batches moves.
    pub(in crate::store) async fn note_stored(
        &self,
        starts: impl IntoIterator<Item = i64>,
        stored: bool,
    ) {
        self.note_written().await;
        if let Some(cache) = &self.inner.cache {
            cache.record_written(cache::slots_of(starts)).await;
        }
        if stored {
            self.inner.written.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Writes `rows` through the write path, with their rollups, in their partitions.
    pub(in crate::store) async fn write_now(&self, rows: Vec<Row>) -> Result<(), SinkError> {
        let starts: Vec<i64> = rows.iter().map(|row| row.started_at_us).collect();
        let detail_min = self.inner.limits.detail_min_records;
        self.ensure_partitions(starts.iter().copied()).await;
        let written = write::write_rows(&self.inner.pool, rows, detail_min).await;
        // Some rows are stored even when others were refused.
        let stored = matches!(written, Ok(()) | Err(SinkError::Rejected { .. }));
        self.note_stored(starts, stored).await;
        written
    }

    /// Runs statements one after another, outside a transaction.
    pub(crate) async fn execute(&self, statements: Vec<Sql>) -> Result<usize, StoreError> {
        self.run(Execute(statements)).await
    }

    /// Runs `first` in a transaction and, if it changed exactly one row, `then` in the
    /// same transaction; whether it did (see the backend's `Claim`).
    pub(crate) async fn claim(&self, first: Sql, then: Vec<Sql>) -> Result<bool, StoreError> {
        self.run(Claim(first, then)).await
    }

    /// Asks the database a trivial question about the records table (none of its rows
    /// is read): whether it answers now.
    ///
    /// ```
    /// # use tower_usage::store::DieselStore;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = DieselStore::connect("sqlite::memory:").await?;
    /// store.ping().await?;
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> Result<(), StoreError> {
        // COUNT, not a bare `SELECT 1`: its type is a 64-bit integer on every backend.
        self.number("SELECT COUNT(*) AS n FROM usage_records WHERE 1 = 0")
            .await
            .map(drop)
    }

    /// Takes a connection from the pool, proving the database answers.
    async fn check(&self) -> Result<(), StoreError> {
        self.run(Execute(Vec::new())).await.map(drop)
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
        let done = self.inner.pool.migrate(url, revert).await;
        let done = done.map_err(|e| StoreError::migration(url, e))?;
        if revert {
            return Ok(());
        }
        if done > 0 && self.rollups_missing().await? {
            self.rebuild_rollups().await?;
        }
        Ok(())
    }

    /// Whether records are stored but the rollups are empty: the rollup tables were
    /// just created over an existing table.
    async fn rollups_missing(&self) -> Result<bool, StoreError> {
        let missing = self
            .number(
                "SELECT COUNT(*) AS n FROM (SELECT 1 AS x FROM usage_records LIMIT 1) r \
                 WHERE NOT EXISTS (SELECT 1 FROM usage_rollup_15m)",
            )
            .await?;
        Ok(missing > 0)
    }

    /// Recomputes the rollup tables from the stored records, in one transaction, and
    /// returns how many records were read. [`migrate`](Self::migrate) does this when it
    /// creates the rollups over existing records; call it after changing the
    /// `usage_records` table by hand.
    pub async fn rebuild_rollups(&self) -> Result<u64, StoreError> {
        let detail_min = self.inner.limits.detail_min_records;
        let rebuilt = self.run(write::rebuild::Rebuild { detail_min }).await;
        // Called after the records were changed by hand: what was read may be gone.
        if let Some(cache) = &self.inner.cache {
            cache.record_written_everywhere().await;
        }
        rebuilt
    }

    /// The answer cache this store reads through, if it was given one
    /// ([`DieselStoreBuilder::answer_cache`]).
    pub fn answer_cache(&self) -> Option<&AnswerCache> {
        self.inner.cache.as_ref()
    }

    /// The `limit` most recent records, newest first.
    pub async fn recent(&self, limit: usize) -> Result<Vec<UsageRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<Row> = self.load(records::recent(self.dialect(), limit)).await?;
        rows.into_iter().map(UsageRecord::try_from).collect()
    }

    /// A watch on the batches this process writes through this store (and its clones):
    /// it changes after each batch that stored records. Writes by other processes are
    /// not seen here; [`high_water_mark`](Self::high_water_mark) finds those.
    #[cfg_attr(not(feature = "api"), allow(dead_code))]
    pub(crate) fn written(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.written.subscribe()
    }

    /// How many watches of [`written`](Self::written) are alive.
    #[cfg(all(test, feature = "api"))]
    pub(crate) fn written_watchers(&self) -> usize {
        self.inner.written.receiver_count()
    }

    /// The latest start time stored, in microseconds (0 when empty): one lookup in the
    /// records' key index, whatever their number. Records arriving in real time move it;
    /// a record stored late with an old start time does not.
    #[cfg_attr(not(feature = "api"), allow(dead_code))]
    pub(crate) async fn high_water_mark(&self) -> Result<i64, StoreError> {
        self.number("SELECT COALESCE(MAX(started_at_us), 0) AS n FROM usage_records")
            .await
    }

    /// How many records are stored.
    pub async fn count(&self) -> Result<u64, StoreError> {
        let count = self
            .number("SELECT COUNT(*) AS n FROM usage_records")
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

#[async_trait]
impl UsageSink for DieselStore {
    async fn write_batch(&self, records: &[UsageRecord]) -> Result<(), SinkError> {
        let mut rows: Vec<Row> = records.iter().map(Row::from).collect();
        if let Some(deferral) = &self.inner.deferral {
            // Without the retention horizon at hand, nothing is deferred.
            let horizon = self.retained_lately().await.map(|retained| {
                retained
                    .records_before
                    .map_or(i64::MIN, |before| before.timestamp_micros())
            });
            if let Some(horizon) = horizon {
                let (thin, now) = pending::spread_thin(rows, horizon);
                rows = now;
                if !thin.is_empty() {
                    let thin: Arc<[Row]> = thin.into();
                    match self.store_pending(Arc::clone(&thin)).await {
                        Ok(()) => deferral.deferred(),
                        // The write path tells a bad row from a lost server.
                        Err(_) => rows.extend_from_slice(&thin),
                    }
                }
                if rows.is_empty() {
                    return Ok(());
                }
            }
        }
        self.write_now(rows).await
    }
}
