//! Exports: every record a filter selects, oldest first, read a page at a time by key
//! (start time, id) so memory stays flat however many rows there are: a page holds at
//! most [`PAGE`] rows and, past its first row, about [`PAGE_BYTES`]; what is written
//! goes out whenever [`OUT_BYTES`] have gathered.

use chrono::SecondsFormat;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::plan;
use crate::query::Filter;
use crate::store::records::{self, PAGE};
use crate::store::schema::row::Row;
use crate::store::sql::{Dialect, Sql};
use crate::store::{DieselStore, StoreError};
use crate::UsageRecord;

/// About the most bytes of rows a page holds past its first row: metadata has no size
/// limit, so a page of large records is cut short by the database.
const PAGE_BYTES: i64 = 8 << 20;
/// A row's columns other than the metadata, counted generously (they are bounded).
const ROW_BYTES: i64 = 1_024;
/// The most bytes of output gathered before they are written out.
const OUT_BYTES: usize = 1 << 20;

/// The CSV columns, in order.
const HEADER: [&str; 23] = [
    "id",
    "started_at",
    "method",
    "route",
    "status",
    "outcome",
    "ttfb_us",
    "duration_us",
    "request_bytes",
    "response_bytes",
    "user",
    "service",
    "model",
    "requested_model",
    "provider",
    "client",
    "country",
    "tokens_in",
    "tokens_out",
    "tokens_cached_input",
    "tokens_cache_write_input",
    "cost_micros",
    "metadata",
];

#[derive(Debug, Clone, Copy)]
enum Format {
    Csv,
    JsonLines,
}

impl DieselStore {
    /// Writes every record `filter` selects as CSV (RFC 4180, a header row, oldest
    /// first) and returns how many were written.
    ///
    /// Text cells that a spreadsheet would run as a formula (starting with `=`, `+`, `-`,
    /// `@`, a tab or a carriage return) get a leading `'`, and so do text cells that start
    /// with `'`, so that [`import_csv`](Self::import_csv) takes exactly one off. Times are
    /// RFC 3339 in UTC with microseconds; durations are whole microseconds.
    ///
    /// ```
    /// use tower_usage::query::{Filter, TimeRange};
    /// use tower_usage::{store::DieselStore, UsageRecord, UsageSink};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = DieselStore::connect("sqlite::memory:").await?;
    /// let mut record = UsageRecord::builder().user("=cmd()").build();
    /// record.started_at -= chrono::Duration::minutes(1);
    /// store.write_batch(&[record]).await?;
    ///
    /// let mut csv = Vec::new();
    /// let rows = store.export_csv(&Filter::new(TimeRange::last_hours(1)), &mut csv).await?;
    /// assert_eq!(rows, 1);
    /// assert!(String::from_utf8(csv)?.contains(",'=cmd(),"));
    /// # Ok(()) }
    /// ```
    pub async fn export_csv<W>(&self, filter: &Filter, writer: W) -> Result<u64, StoreError>
    where
        W: AsyncWrite + Unpin + Send,
    {
        self.export(filter, writer, Format::Csv).await
    }

    /// Writes every record `filter` selects as JSON lines (one [`UsageRecord`] per line,
    /// with its own field names, oldest first) and returns how many were written.
    pub async fn export_json_lines<W>(&self, filter: &Filter, writer: W) -> Result<u64, StoreError>
    where
        W: AsyncWrite + Unpin + Send,
    {
        self.export(filter, writer, Format::JsonLines).await
    }

    async fn export<W>(
        &self,
        filter: &Filter,
        mut writer: W,
        format: Format,
    ) -> Result<u64, StoreError>
    where
        W: AsyncWrite + Unpin + Send,
    {
        filter.check_names()?;
        let (from, to) = filter.range.micros(self.inner.limits.max_range)?;
        let mut after: Option<(i64, Vec<u8>)> = None;
        let mut written = 0u64;
        let mut buf = Vec::with_capacity(OUT_BYTES + ROW_BYTES as usize);
        if let Format::Csv = format {
            let mut csv = csv::Writer::from_writer(&mut buf);
            csv.write_record(HEADER).map_err(csv_error)?;
            csv.flush().map_err(StoreError::Write)?;
        }
        loop {
            let sql = page(self.dialect(), filter, from, to, after.as_ref());
            let rows: Vec<Row> = self.load_analytics(sql, false).await?;
            // A page cut short by its bytes holds fewer rows: only an empty one ends.
            let Some(last) = rows.last() else { break };
            after = Some((last.started_at_us, last.id.clone()));
            for row in rows {
                let record = UsageRecord::try_from(row)?;
                match format {
                    Format::Csv => write_csv(&mut buf, &record)?,
                    Format::JsonLines => {
                        serde_json::to_writer(&mut buf, &record)
                            .map_err(|e| StoreError::Write(e.into()))?;
                        buf.push(b'\n');
                    }
                }
                written += 1;
                if buf.len() >= OUT_BYTES {
                    writer.write_all(&buf).await.map_err(StoreError::Write)?;
                    buf.clear();
                }
            }
        }
        writer.write_all(&buf).await.map_err(StoreError::Write)?;
        writer.flush().await.map_err(StoreError::Write)?;
        Ok(written)
    }
}

