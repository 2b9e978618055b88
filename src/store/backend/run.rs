//! What every backend's connection does, and the work the store hands it.
//!
//! The write and read sequences are written once, generic over [`Run`]; each backend
//! implements it on its own connection type, so the diesel bounds a statement needs are
//! spelled once per backend, on concrete types. SQLite implements it on the blocking
//! connection: a [`Job`] runs there whole, in one hop to the blocking thread.

use std::borrow::Cow;
use std::marker::PhantomData;

use diesel::QueryResult;
use futures_util::future::BoxFuture;

use crate::store::schema::row::Row;
use crate::store::sql::{Dialect, Sql};

/// A row type that every enabled backend can read from a statement's result.
///
/// Every `#[derive(QueryableByName)]` type of the store is one; the bound stands for
/// "readable on whichever backend runs the statement".
pub(crate) trait Readable: Send + 'static + OnSqlite + OnPostgres + OnMysql {}
impl<T: Send + 'static + OnSqlite + OnPostgres + OnMysql> Readable for T {}

// One bound per backend, empty when its feature is off: a supertrait list cannot be cut
// by `cfg` item by item.
#[cfg(feature = "sqlite")]
pub(crate) trait OnSqlite: diesel::QueryableByName<diesel::sqlite::Sqlite> {}
#[cfg(feature = "sqlite")]
impl<T: diesel::QueryableByName<diesel::sqlite::Sqlite>> OnSqlite for T {}
#[cfg(not(feature = "sqlite"))]
pub(crate) trait OnSqlite {}
#[cfg(not(feature = "sqlite"))]
impl<T> OnSqlite for T {}

#[cfg(feature = "postgres")]
pub(crate) trait OnPostgres: diesel::QueryableByName<diesel::pg::Pg> {}
#[cfg(feature = "postgres")]
impl<T: diesel::QueryableByName<diesel::pg::Pg>> OnPostgres for T {}
#[cfg(not(feature = "postgres"))]
pub(crate) trait OnPostgres {}
#[cfg(not(feature = "postgres"))]
impl<T> OnPostgres for T {}

#[cfg(feature = "mysql")]
pub(crate) trait OnMysql: diesel::QueryableByName<diesel::mysql::Mysql> {}
#[cfg(feature = "mysql")]
impl<T: diesel::QueryableByName<diesel::mysql::Mysql>> OnMysql for T {}
#[cfg(not(feature = "mysql"))]
pub(crate) trait OnMysql {}
#[cfg(not(feature = "mysql"))]
impl<T> OnMysql for T {}

/// A body run in a transaction: given the connection, the future of its result. It owns
/// what it uses, so one type fits every connection's lifetime.
pub(crate) type Body<C, T> =
    Box<dyn for<'c> FnOnce(&'c mut C) -> BoxFuture<'c, QueryResult<T>> + Send>;

/// One backend's connection, as the store's statements use it.
///
/// The futures are boxed: the sequences are generic over the connection and await these
/// inside transaction bodies, whose futures must be proven `Send` for every lifetime.
pub(crate) trait Run: Send + Sized {
    /// The SQL dialect statements for this connection are built in.
    const DIALECT: Dialect;

    /// Runs a query and reads its rows as `T`.
    fn load<T: Readable>(&mut self, sql: Sql) -> BoxFuture<'_, QueryResult<Vec<T>>>;

