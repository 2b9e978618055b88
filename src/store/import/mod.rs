//! Loading history: records in the JSON-lines or CSV form the store exports, or in a plain
//! CSV file with named columns. Records crowded in time go through the write path; those
//! spread thin go pending, and each 7-day block they fall in is then settled once, in time
//! order (see the store's `pending` module): exact, whatever the order of the input, and
//! running an import again stores nothing twice (the ids).

mod columns;
mod csv_rows;

pub use columns::{CsvColumns, Field, TimeFormat};

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::pending;
use super::schema::row::Row;
use super::{DieselStore, StoreError};
use crate::record::UsageRecord;
use crate::sink::SinkError;
use csv_rows::Parsed;

/// Records read per batch: the write path folds a batch's records of one slot and key
/// into one rollup row, and pending records are appended, so fewer, larger batches cost
/// less; 20,000 records hold a few megabytes.
const BATCH: usize = 20_000;
/// Records the CSV reader may parse ahead of the batch being written.
const READ_AHEAD: usize = 8_000;

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
    /// Every record was stored, but the blocks they fall in could not be settled: until
    /// the next import, [`DieselStore::settle`] or [`DieselStore::connect`] settles them,
    /// no answer counts the records still pending there.
    #[error(
        "the records up to line {line} are stored, but their rollups were not rebuilt: {source}"
    )]
    Rollups {
        /// The last line read.
        line: u64,
        /// Why.
        #[source]
        source: StoreError,
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
            ImportError::Read { line, .. }
            | ImportError::Write { line, .. }
            | ImportError::Rollups { line, .. } => *line,
        }
    }
}

