//! Reading CSV rows into records, on a blocking thread (the csv crate reads
//! synchronously), handed to the import one at a time.

use sha2::{Digest, Sha256};
use tokio::sync::mpsc::Sender;

use super::columns::{self, CsvColumns, Field};
use crate::record::{Outcome, UsageRecord};

/// What the reader found next.
pub(super) enum Parsed {
    /// A row (numbered from 1 after the header) and its record.
    Record(u64, Box<UsageRecord>),
    /// A row skipped as asked.
    Skipped(u64),
    /// A row that is not a record, and why.
    Bad(u64, String),
    /// The header does not name the columns asked for.
    Columns(String),
    /// Reading failed.
    Failed(std::io::Error),
}

/// Reads `input` to its end, or until the receiver is gone.
pub(super) fn read<R: std::io::Read>(
    input: R,
    columns: &CsvColumns,
    skip: u64,
    tx: &Sender<Parsed>,
) {
    let mut reader = csv::ReaderBuilder::new().from_reader(input);
    let headers = match reader.headers() {
        Ok(headers) => headers.clone(),
        Err(e) => {
            let _ = tx.blocking_send(error(e, 0));
            return;
        }
    };
    let index = |name: &str| headers.iter().position(|h| h == name);
    let Some(time) = index(&columns.started_at.0) else {
        let missing = format!("no column {:?} for the start time", columns.started_at.0);
        let _ = tx.blocking_send(Parsed::Columns(missing));
        return;
    };
    let mut fields = Vec::with_capacity(columns.fields.len());
    for (field, name) in &columns.fields {
        match index(name) {
            Some(i) => fields.push((*field, name.as_str(), i)),
            None => {
                let _ = tx.blocking_send(Parsed::Columns(format!("no column {name:?}")));
                return;
            }
        }
    }
    let mut cells = csv::StringRecord::new();
    let mut row = 0u64;
    loop {
        match reader.read_record(&mut cells) {
            Ok(true) => row += 1,
            Ok(false) => return,
            Err(e) => {
                let _ = tx.blocking_send(error(e, row + 1));
                return;
            }
        }
        let parsed = if row <= skip {
            Parsed::Skipped(row)
        } else {
            match record(&cells, time, columns, &fields) {
                Ok(record) => Parsed::Record(row, Box::new(record)),
                Err(reason) => Parsed::Bad(row, reason),
            }
        };
        let stop = matches!(parsed, Parsed::Bad(..));
        if tx.blocking_send(parsed).is_err() || stop {
            return;
        }
    }
}

fn error(e: csv::Error, row: u64) -> Parsed {
    if e.is_io_error() {
        if let csv::ErrorKind::Io(io) = e.into_kind() {
            return Parsed::Failed(io);
        }
        return Parsed::Failed(std::io::Error::other("reading failed"));
    }
    Parsed::Bad(row, e.to_string())
}

/// The record of one row.
fn record(
    cells: &csv::StringRecord,
    time: usize,
    columns: &CsvColumns,
    fields: &[(Field, &str, usize)],
) -> Result<UsageRecord, String> {
    let (time_name, format) = &columns.started_at;
    let at = columns::time(cells.get(time).unwrap_or(""), *format)
        .map_err(|e| format!("column {time_name:?}: {e}"))?;
    let mut record = UsageRecord::starting_at(at);
    let (mut has_id, mut has_outcome) = (false, false);
    for &(field, name, i) in fields {
        let mut cell = cells.get(i).unwrap_or("");
        if columns.own_export && field.is_text() {
            // The export put a `'` before text a spreadsheet would run, and before text
            // that starts with one: one comes off.
            cell = cell.strip_prefix('\'').unwrap_or(cell);
        }
        if cell.is_empty() {
            continue;
        }
        columns::set(&mut record, field, cell).map_err(|e| format!("column {name:?}: {e}"))?;
        has_id |= field == Field::Id;
        has_outcome |= field == Field::Outcome;
    }
    if !has_outcome {
        if let Some(status) = record.status {
            record.outcome = Outcome::from_status(status);
        }
    }
    if !has_id {
        record.id = derived_id(&record, cells);
    }
    Ok(record)
}

/// A version 7 id with the record's start time whose other bits come from the row's
/// cells: the same row gives the same id, so importing a file again stores nothing
/// twice, and two different rows get different ids.
fn derived_id(record: &UsageRecord, cells: &csv::StringRecord) -> uuid::Uuid {
    let mut hash = Sha256::new();
    for cell in cells {
        hash.update((cell.len() as u64).to_le_bytes());
        hash.update(cell.as_bytes());
    }
    let digest = hash.finalize();
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest[..10]);
    let millis = u64::try_from(record.started_at.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}
