//! The write path: a batch's rows in one transaction with the rollups it changes, and
//! when that fails on bad data, the good rows one by one, so one bad record does not
//! cost the others.
//!
//! | module | what it writes |
//! |---|---|
//! | [`steps`] | the sequence of a batch's rollup statements, in rounds |
//! | [`cells`] | the dimension rollups: sums and histograms per slot and key |
//! | [`users`] | the per-user daily (and late 7-day) sums |
//! | [`totals`] | the per-slot totals |
//! | [`seal`] | the 7-day per-user blocks, written once |
//! | [`detail`] | the heavy users' hourly sums and daily histograms |
//! | [`apply`] | the steps and the detail builds, run on any backend's connection |
//! | [`rebuild`] | the rollups recomputed from the stored records |

pub(crate) mod apply;
pub(crate) mod cells;
pub(crate) mod detail;
pub(crate) mod rebuild;
pub(crate) mod seal;
pub(crate) mod steps;
pub(crate) mod totals;
pub(crate) mod users;

use std::sync::Arc;

use diesel::QueryResult;
use futures_util::future::BoxFuture;

use super::backend::run::{Job, Ping, Run};
use super::backend::{Conn, Pool};
use super::schema::row::Row;
use crate::sink::SinkError;

/// A batch's rows, inserted in one transaction with the rollups they change, skipping
/// rows whose key is already stored; then the per-user detail rows of the blocks that
/// transaction sealed, in transactions of their own (see [`detail`]).
struct Batch {
    rows: Arc<[Row]>,
    /// The records a user needs in a block for detail rows.
    detail_min: i64,
}

impl Job for Batch {
    type Output = ();

    fn run<C: Run>(self, conn: &mut C) -> BoxFuture<'_, QueryResult<()>> {
        Box::pin(async move {
            let rows = self.rows;
            let sealed = conn
                .transaction(Box::new(move |conn: &mut C| {
                    Box::pin(async move {
                        let new = conn.insert_new(&rows).await?;
                        apply::maintain_rollups(conn, &new).await
                    })
                }))
                .await?;
            detail::report(apply::build_details(conn, sealed, self.detail_min, true).await);
            Ok(())
        })
    }
}

/// Writes `rows`; see the module docs. A failure while the server is unreachable is
/// transient (the recorder retries the batch); rows the server refuses while it answers
/// are reported as rejected, and the others are written.
pub(crate) async fn write_rows(
    pool: &Pool,
    rows: Vec<Row>,
    detail_min: i64,
) -> Result<(), SinkError> {
    let rows: Arc<[Row]> = rows.into();
    // One connection throughout: whether it still answers after an error tells a bad
    // row from a lost server (or a commit whose answer was lost).
    let mut conn = pool.get().await.map_err(SinkError::transient)?;
    let Err(batch_error) = insert(&mut conn, Arc::clone(&rows), detail_min).await else {
        return Ok(());
    };
    if conn.run(Ping).await.is_err() {
        return Err(SinkError::transient(batch_error));
    }
    let mut rejected = 0;
    let mut reason = None;
    for row in rows.iter() {
        if let Err(error) = insert(&mut conn, Arc::from([row.clone()]), detail_min).await {
            if conn.run(Ping).await.is_err() {
                return Err(SinkError::transient(error));
            }
            rejected += 1;
            reason.get_or_insert_with(|| error.to_string());
        }
    }
    match reason {
        None => Ok(()),
        Some(reason) => Err(SinkError::rejected(rejected, reason)),
    }
}

/// Times a transaction the database rolled back to break a deadlock (or could not lock
/// in time) is tried again before the error stands: nothing of it was written, and the
/// next try usually goes through.
const CONFLICT_RETRIES: u32 = 5;

/// A [`Batch`], tried again after a lock conflict.
async fn insert(conn: &mut Conn, rows: Arc<[Row]>, detail_min: i64) -> QueryResult<()> {
    let mut tries = 0;
    loop {
        let batch = Batch {
            rows: Arc::clone(&rows),
            detail_min,
        };
        match conn.run(batch).await {
            Err(error) if tries < CONFLICT_RETRIES && lock_conflict(&error) => {
                tries += 1;
                // Staggered by the batch's first id (random bits), so that the two
                // sides of a deadlock do not meet again.
                let jitter = rows.first().and_then(|r| r.id.last()).copied().unwrap_or(0) % 8;
                let wait = 2 * u64::from(tries) + u64::from(jitter);
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            }
            done => return done,
        }
    }
}

/// Whether the database refused the transaction because of other transactions' locks:
/// a deadlock victim (PostgreSQL, MySQL), a serialization failure, a lock wait that
/// timed out, or SQLite's busy database.
fn lock_conflict(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    let Error::DatabaseError(kind, info) = error else {
        return false;
    };
    if matches!(kind, DatabaseErrorKind::SerializationFailure) {
        return true;
    }
    let message = info.message().to_ascii_lowercase();
    ["deadlock", "lock wait timeout", "database is locked"]
        .iter()
        .any(|m| message.contains(m))
}
