//! Writing a batch: all rows in one transaction, and when that fails on bad data, the
//! good rows one by one, so one bad record does not cost the others.

use std::sync::Arc;

use async_trait::async_trait;

use super::row::Row;
use crate::sink::SinkError;

/// One backend's way of inserting rows on one connection.
#[async_trait]
pub(crate) trait Insert: Send {
    /// Inserts `rows` in one transaction, ignoring rows whose key is already stored.
    async fn insert(&mut self, rows: Arc<[Row]>) -> diesel::QueryResult<()>;

    /// Whether the connection still answers; tells a bad row from a lost server.
    async fn ping(&mut self) -> bool;
}

/// Writes `rows`; see the module docs. A failure while the server is unreachable is
/// transient (the recorder retries the batch); rows the server refuses while it answers
/// are reported as rejected, and the others are written.
pub(crate) async fn write_rows<I: Insert>(conn: &mut I, rows: Vec<Row>) -> Result<(), SinkError> {
    let rows: Arc<[Row]> = rows.into();
    let Err(batch_error) = conn.insert(Arc::clone(&rows)).await else {
        return Ok(());
    };
    if !conn.ping().await {
        return Err(SinkError::transient(batch_error));
    }
    let mut rejected = 0;
    let mut reason = None;
    for row in rows.iter() {
        if let Err(error) = conn.insert(Arc::from([row.clone()])).await {
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
