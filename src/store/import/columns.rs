//! Which CSV column holds which field of a record, and how a cell is read.

use chrono::{DateTime, Utc};

use crate::record::UsageRecord;

/// A field of [`UsageRecord`] a CSV column can fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// The record's UUID; without it, an id is derived from the row (the same row gives
    /// the same id, so an import run again stores nothing twice).
    Id,
    /// The request method.
    Method,
    /// The route.
    Route,
    /// The HTTP status; without an outcome column, the outcome follows from it.
    Status,
    /// The outcome by name (`success`, `client_error`, …).
    Outcome,
    /// Time to first byte, microseconds.
    TtfbMicros,
    /// Time to first byte, milliseconds (a decimal number).
    TtfbMillis,
    /// Duration, microseconds.
    DurationMicros,
    /// Duration, milliseconds (a decimal number).
    DurationMillis,
    /// The request body's bytes.
    RequestBytes,
    /// The response body's bytes.
    ResponseBytes,
    /// The user.
    User,
    /// The service.
    Service,
    /// The model.
    Model,
    /// The model the request asked for.
    RequestedModel,
    /// The provider.
    Provider,
    /// The client platform by name (`browser`, `sdk`, …).
    Client,
    /// The country.
    Country,
    /// Input tokens.
    TokensIn,
    /// Output tokens.
    TokensOut,
    /// Cached input tokens.
    TokensCachedIn,
    /// Input tokens written to a cache.
    TokensCacheWriteIn,
    /// Cost in integer micro-units.
    CostMicros,
    /// Metadata as JSON text.
    Metadata,
}

/// How the start-time column is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeFormat {
    /// RFC 3339 (`2026-11-01T12:00:00.123456Z`), any offset.
    Rfc3339,
    /// Seconds since the Unix epoch, a decimal number.
    UnixSeconds,
    /// Milliseconds since the Unix epoch.
    UnixMillis,
    /// Microseconds since the Unix epoch.
    UnixMicros,
}

/// The columns of a CSV file to import, by their header names: the start time's column
/// and format, and a column for each other field it has. Empty cells are missing values.
///
/// ```
/// use tower_usage::store::{CsvColumns, Field, TimeFormat};
///
/// // A usage log table exported by another tool.
/// let columns = CsvColumns::new("created_at", TimeFormat::UnixMillis)
///     .column(Field::User, "user_email")
///     .column(Field::Model, "model")
///     .column(Field::TokensIn, "prompt_tokens")
///     .column(Field::TokensOut, "completion_tokens")
///     .column(Field::DurationMillis, "latency_ms");
/// # drop(columns);
/// ```
#[derive(Debug, Clone)]
pub struct CsvColumns {
    pub(super) started_at: (String, TimeFormat),
    pub(super) fields: Vec<(Field, String)>,
    /// The crate's own export: formula cells carry a leading `'` to take off.
    pub(super) own_export: bool,
}

impl CsvColumns {
    /// The start time is in the column named `header`, written as `format`.
    pub fn new(header: impl Into<String>, format: TimeFormat) -> Self {
        CsvColumns {
            started_at: (header.into(), format),
            fields: Vec::new(),
            own_export: false,
        }
    }

    /// `field` is in the column named `header` (a later call for the same field wins).
    pub fn column(mut self, field: Field, header: impl Into<String>) -> Self {
        self.fields.retain(|(f, _)| *f != field);
        self.fields.push((field, header.into()));
        self
    }

    /// The columns of [`DieselStore::export_csv`](crate::store::DieselStore::export_csv).
    pub fn export() -> Self {
        use Field as F;
        let mut columns = CsvColumns::new("started_at", TimeFormat::Rfc3339);
        for (field, header) in [
            (F::Id, "id"),
            (F::Method, "method"),
            (F::Route, "route"),
            (F::Status, "status"),
            (F::Outcome, "outcome"),
            (F::TtfbMicros, "ttfb_us"),
            (F::DurationMicros, "duration_us"),
            (F::RequestBytes, "request_bytes"),
            (F::ResponseBytes, "response_bytes"),
            (F::User, "user"),
            (F::Service, "service"),
            (F::Model, "model"),
            (F::RequestedModel, "requested_model"),
            (F::Provider, "provider"),
            (F::Client, "client"),
            (F::Country, "country"),
            (F::TokensIn, "tokens_in"),
            (F::TokensOut, "tokens_out"),
            (F::TokensCachedIn, "tokens_cached_input"),
            (F::TokensCacheWriteIn, "tokens_cache_write_input"),
            (F::CostMicros, "cost_micros"),
            (F::Metadata, "metadata"),
        ] {
            columns = columns.column(field, header);
        }
        columns.own_export = true;
        columns
    }
}