/// The next page after `after`, in key order: at most [`PAGE`] rows, and only as many
/// of them as fit in [`PAGE_BYTES`] (at least one), counted by the database so that
/// large rows are never read past the budget.
pub(crate) fn page(
    dialect: Dialect,
    filter: &Filter,
    from: i64,
    to: i64,
    after: Option<&(i64, Vec<u8>)>,
) -> Sql {
    let metadata_bytes = match dialect {
        Dialect::Sqlite => "LENGTH(CAST(metadata AS BLOB))",
        Dialect::Postgres => "octet_length(CAST(metadata AS TEXT))",
        Dialect::Mysql => "LENGTH(metadata)",
    };
    let size = format!("({ROW_BYTES} + COALESCE({metadata_bytes}, 0))");
    let mut sql = Sql::new(dialect);
    sql.push("SELECT * FROM (SELECT ")
        .push(records::columns(dialect))
        .push(", ")
        .push(&size)
        .push(" AS row_bytes, SUM(")
        .push(&size)
        .push(") OVER (ORDER BY started_at_us, id) AS page_bytes");
    sql.push(" FROM (SELECT * FROM usage_records");
    plan::raw_where(&mut sql, filter, from, to);
    records::after_key(&mut sql, after);
    sql.push(" ORDER BY started_at_us, id LIMIT ").int(PAGE);
    sql.push(") r) t WHERE page_bytes - row_bytes < ")
        .int(PAGE_BYTES)
        .push(" ORDER BY started_at_us, id");
    sql
}

fn csv_error(e: csv::Error) -> StoreError {
    StoreError::Write(std::io::Error::other(e))
}

/// `text` made safe to open in a spreadsheet; text that starts with the `'` this adds
/// gets one too, so an import takes exactly one off.
fn neutralize(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r', '\'']) {
        format!("'{text}").into()
    } else {
        text.into()
    }
}

fn write_csv(buf: &mut Vec<u8>, r: &UsageRecord) -> Result<(), StoreError> {
    let text = |v: Option<&str>| v.map(neutralize).unwrap_or_default().into_owned();
    let num = |v: Option<String>| v.unwrap_or_default();
    let metadata = if r.metadata.is_null() {
        String::new()
    } else {
        neutralize(&r.metadata.to_string()).into_owned()
    };
    let cells = [
        r.id.to_string(),
        r.started_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        text(r.method.as_ref().map(http::Method::as_str)),
        text(r.route.as_deref()),
        num(r.status.map(|s| s.as_u16().to_string())),
        r.outcome.as_str().to_owned(),
        num(r.ttfb.map(|d| d.as_micros().to_string())),
        r.duration.as_micros().to_string(),
        num(r.request_bytes.map(|n| n.to_string())),
        r.response_bytes.to_string(),
        text(r.user.as_deref()),
        text(r.service.as_deref()),
        text(r.model.as_deref()),
        text(r.requested_model.as_deref()),
        text(r.provider.as_deref()),
        r.client.as_str().to_owned(),
        text(r.country.as_deref()),
        r.tokens.input.to_string(),
        r.tokens.output.to_string(),
        r.tokens.cached_input.to_string(),
        r.tokens.cache_write_input.to_string(),
        num(r.cost_micros.map(|c| c.to_string())),
        metadata,
    ];
    let mut csv = csv::Writer::from_writer(buf);
    csv.write_record(&cells).map_err(csv_error)?;
    csv.flush().map_err(StoreError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records with 1 MiB of metadata each: a page holds only as many as fit in its
    /// byte budget (and at least one), and the export still writes every record.
    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn a_page_of_large_records_is_cut_by_its_bytes() -> Result<(), StoreError> {
        use crate::sink::UsageSink;
        let store = DieselStore::connect("sqlite::memory:").await.unwrap();
        let start = chrono::Utc::now() - chrono::Duration::hours(1);
        let big = serde_json::json!({"blob": "x".repeat(1 << 20)});
        let records: Vec<UsageRecord> = (0..20)
            .map(|i| {
                UsageRecord::builder()
                    .started_at(start + chrono::Duration::seconds(i))
                    .metadata(big.clone())
                    .build()
            })
            .collect();
        store.write_batch(&records).await.unwrap();
        let filter = Filter::new(crate::query::TimeRange::last_hours(2));
        let (from, to) = filter.range.micros(std::time::Duration::MAX).unwrap();
        let sql = page(Dialect::Sqlite, &filter, from, to, None);
        let rows: Vec<Row> = store.load(sql).await.unwrap();
        let fit = (PAGE_BYTES >> 20) as usize;
        assert!((1..=fit + 1).contains(&rows.len()), "{} rows", rows.len());
        let mut out = Vec::new();
        assert_eq!(
            store.export_json_lines(&filter, &mut out).await.unwrap(),
            20
        );
        let lines: Vec<&[u8]> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 20);
        let first: UsageRecord = serde_json::from_slice(lines[0]).unwrap();
        assert_eq!(first.metadata, big);
        Ok(())
    }

    #[test]
    fn formula_cells_are_neutralized() {
        for bad in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "'=1", "'"] {
            assert_eq!(neutralize(bad), format!("'{bad}"));
        }
        assert_eq!(neutralize("alice"), "alice");
    }
}
