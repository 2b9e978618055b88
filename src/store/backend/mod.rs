//! The databases: one module a backend, each opening its pool, running its embedded
//! migrations and implementing [`Run`](run::Run) on its connection; and [`Pool`], the one
//! place that tells them apart. Adding a backend is adding a module and a variant here.

#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod native;
pub(crate) mod new_rows;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod run;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
pub(crate) mod staged;
pub(crate) mod url;

use diesel_async::pooled_connection::deadpool::{self, PoolError};

use self::run::Job;
use self::url::Target;
use crate::store::error::{mask, StoreError};
use crate::store::sql::Dialect;

/// The connection pool of whichever backend the store's URL names.
pub(crate) enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(deadpool::Pool<sqlite::Conn>),
    #[cfg(feature = "postgres")]
    Postgres(deadpool::Pool<postgres::Conn>),
    #[cfg(feature = "mysql")]
    Mysql(deadpool::Pool<mysql::Conn>),
}

/// A connection taken from a [`Pool`]; back in the pool when dropped.
// Held on the stack for one write or query: boxing the larger variants would cost an
// allocation each time instead.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Conn {
    #[cfg(feature = "sqlite")]
    Sqlite(deadpool::Object<sqlite::Conn>),
    #[cfg(feature = "postgres")]
    Postgres(deadpool::Object<postgres::Conn>),
    #[cfg(feature = "mysql")]
    Mysql(deadpool::Object<mysql::Conn>),
}

impl Conn {
    /// Runs `job` on this connection.
    pub(crate) async fn run<J: Job>(&mut self, job: J) -> diesel::QueryResult<J::Output> {
        match self {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(conn) => sqlite::run(conn, job).await,
            #[cfg(feature = "postgres")]
            Conn::Postgres(conn) => job.run(&mut **conn).await,
            #[cfg(feature = "mysql")]
            Conn::Mysql(conn) => job.run(&mut **conn).await,
        }
    }
}

/// Why a [`Job`] did not run to the end.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No connection: the server did not answer (or the pool is closed).
    Connect(PoolError),
    /// The database refused or failed a statement.
    Query(diesel::result::Error),
}

impl Pool {
    /// A pool of at most `size` connections to `url`; nothing is opened yet.
    pub(crate) fn open(url: &str, size: usize) -> Result<Pool, StoreError> {
        // Only used for backends whose feature is off.
        #[allow(unused_variables)]
        let not_enabled = |feature| StoreError::BackendNotEnabled {
            url: mask(url),
            feature,
        };
        let pool_error = |e: String| StoreError::connect(url, e);
        match Target::parse(url)? {
            #[cfg(feature = "sqlite")]
            Target::Sqlite(path) => sqlite::pool(path.as_deref(), size)
                .map(Pool::Sqlite)
                .map_err(pool_error),
            #[cfg(not(feature = "sqlite"))]
            Target::Sqlite(_) => Err(not_enabled("sqlite")),
            #[cfg(feature = "postgres")]
            Target::Postgres(url) => postgres::pool(&url, size)
                .map(Pool::Postgres)
                .map_err(pool_error),
            #[cfg(not(feature = "postgres"))]
            Target::Postgres(_) => Err(not_enabled("postgres")),
            #[cfg(feature = "mysql")]
            Target::Mysql(url) => mysql::pool(&url, size).map(Pool::Mysql).map_err(pool_error),
            #[cfg(not(feature = "mysql"))]
            Target::Mysql(_) => Err(not_enabled("mysql")),
        }
    }

    /// `"sqlite"`, `"postgres"` or `"mysql"`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => "postgres",
            #[cfg(feature = "mysql")]
            Pool::Mysql(_) => "mysql",
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => Dialect::Sqlite,
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => Dialect::Postgres,
            #[cfg(feature = "mysql")]
            Pool::Mysql(_) => Dialect::Mysql,
        }
    }

    /// A connection from the pool, for several jobs in a row.
    pub(crate) async fn get(&self) -> Result<Conn, PoolError> {
        Ok(match self {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => Conn::Sqlite(pool.get().await?),
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => Conn::Postgres(pool.get().await?),
            #[cfg(feature = "mysql")]
            Pool::Mysql(pool) => Conn::Mysql(pool.get().await?),
        })
    }

    /// Runs `job` on a pooled connection.
    pub(crate) async fn run<J: Job>(&self, job: J) -> Result<J::Output, Failure> {
        let mut conn = self.get().await.map_err(Failure::Connect)?;
        conn.run(job).await.map_err(Failure::Query)
    }

    /// Runs (or, with `revert`, reverts) the migrations; returns how many ran. `url` is
    /// the store's, for the backends whose migration runner opens a connection of its
    /// own.
    #[cfg_attr(
        not(any(feature = "postgres", feature = "mysql")),
        allow(unused_variables)
    )]
    pub(crate) async fn migrate(&self, url: &str, revert: bool) -> Result<usize, String> {
        match self {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => {
                // On the pool's own connection: an in-memory database exists only there.
                let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                sqlite::migrate(&mut conn, revert).await
            }
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => postgres::migrate(url, revert).await,
            #[cfg(feature = "mysql")]
            Pool::Mysql(_) => {
                mysql::migrate(&url.replacen("mariadb://", "mysql://", 1), revert).await
            }
        }
    }
}
