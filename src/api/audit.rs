//! The analytics API's audit trail in its own table, `usage_audit`, written through a
//! [`UsageSink`] so that accesses travel the same recorder pipeline as usage.

use async_trait::async_trait;
use chrono::DateTime;
use diesel::sql_types::{BigInt, Binary, Nullable, SmallInt, Text};
use diesel::QueryableByName;
use uuid::Uuid;

use crate::query::{AuditEntry, AuditQuery};
use crate::sink::{SinkError, UsageSink};
use crate::store::sql::{Dialect, Sql};
use crate::store::{DieselStore, StoreError};
use crate::UsageRecord;

/// The audit table, made by the store's migrations.
const TABLE: &str = "usage_audit";
/// Its columns, in the order [`insert`] writes them and [`AuditRow`] reads them.
const COLUMNS: &str =
    "id, at_us, subject, role, method, endpoint, query, status, outcome, duration_us, reason";

/// Rows per `INSERT`: 11 values a row stays far under every backend's bind limit.
const ROWS_PER_STATEMENT: usize = 500;

/// Characters kept per column (the MySQL column widths).
mod width {
    pub(super) const SUBJECT: usize = 256;
    pub(super) const ROLE: usize = 32;
    pub(super) const METHOD: usize = 16;
    pub(super) const ENDPOINT: usize = 256;
    pub(super) const QUERY: usize = 2048;
    pub(super) const REASON: usize = 512;
}

/// Writes usage records of analytics API requests into the audit table; made by
/// [`DieselStore::audit_sink`].
///
/// A record maps onto an [`AuditEntry`]: its user is the subject, its route the
/// endpoint, and its metadata's `role`, `query` and `reason` strings the entry's
/// fields of those names. The API router (feature `api`) fills them in.
///
/// ```
/// use tower_usage::query::{AuditQuery, TimeRange};
/// use tower_usage::{store::DieselStore, Recorder, UsageRecord};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = DieselStore::connect("sqlite::memory:").await?;
/// let audit = Recorder::builder(store.audit_sink()).spawn();
/// let access = UsageRecord::builder()
///     .user("alice")
///     .route("/dashboard")
///     .status(http::StatusCode::FORBIDDEN)
///     .metadata(serde_json::json!({"role": "user", "reason": "admins only"}))
///     .build();
/// audit.record(access)?;
/// audit.shutdown().await;
/// let entries = store.audit_log(&AuditQuery::new(TimeRange::last_hours(1))).await?;
/// assert_eq!(entries[0].subject.as_deref(), Some("alice"));
/// assert_eq!(entries[0].reason.as_deref(), Some("admins only"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AuditSink {
    store: DieselStore,
}

impl DieselStore {
    /// A sink that writes into this store's audit table instead of `usage_records`
    /// (feature `api`).
    pub fn audit_sink(&self) -> AuditSink {
        AuditSink {
            store: self.clone(),
        }
    }

    /// The audit entries `query` selects, newest first (feature `api`).
    pub async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let (from, to) = query.range.micros(self.max_range())?;
        self.check_limit(query.limit)?;
        let mut sql = Sql::new(self.dialect());
        sql.push("SELECT ")
            .push(COLUMNS)
            .push(" FROM ")
            .push(TABLE)
            .push(" WHERE at_us >= ")
            .int(from)
            .push(" AND at_us < ")
            .int(to);
        if let Some(subject) = &query.subject {
            sql.push(" AND subject = ").bind_text(subject);
        }
        if query.refused_only {
            sql.push(" AND (status IS NULL OR status >= 400)");
        }
        sql.push(" ORDER BY at_us DESC, id DESC LIMIT ")
            .int(i64::try_from(query.limit).unwrap_or(i64::MAX));
        let rows: Vec<AuditRow> = self.load(sql).await?;
        rows.into_iter().map(AuditRow::entry).collect()
    }
}

#[async_trait]
impl UsageSink for AuditSink {
    async fn write_batch(&self, records: &[UsageRecord]) -> Result<(), SinkError> {
        let store = &self.store;
        let statements = records
            .chunks(ROWS_PER_STATEMENT)
            .map(|chunk| insert(store.dialect(), chunk))
            .collect();
        store
            .execute(statements)
            .await
            .map(drop)
            .map_err(SinkError::transient)
    }
}

