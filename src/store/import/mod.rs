//! Loading history: records in the JSON-lines form the store exports, written in batches
//! through the store's own write path (its transactions, rollups and partitions), so an
//! import is exact, and running it again stores nothing twice (the ids).

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::DieselStore;
use crate::record::UsageRecord;
use crate::sink::{SinkError, UsageSink};

/// Records written per batch.
const BATCH: usize = 2_000;

/// What [`DieselStore::import_json_lines`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// Lines read, blank ones and the skipped ones included: where to start again.
    pub lines: u64,
    /// Records handed to the store (those it held already are ignored by it).
    pub records: u64,
    /// Records the database refused (a NUL byte in a PostgreSQL string, say); the
    /// others of their batch are stored.
    pub rejected: u64,
}

/// Why an import stopped. Every record of the lines before the one named was handed to
/// the store; [`ImportReport::lines`] of what was read is in the error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// A line is not a record.
    #[error("line {line}: not a record: {reason}")]
    Line {
        /// The line, from 1.
        line: u64,
        /// Why.
        reason: String,
    },
    /// Reading the input failed.
    #[error("reading the input failed after line {line}: {source}")]
    Read {
        /// The last line read whole.
        line: u64,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store failed to write a batch; the lines after `line` were not written.
    #[error("writing the records up to line {line} failed: {source}")]
    Write {
        /// The last line of the batch before the one that failed.
        line: u64,
        /// Why.
        #[source]
        source: SinkError,
    },
}

impl ImportError {
    /// The lines whose records are all stored: an import started again after them
    /// ([`DieselStore::import_json_lines`]'s `skip`) misses none.
    pub fn lines_done(&self) -> u64 {
        match self {
            ImportError::Line { line, .. } => line - 1,
            ImportError::Read { line, .. } | ImportError::Write { line, .. } => *line,
        }
    }
}

impl DieselStore {
    /// Imports the records of `input`, one JSON object per line as
    /// [`export_json_lines`](Self::export_json_lines) writes them, after skipping its
    /// first `skip` lines, in batches through the store's write path: rollups, per-user
    /// sums and partitions are kept as for any batch, and a record the store holds
    /// already is ignored, so an import stopped part way can be run again from the
    /// start, or from [`ImportError::lines_done`], and stores every record once.
    ///
    /// A line that is not a record stops the import with its number, after the records
    /// before it were written; blank lines are skipped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_usage::query::{Filter, TimeRange};
    /// use tower_usage::{store::DieselStore, UsageRecord, UsageSink};
    ///
    /// let old = DieselStore::connect("sqlite::memory:").await?;
    /// old.write_batch(&[UsageRecord::builder().user("alice").build()]).await?;
    /// let mut lines = Vec::new();
    /// old.export_json_lines(&Filter::new(TimeRange::last_hours(1)), &mut lines).await?;
    ///
    /// let new = DieselStore::connect("sqlite::memory:").await?;
    /// let report = new.import_json_lines(&lines[..], 0).await?;
    /// assert_eq!((report.lines, report.records), (1, 1));
    /// assert_eq!(new.recent(1).await?, old.recent(1).await?);
    /// # Ok(()) }
    /// ```
    pub async fn import_json_lines<R>(
        &self,
        input: R,
        skip: u64,
    ) -> Result<ImportReport, ImportError>
    where
        R: AsyncBufRead + Unpin + Send,
    {
        let mut lines = input.lines();
        let mut import = Import::default();
        loop {
            let line = match lines.next_line().await {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(source) => {
                    self.import_batch(&mut import).await?;
                    let line = import.report.lines;
                    return Err(ImportError::Read { line, source });
                }
            };
            let number = import.report.lines + 1;
            if number <= skip || line.trim().is_empty() {
                import.report.lines = number;
                if import.batch.is_empty() {
                    import.done = number;
                }
                continue;
            }
            match serde_json::from_str::<UsageRecord>(&line) {
                Ok(record) => {
                    import.report.lines = number;
                    import.batch.push(record);
                }
                Err(e) => {
                    self.import_batch(&mut import).await?;
                    return Err(ImportError::Line {
                        line: number,
                        reason: e.to_string(),
                    });
                }
            }
            if import.batch.len() == BATCH {
                self.import_batch(&mut import).await?;
            }
        }
        self.import_batch(&mut import).await?;
        Ok(import.report)
    }

    /// Writes and empties the import's batch, which holds the records of its lines after
    /// `done`.
    async fn import_batch(&self, import: &mut Import) -> Result<(), ImportError> {
        if import.batch.is_empty() {
            return Ok(());
        }
        let written = self.write_batch(&import.batch).await;
        let n = import.batch.len() as u64;
        import.batch.clear();
        match written {
            Ok(()) => import.report.records += n,
            Err(SinkError::Rejected { count, .. }) => {
                import.report.records += n;
                import.report.rejected += count as u64;
            }
            Err(source) => {
                return Err(ImportError::Write {
                    line: import.done,
                    source,
                })
            }
        }
        import.done = import.report.lines;
        Ok(())
    }
}

/// An import under way.
#[derive(Default)]
struct Import {
    report: ImportReport,
    /// Records read and not yet written.
    batch: Vec<UsageRecord>,
    /// The lines whose records are all stored.
    done: u64,
}
