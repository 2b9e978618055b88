//! Feeding a recorder as fast as it takes records, for the write benchmarks.

use std::time::Duration;

use tower_usage::{RecordError, Recorder, UsageRecord};

/// Pushes `records` into the recorder as fast as it takes them (a full queue makes the
/// producer wait a moment, as a server's requests would drop), then waits until all are
/// written.
pub(crate) async fn pump(recorder: &Recorder, records: Vec<UsageRecord>) {
    for record in records {
        loop {
            match recorder.record(record.clone()) {
                Ok(()) => break,
                Err(RecordError::QueueFull) => tokio::time::sleep(Duration::from_micros(500)).await,
                Err(e) => panic!("{e}"),
            }
        }
    }
    recorder.flush().await;
}