impl DieselStore {
    /// Imports the records of `input`, one JSON object per line as
    /// [`export_json_lines`](Self::export_json_lines) writes them, after skipping its
    /// first `skip` lines, in batches of 20,000. Records crowded in time (16 or more of a
    /// batch in a 15-minute slot, as records in time order are) go through the store's
    /// write path; those spread thin go pending, and once the input is read, each 7-day
    /// block they fell in is settled once: its pending records move into the records
    /// table (and its partitions) in time order, and its rollups are rebuilt from its
    /// records. A record the store holds already is ignored. In any order of the input,
    /// records and rollups are exact once this returns; while it runs, no answer counts
    /// the records still pending. An import stopped part way can be run again from the
    /// start, or from [`ImportError::lines_done`], and stores every record once; the
    /// blocks a crash left pending are settled by the next import,
    /// [`settle`](Self::settle) or `connect`.
    ///
    /// Records older than the retention horizon ([`DieselStore::retained`]) go through
    /// the ordinary write path instead: their blocks' rollups hold sums of records no
    /// longer there, and are added to, not rebuilt.
    ///
    /// A line that is not a record stops the import with its number, after the records
    /// before it were written and their rollups rebuilt; blank lines are skipped.
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
        let mut import = self.start_import().await?;
        loop {
            let line = match lines.next_line().await {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(source) => {
                    let line = import.report.lines;
                    return self
                        .end(import, Some(ImportError::Read { line, source }))
                        .await;
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
                    let reason = e.to_string();
                    let stopped = ImportError::Line {
                        line: number,
                        reason,
                    };
                    return self.end(import, Some(stopped)).await;
                }
            }
            if import.batch.len() >= BATCH {
                if let Err(error) = self.import_batch(&mut import).await {
                    return self.end(import, Some(error)).await;
                }
            }
        }
        self.end(import, None).await
    }

    /// Imports the records of a CSV file with a header row, its columns named by
    /// `columns` ([`CsvColumns::export`] for the store's own
    /// [`export_csv`](Self::export_csv)), after skipping its first `skip` rows, as
    /// [`import_json_lines`](Self::import_json_lines) does: records spread thin pending,
    /// then each block they fell in settled once, a record the store holds already
    /// ignored. A file without an id column gets
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
        let (tx, mut rx) = tokio::sync::mpsc::channel(READ_AHEAD);
        let columns = columns.clone();
        // The reader stops at the input's end, or at its next row once the receiver is gone.
        tokio::task::spawn_blocking(move || csv_rows::read(input, &columns, skip, &tx));
        let mut import = self.start_import().await?;
        while let Some(parsed) = rx.recv().await {
            let stopped = match parsed {
                Parsed::Record(row, record) => {
                    import.report.lines = row;
                    import.batch.push(*record);
                    if import.batch.len() < BATCH {
                        continue;
                    }
                    match self.import_batch(&mut import).await {
                        Ok(()) => continue,
                        Err(error) => error,
                    }
                }
                Parsed::Skipped(row) => {
                    import.report.lines = row;
                    import.done = row;
                    continue;
                }
                Parsed::Bad(row, reason) => ImportError::Row { row, reason },
                Parsed::Columns(reason) => ImportError::Columns(reason),
                Parsed::Failed(source) => ImportError::Read {
                    line: import.report.lines,
                    source,
                },
            };
            return self.end(import, Some(stopped)).await;
        }
        self.end(import, None).await
    }

    /// An import starting: the records' retention horizon is read once.
    async fn start_import(&self) -> Result<Import, ImportError> {
        let horizons = self.horizons().await.map_err(|e| ImportError::Write {
            line: 0,
            source: SinkError::transient(e),
        })?;
        Ok(Import {
            raw_before_us: horizons.raw_before_us,
            ..Import::default()
        })
    }

    /// Writes what is left of the batch and rebuilds the rollups of the blocks written
    /// to (and of any an earlier import left), even when the import `stopped` on an
    /// error: what was stored is then exact too.
    async fn end(
        &self,
        mut import: Import,
        stopped: Option<ImportError>,
    ) -> Result<ImportReport, ImportError> {
        let written = self.import_batch(&mut import).await;
        let rebuilt = self.settle().await;
        if let Some(stopped) = stopped.or(written.err()) {
            if let Err(error) = rebuilt {
                tracing::warn!(%error, "tower-usage: the rollups of imported records were not rebuilt; the next import, settle or connect rebuilds them");
            }
            return Err(stopped);
        }
        rebuilt.map_err(|source| ImportError::Rollups {
            line: import.report.lines,
            source,
        })?;
        Ok(import.report)
    }

    /// Writes and empties the import's batch, which holds the records of its lines after
    /// `done`.
    async fn import_batch(&self, import: &mut Import) -> Result<(), ImportError> {
        if import.batch.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut import.batch);
        match self.write_history(&records, import.raw_before_us).await {
            Ok(rejected) => {
                import.report.records += records.len() as u64;
                import.report.rejected += rejected;
                import.done = import.report.lines;
                Ok(())
            }
            Err(source) => Err(ImportError::Write {
                line: import.done,
                source,
            }),
        }
    }

    /// Stores `records` and says how many the database refused. Those spread thin over
    /// time (see `pending::spread`), as history in random order or sparse history is, go
    /// pending; the others, as records in time order come, through the write path, whose
    /// rollups then cost little more than the rows.
    async fn write_history(
        &self,
        records: &[UsageRecord],
        raw_before_us: Option<i64>,
    ) -> Result<u64, SinkError> {
        let rows: Vec<Row> = records.iter().map(Row::from).collect();
        let (thin, now) = pending::spread_thin(rows, raw_before_us.unwrap_or(i64::MIN));
        let mut rejected = 0;
        if !now.is_empty() {
            rejected += refused(self.write_now(now).await)?;
        }
        let thin: std::sync::Arc<[Row]> = thin.into();
        if !thin.is_empty() && self.store_pending(thin.clone()).await.is_err() {
            // A row the database refuses, or a lost connection: the write path tells
            // which, and stores the good rows.
            rejected += refused(self.write_now(thin.to_vec()).await)?;
        }
        Ok(rejected)
    }
}

/// How many records a write path's batch refused, or its failure.
fn refused(written: Result<(), SinkError>) -> Result<u64, SinkError> {
    match written {
        Ok(()) => Ok(0),
        Err(SinkError::Rejected { count, .. }) => Ok(count as u64),
        Err(error) => Err(error),
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
    /// The records' retention horizon when the import started.
    raw_before_us: Option<i64>,
}