    /// [`load`](Run::load) for a statement over the rollups, which reads tens of
    /// thousands of rows at most: a backend may run it differently (PostgreSQL without
    /// parallel workers).
    fn load_rollups<T: Readable>(&mut self, sql: Sql) -> BoxFuture<'_, QueryResult<Vec<T>>> {
        self.load(sql)
    }

    /// Runs a statement, returning the number of rows it changed.
    fn execute(&mut self, sql: Sql) -> BoxFuture<'_, QueryResult<usize>>;

    /// Asks the server for an answer, proving the connection still works.
    fn ping(&mut self) -> BoxFuture<'_, QueryResult<()>>;

    /// Runs `body` in a transaction that takes the write lock at once where the backend
    /// can (SQLite): committed if it returns `Ok`, rolled back otherwise.
    fn transaction<T: Send + 'static>(
        &mut self,
        body: Body<Self, T>,
    ) -> BoxFuture<'_, QueryResult<T>>;

    /// Inserts `rows`, skipping those whose key is stored already (or that the batch
    /// holds twice), in the caller's transaction; returns the rows this call added, and
    /// only those, even while another transaction writes the same records.
    fn insert_new<'c, 'r: 'c>(
        &'c mut self,
        rows: &'r [Row],
    ) -> BoxFuture<'c, QueryResult<Cow<'r, [Row]>>>;

    /// Appends `rows` to `usage_pending_records`, each with its 7-day block, in the
    /// caller's transaction (module `pending`): no key is checked, so the cost does not
    /// grow with what is stored.
    fn stage<'c>(&'c mut self, rows: &'c [Row]) -> BoxFuture<'c, QueryResult<()>> {
        Box::pin(async move {
            for sql in super::staged::statements(Self::DIALECT, rows) {
                self.execute(sql).await?;
            }
            Ok(())
        })
    }
}

/// Work for one pooled connection; the pool runs it on whichever backend it holds.
pub(crate) trait Job: Send + 'static {
    type Output: Send + 'static;

    fn run<C: Run>(self, conn: &mut C) -> BoxFuture<'_, QueryResult<Self::Output>>;
}

/// A query whose rows are read as `T`.
pub(crate) struct Load<T> {
    sql: Sql,
    rollups: bool,
    rows: PhantomData<fn() -> T>,
}

impl<T> Load<T> {
    pub(crate) fn new(sql: Sql) -> Self {
        Load {
            sql,
            rollups: false,
            rows: PhantomData,
        }
    }

    /// A query over the rollups only (see [`Run::load_rollups`]).
    pub(crate) fn rollups(sql: Sql) -> Self {
        Load {
            rollups: true,
            ..Load::new(sql)
        }
    }
}

impl<T: Readable> Job for Load<T> {
    type Output = Vec<T>;

    fn run<C: Run>(self, conn: &mut C) -> BoxFuture<'_, QueryResult<Vec<T>>> {
        if self.rollups {
            conn.load_rollups(self.sql)
        } else {
            conn.load(self.sql)
        }
    }
}

/// Statements run one after another, outside a transaction; the output is the number of
/// rows they changed.
pub(crate) struct Execute(pub(crate) Vec<Sql>);

impl Job for Execute {
    type Output = usize;

    fn run<C: Run>(self, conn: &mut C) -> BoxFuture<'_, QueryResult<usize>> {
        Box::pin(async move {
            let mut changed = 0;
            for sql in self.0 {
                changed += conn.execute(sql).await?;
            }
            Ok(changed)
        })
    }
}

/// Runs the first statement in a transaction and, if it changed exactly one row, the
/// others after it in the same transaction; whether it did. A claim: the first
/// statement is an insert or update only one writer can make, the rest what the claim
/// brings with it.
pub(crate) struct Claim(pub(crate) Sql, pub(crate) Vec<Sql>);

impl Job for Claim {
    type Output = bool;

    fn run<C: Run>(self, conn: &mut C) -> BoxFuture<'_, QueryResult<bool>> {
        let Claim(first, then) = self;
        conn.transaction(Box::new(move |conn| {
            Box::pin(async move {
                if conn.execute(first).await? != 1 {
                    return Ok(false);
                }
                for sql in then {
                    conn.execute(sql).await?;
                }
                Ok(true)
            })
        }))
    }
}

/// A [`Run::ping`].
pub(crate) struct Ping;

impl Job for Ping {
    type Output = ();

    fn run<C: Run>(self, conn: &mut C) -> BoxFuture<'_, QueryResult<()>> {
        conn.ping()
    }
}

/// A stored value the crate cannot read, as a query error.
pub(crate) fn corrupt(what: String) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(what.into())
}
