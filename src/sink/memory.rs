use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use uuid::Uuid;

use super::{SinkError, UsageSink};
use crate::record::UsageRecord;

/// Keeps records in memory, in the order they were written, for tests and examples.
///
/// Like a database store it ignores a record whose id it already holds, so a retried
/// batch does not count twice. Clones share the same records.
///
/// ```
/// use tower_usage::{MemorySink, Recorder, UsageRecord};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let sink = MemorySink::new();
/// let recorder = Recorder::builder(sink.clone()).spawn();
/// recorder.record(UsageRecord::builder().user("u").build()).unwrap();
/// recorder.shutdown().await;
/// assert_eq!(sink.records()[0].user.as_deref(), Some("u"));
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    inner: Arc<Mutex<Stored>>,
}

#[derive(Debug, Default)]
struct Stored {
    records: Vec<UsageRecord>,
    ids: HashSet<Uuid>,
    duplicates: u64,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Stored> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of every record stored so far.
    pub fn records(&self) -> Vec<UsageRecord> {
        self.lock().records.clone()
    }

    /// Removes and returns every record stored so far.
    pub fn take(&self) -> Vec<UsageRecord> {
        let mut stored = self.lock();
        stored.ids.clear();
        std::mem::take(&mut stored.records)
    }

    /// How many records are stored.
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Whether no record is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many records were ignored because their id was already stored.
    pub fn duplicates_ignored(&self) -> u64 {
        self.lock().duplicates
    }
}

#[async_trait]
impl UsageSink for MemorySink {
    async fn write_batch(&self, records: &[UsageRecord]) -> Result<(), SinkError> {
        let mut stored = self.lock();
        for record in records {
            if stored.ids.insert(record.id) {
                stored.records.push(record.clone());
            } else {
                stored.duplicates += 1;
            }
        }
        Ok(())
    }
}