/// A start time read as `format`.
pub(super) fn time(cell: &str, format: TimeFormat) -> Result<DateTime<Utc>, String> {
    let bad = || format!("{cell:?} is not a time as {format:?}");
    match format {
        TimeFormat::Rfc3339 => DateTime::parse_from_rfc3339(cell)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| bad()),
        TimeFormat::UnixSeconds => {
            let seconds: f64 = cell.parse().map_err(|_| bad())?;
            let micros = (seconds * 1e6).round();
            if !micros.is_finite() || micros.abs() > 9.0e18 {
                return Err(bad());
            }
            DateTime::from_timestamp_micros(micros as i64).ok_or_else(bad)
        }
        TimeFormat::UnixMillis => {
            let millis: i64 = cell.parse().map_err(|_| bad())?;
            DateTime::from_timestamp_millis(millis).ok_or_else(bad)
        }
        TimeFormat::UnixMicros => {
            let micros: i64 = cell.parse().map_err(|_| bad())?;
            DateTime::from_timestamp_micros(micros).ok_or_else(bad)
        }
    }
}

/// Sets `field` of `record` from a non-empty `cell`.
pub(super) fn set(record: &mut UsageRecord, field: Field, cell: &str) -> Result<(), String> {
    fn number<T: std::str::FromStr>(cell: &str) -> Result<T, String> {
        cell.parse()
            .map_err(|_| format!("{cell:?} is not a whole number in range"))
    }
    fn millis(cell: &str) -> Result<std::time::Duration, String> {
        let ms: f64 = cell
            .parse()
            .map_err(|_| format!("{cell:?} is not a number"))?;
        std::time::Duration::try_from_secs_f64(ms / 1e3)
            .map_err(|_| format!("{cell:?} is not a duration in milliseconds"))
    }
    let micros = |cell: &str| number::<u64>(cell).map(std::time::Duration::from_micros);
    let text = || Some(cell.to_owned());
    let t = &mut record.tokens;
    match field {
        Field::Id => record.id = cell.parse().map_err(|e| format!("bad id: {e}"))?,
        Field::Method => {
            record.method =
                Some(http::Method::from_bytes(cell.as_bytes()).map_err(|e| e.to_string())?)
        }
        Field::Route => record.route = text(),
        Field::Status => {
            let status = http::StatusCode::from_u16(number(cell)?).map_err(|e| e.to_string())?;
            record.status = Some(status);
        }
        Field::Outcome => {
            record.outcome = cell
                .parse()
                .map_err(|_| format!("{cell:?} is not an outcome"))?
        }
        Field::TtfbMicros => record.ttfb = Some(micros(cell)?),
        Field::TtfbMillis => record.ttfb = Some(millis(cell)?),
        Field::DurationMicros => record.duration = micros(cell)?,
        Field::DurationMillis => record.duration = millis(cell)?,
        Field::RequestBytes => record.request_bytes = Some(number(cell)?),
        Field::ResponseBytes => record.response_bytes = number(cell)?,
        Field::User => record.user = text(),
        Field::Service => record.service = text(),
        Field::Model => record.model = text(),
        Field::RequestedModel => record.requested_model = text(),
        Field::Provider => record.provider = text(),
        Field::Client => {
            record.client = cell
                .parse()
                .map_err(|_| format!("{cell:?} is not a client platform"))?
        }
        Field::Country => record.country = text(),
        Field::TokensIn => t.input = number(cell)?,
        Field::TokensOut => t.output = number(cell)?,
        Field::TokensCachedIn => t.cached_input = number(cell)?,
        Field::TokensCacheWriteIn => t.cache_write_input = number(cell)?,
        Field::CostMicros => record.cost_micros = Some(number(cell)?),
        Field::Metadata => {
            record.metadata =
                serde_json::from_str(cell).map_err(|e| format!("bad metadata: {e}"))?
        }
    }
    Ok(())
}

impl Field {
    /// Whether the crate's export writes it as text, which it guards against spreadsheet
    /// formulas with a leading `'`.
    pub(super) fn is_text(self) -> bool {
        matches!(
            self,
            Field::Method
                | Field::Route
                | Field::User
                | Field::Service
                | Field::Model
                | Field::RequestedModel
                | Field::Provider
                | Field::Country
                | Field::Metadata
        )
    }
}
