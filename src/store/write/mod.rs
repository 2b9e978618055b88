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
//! | [`apply`] | the steps and the detail builds, run on an async connection |

pub(crate) mod apply;
pub(crate) mod cells;
pub(crate) mod detail;
pub(crate) mod seal;
pub(crate) mod steps;
pub(crate) mod totals;
pub(crate) mod users;

use std::sync::Arc;

use async_trait::async_trait;

use super::schema::row::Row;
use crate::sink::SinkError;

/// One backend's way of inserting rows on one connection.
#[async_trait]
pub(crate) trait Insert: Send {
    /// Inserts `rows` in one transaction, ignoring rows whose key is already stored;
    /// then builds the per-user detail rows of the blocks that transaction sealed, in
    /// one of their own (see [`detail`](detail)).
    async fn insert(&mut self, rows: Arc<[Row]>) -> diesel::QueryResult<()>;

    /// Whether the connection still answers; tells a bad row from a lost server.
    async fn ping(&mut self) -> bool;
}

/// Writes `rows`; see the module docs. A failure while the server is unreachable is
/// transient (the recorder retries the batch); rows the server refuses while it answers
/// are reported as rejected, and the others are written.
pub(crate) async fn write_rows<I: Insert>(conn: &mut I, rows: Vec<Row>) -> Result<(), SinkError> {
    let rows: Arc<[Row]> = rows.into();
    let Err(batch_error) = insert(conn, Arc::clone(&rows)).await else {
        return Ok(());
    };
    if !conn.ping().await {
        return Err(SinkError::transient(batch_error));
    }
    let mut rejected = 0;
    let mut reason = None;
    for row in rows.iter() {
        if let Err(error) = insert(conn, Arc::from([row.clone()])).await {
            if !conn.ping().await {
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

/// [`Insert::insert`], tried again after a lock conflict.
async fn insert<I: Insert>(conn: &mut I, rows: Arc<[Row]>) -> diesel::QueryResult<()> {
    let mut tries = 0;
    loop {
        match conn.insert(Arc::clone(&rows)).await {
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
