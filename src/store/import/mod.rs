//! Loading history: records in the JSON-lines or CSV form the store exports, or in a plain
//! CSV file with named columns, written in batches through the store's own write path
//! (its transactions, rollups and partitions), so an import is exact, and running it
//! again stores nothing twice (the ids).

mod columns;
mod csv_rows;

pub use columns::{CsvColumns, Field, TimeFormat};

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::DieselStore;
use crate::record::UsageRecord;
use crate::sink::{SinkError, UsageSink};
use csv_rows::Parsed;

/// Records written per batch.
const BATCH: usize = 2_000;

/// What [`DieselStore::import_json_lines`] or [`DieselStore::import_csv`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// Lines read, blank ones and the skipped ones included (for CSV: rows after the
    /// header): where to start again.
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
    /// A CSV row is not a record.
    #[error("row {row} after the header: not a record: {reason}")]
    Row {
        /// The row, from 1 after the header.
        row: u64,
        /// Why.
        reason: String,
    },
    /// The CSV header does not name a column asked for.
    #[error("the CSV header: {0}")]
    Columns(String),
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
            ImportError::Row { row, .. } => row - 1,
            ImportError::Columns(_) => 0,
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

    /// Imports the records of a CSV file with a header row, its columns named by
    /// `columns` ([`CsvColumns::export`] for the store's own
    /// [`export_csv`](Self::export_csv)), after skipping its first `skip` rows, as
    /// [`import_json_lines`](Self::import_json_lines) does: through the store's write
    /// path, a record the store holds already ignored. A file without an id column gets
    /// ids derived from each row, so importing it again stores nothing twice; without an
    /// outcome column, the outcome follows from the status. Empty cells are missing
    /// values (the export writes an empty text the same way). The file is read on a
    /// blocking thread.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_usage::store::{CsvColumns, DieselStore, Field, TimeFormat};
    ///
    /// let csv = "when,who,model,in,out\n\
    ///            1793836800000,alice@example.com,gpt-4o,1200,300\n\
    ///            1793836801500,bob@example.com,gpt-4o-mini,80,20\n";
    /// let columns = CsvColumns::new("when", TimeFormat::UnixMillis)
    ///     .column(Field::User, "who")
    ///     .column(Field::Model, "model")
    ///     .column(Field::TokensIn, "in")
    ///     .column(Field::TokensOut, "out");
    /// let store = DieselStore::connect("sqlite::memory:").await?;
    /// let report = store.import_csv(csv.as_bytes(), &columns, 0).await?;
    /// assert_eq!(report.records, 2);
    /// store.import_csv(csv.as_bytes(), &columns, 0).await?; // again: nothing twice
    /// assert_eq!(store.count().await?, 2);
    /// # Ok(()) }
    /// ```
    pub async fn import_csv<R>(
        &self,
        input: R,
        columns: &CsvColumns,
        skip: u64,
    ) -> Result<ImportReport, ImportError>
    where
        R: std::io::Read + Send + 'static,
    {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4 * BATCH);
        let columns = columns.clone();
        // The reader stops at the input's end, or at its next row once the receiver is gone.
        tokio::task::spawn_blocking(move || csv_rows::read(input, &columns, skip, &tx));
        let mut import = Import::default();
        while let Some(parsed) = rx.recv().await {
            match parsed {
                Parsed::Record(row, record) => {
                    import.report.lines = row;
                    import.batch.push(*record);
                    if import.batch.len() == BATCH {
                        self.import_batch(&mut import).await?;
                    }
                }
                Parsed::Skipped(row) => {
                    import.report.lines = row;
                    import.done = row;
                }
                Parsed::Bad(row, reason) => {
                    self.import_batch(&mut import).await?;
                    return Err(ImportError::Row { row, reason });
                }
                Parsed::Columns(reason) => return Err(ImportError::Columns(reason)),
                Parsed::Failed(source) => {
                    self.import_batch(&mut import).await?;
                    let line = import.report.lines;
                    return Err(ImportError::Read { line, source });
                }
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
