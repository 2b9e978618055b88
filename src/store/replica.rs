//! A PostgreSQL streaming replica for the analytics reads
//! ([`DieselStoreBuilder::read_replica`](super::DieselStoreBuilder::read_replica)).
//!
//! A read goes to the replica when, checked on the connection that then runs it:
//!
//! * the replica has replayed the write-ahead log past the last batch this store wrote
//!   (read after the batch's commit, from the primary), so a process always sees its own
//!   records, and an [`AnswerCache`](super::AnswerCache) stays exact: a commit stamped
//!   before a read started is in what the read sees, as on the primary;
//! * and it is not lagging past the bound: replaying what it received, the last replayed
//!   commit is at most `max_lag` old (records of other writers reach it by then).
//!
//! Otherwise, and when the replica does not answer, the read goes to the primary and is
//! counted. After a failure the replica is left alone for [`REST`], so that a replica
//! that hangs costs one timeout, not one a read.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Nullable};
use diesel::{QueryResult, QueryableByName};
use futures_util::future::BoxFuture;

use super::backend::run::{Job, Readable, Run};
use super::backend::Pool;
use super::sql::{Dialect, Sql};

/// How long the replica is left alone after it failed to answer.
pub(crate) const REST: Duration = Duration::from_secs(1);

/// The longest wait for a connection to the replica before a read goes to the primary.
const CONNECT_WAIT: Duration = Duration::from_secs(2);

/// What the replica did for the analytics reads, from
/// [`DieselStore::replica_stats`](super::DieselStore::replica_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaStats {
    /// Reads the replica answered.
    pub reads: u64,
    /// Reads sent to the primary because the replica did not answer (or failed the read).
    pub down: u64,
    /// Reads sent to the primary because the replica lagged past the bound, or had not
    /// yet replayed a batch this store wrote.
    pub behind: u64,
}

/// The replica's pool, its bound, and what the store needs it to have replayed.
pub(crate) struct Replica {
    pool: Pool,
    max_lag_us: i64,
    needed: Mutex<Needed>,
    resting_until: Mutex<Option<Instant>>,
    reads: AtomicU64,
    down: AtomicU64,
    behind: AtomicU64,
}

/// The write-ahead log position the replica must have replayed.
#[derive(Debug, Default)]
struct Needed {
    /// The primary's position read after the last batch's commit (the largest read).
    lsn: i64,
    /// Set when a batch's position could not be read: the ticket of that failure. Until
    /// a position read after it (a later ticket) comes in, reads go to the primary.
    unknown: Option<u64>,
    next_ticket: u64,
}

/// What a read asks the replica first.
#[derive(Debug, QueryableByName)]
struct Position {
    /// `NULL` when the server is not in recovery (not a replica).
    #[diesel(sql_type = Nullable<BigInt>)]
    replayed: Option<i64>,
    #[diesel(sql_type = BigInt)]
    lag_us: i64,
}

/// Why a read did not go to the replica.
#[derive(Debug)]
pub(crate) enum Skipped {
    Down,
    Behind,
}

impl Replica {
    pub(crate) fn new(pool: Pool, max_lag: Duration) -> Self {
        Replica {
            pool,
            max_lag_us: i64::try_from(max_lag.as_micros()).unwrap_or(i64::MAX),
            needed: Mutex::default(),
            resting_until: Mutex::default(),
            reads: AtomicU64::new(0),
            down: AtomicU64::new(0),
            behind: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> ReplicaStats {
        ReplicaStats {
            reads: self.reads.load(Ordering::Relaxed),
            down: self.down.load(Ordering::Relaxed),
            behind: self.behind.load(Ordering::Relaxed),
        }
    }

    /// A ticket for a position read about to start on the primary, after a batch.
    pub(crate) fn ticket(&self) -> u64 {
        let mut needed = self.needed.lock().unwrap_or_else(|e| e.into_inner());
        needed.next_ticket += 1;
        needed.next_ticket
    }

    /// The primary's position read with `ticket` (after a batch committed, or may
    /// have), or `None` when it could not be read.
    pub(crate) fn written(&self, ticket: u64, position: Option<i64>) {
        let mut needed = self.needed.lock().unwrap_or_else(|e| e.into_inner());
        match position {
            Some(lsn) => {
                needed.lsn = needed.lsn.max(lsn);
                if needed.unknown.is_some_and(|failed| ticket > failed) {
                    needed.unknown = None;
                }
            }
            None => {
                needed.next_ticket += 1;
                needed.unknown = Some(needed.next_ticket);
            }
        }
    }

    /// The statement that reads the primary's position.
    pub(crate) fn position() -> Sql {
        let mut sql = Sql::new(Dialect::Postgres);
        sql.push("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS n");
        sql
    }

    /// Runs `sql` on the replica when it may answer (see the module docs); `Err` says
    /// why not, and the caller reads from the primary.
    pub(crate) async fn load<T: Readable>(
        &self,
        sql: Sql,
        rollups: bool,
    ) -> Result<Vec<T>, Skipped> {
        let needed = {
            let needed = self.needed.lock().unwrap_or_else(|e| e.into_inner());
            if needed.unknown.is_some() {
                return Err(self.skip(Skipped::Behind));
            }
            needed.lsn
        };
        if self
            .resting_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|until| Instant::now() < until)
        {
            return Err(self.skip(Skipped::Down));
        }
        let job = Checked {
            sql,
            rollups,
            needed,
            max_lag_us: self.max_lag_us,
            rows: PhantomData,
        };
        let answer = match tokio::time::timeout(CONNECT_WAIT, self.pool.get()).await {
            Ok(Ok(mut conn)) => conn.run(job).await.ok(),
            _ => None,
        };
        match answer {
            Some(Some(rows)) => {
                self.reads.fetch_add(1, Ordering::Relaxed);
                Ok(rows)
            }
            Some(None) => Err(self.skip(Skipped::Behind)),
            None => {
                *self.resting_until.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Instant::now() + REST);
                Err(self.skip(Skipped::Down))
            }
        }
    }

    fn skip(&self, why: Skipped) -> Skipped {
        match why {
            Skipped::Down => &self.down,
            Skipped::Behind => &self.behind,
        }
        .fetch_add(1, Ordering::Relaxed);
        why
    }
}

/// A read that first checks, on the same connection, that the replica may answer it:
/// `None` when it may not.
struct Checked<T> {
    sql: Sql,
    rollups: bool,
    needed: i64,
    max_lag_us: i64,
    rows: PhantomData<fn() -> T>,
}

impl<T: Readable> Job for Checked<T> {
    type Output = Option<Vec<T>>;

    fn run<C: Run>(self, conn: &mut C) -> BoxFuture<'_, QueryResult<Option<Vec<T>>>> {
        Box::pin(async move {
            let mut check = Sql::new(C::DIALECT);
            // Lag: how old the last replayed commit is, unless everything received is
            // replayed (an idle primary sends nothing, and that is no lag).
            check.push(
                "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint AS replayed, \
                 CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
                 ELSE COALESCE((EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) \
                 * 1000000)::bigint, 0) END AS lag_us",
            );
            let position: Vec<Position> = conn.load(check).await?;
            let Some(position) = position.first() else {
                return Ok(None);
            };
            // Not in recovery: a primary has replayed whatever it has.
            let replayed = position.replayed.unwrap_or(i64::MAX);
            if replayed < self.needed || position.lag_us > self.max_lag_us {
                return Ok(None);
            }
            let rows = if self.rollups {
                conn.load_rollups(self.sql).await?
            } else {
                conn.load(self.sql).await?
            };
            Ok(Some(rows))
        })
    }
}