/// One multi-row `INSERT` that skips entries already stored (a retried batch).
fn insert(dialect: Dialect, records: &[UsageRecord]) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO ")
        .push(TABLE)
        .push(" (")
        .push(COLUMNS)
        .push(") VALUES ");
    sql.list(records, ", ", |sql, record| {
        let meta = |key: &str| record.metadata.get(key).and_then(|v| v.as_str());
        let method = record.method.as_ref().map_or("", http::Method::as_str);
        let endpoint = record.route.as_deref().unwrap_or("");
        sql.push("(")
            .bind_bytes(record.id.as_bytes())
            .push(", ")
            .int(record.started_at.timestamp_micros())
            .push(", ");
        optional(sql, record.user.as_deref(), width::SUBJECT);
        sql.push(", ");
        optional(sql, meta("role"), width::ROLE);
        sql.push(", ")
            .bind_text(&clean(method, width::METHOD))
            .push(", ");
        sql.bind_text(&clean(endpoint, width::ENDPOINT)).push(", ");
        optional(sql, meta("query"), width::QUERY);
        sql.push(", ");
        match record.status {
            Some(status) => sql.int(i64::from(status.as_u16())),
            None => sql.push("NULL"),
        };
        sql.push(", ").bind_text(record.outcome.as_str()).push(", ");
        sql.int(i64::try_from(record.duration.as_micros()).unwrap_or(i64::MAX))
            .push(", ");
        optional(sql, meta("reason"), width::REASON);
        sql.push(")");
    });
    match dialect {
        Dialect::Mysql => sql.push(" ON DUPLICATE KEY UPDATE id = id"),
        Dialect::Sqlite | Dialect::Postgres => sql.push(" ON CONFLICT DO NOTHING"),
    };
    sql
}

fn optional(sql: &mut Sql, value: Option<&str>, max: usize) {
    match value {
        Some(value) => sql.bind_text(&clean(value, max)),
        None => sql.push("NULL"),
    };
}

/// Cuts `text` to `max` characters and replaces NUL, which PostgreSQL text refuses:
/// an audit entry is kept whatever a client put into its token or query.
fn clean(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c == '\0' { '\u{FFFD}' } else { c })
        .collect()
}

#[derive(QueryableByName)]
struct AuditRow {
    #[diesel(sql_type = Binary)]
    id: Vec<u8>,
    #[diesel(sql_type = BigInt)]
    at_us: i64,
    #[diesel(sql_type = Nullable<Text>)]
    subject: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    role: Option<String>,
    #[diesel(sql_type = Text)]
    method: String,
    #[diesel(sql_type = Text)]
    endpoint: String,
    #[diesel(sql_type = Nullable<Text>)]
    query: Option<String>,
    #[diesel(sql_type = Nullable<SmallInt>)]
    status: Option<i16>,
    #[diesel(sql_type = Text)]
    outcome: String,
    #[diesel(sql_type = BigInt)]
    duration_us: i64,
    #[diesel(sql_type = Nullable<Text>)]
    reason: Option<String>,
}

impl AuditRow {
    fn entry(self) -> Result<AuditEntry, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("audit entry: {what}"));
        Ok(AuditEntry {
            id: Uuid::from_slice(&self.id).map_err(|_| corrupt("id is not 16 bytes"))?,
            at: DateTime::from_timestamp_micros(self.at_us).ok_or_else(|| corrupt("time"))?,
            subject: self.subject,
            role: self.role,
            method: self.method,
            endpoint: self.endpoint,
            query: self.query,
            status: self.status.and_then(|s| u16::try_from(s).ok()),
            outcome: self.outcome.parse().map_err(|_| corrupt("outcome"))?,
            duration_us: self.duration_us,
            reason: self.reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_and_nul_replaced() {
        assert_eq!(clean("a\0b", 10), "a\u{FFFD}b");
        assert_eq!(clean("ééé", 2), "éé");
    }
}
