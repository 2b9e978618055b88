//! Alert events in the store's `usage_alert_events` table: each time a rule started or
//! stopped firing, numbered per rule. The last event of a rule is its state, and the
//! key `(rule, seq)` is the claim: two evaluators that see the same crossing write the
//! same number, and only the first write is kept.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ledger::BudgetWarning;
use super::rule::{Condition, Signal};
use crate::notify;
use crate::query::TimeRange;
use crate::store::sql::Sql;
use crate::store::{DieselStore, StoreError};

/// The events' table, made by the store's migrations.
const TABLE: &str = "usage_alert_events";

/// Whether a rule started or stopped firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The signal crossed the threshold.
    Fired,
    /// It came back.
    Resolved,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::Fired => "fired",
            EventKind::Resolved => "resolved",
        }
    }
}

/// One time a rule started or stopped firing, with what was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct AlertEvent {
    /// Unique: what a receiver of the event keys its idempotency on.
    pub id: Uuid,
    /// The rule's name.
    pub rule: String,
    /// The event's number among the rule's, from 1.
    pub seq: u64,
    /// Fired or resolved.
    pub kind: EventKind,
    /// When it was found.
    pub at: DateTime<Utc>,
    /// The signal's value then.
    pub value: f64,
    /// The rule's threshold then.
    pub threshold: f64,
    /// What the rule measures.
    pub signal: Signal,
    /// Which side fires.
    pub condition: Condition,
    /// The window the value was measured over.
    pub window_minutes: u32,
    /// Records in that window.
    pub requests: u64,
}

#[derive(QueryableByName)]
struct Latest {
    #[diesel(sql_type = Text)]
    rule: String,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    kind: String,
}

#[derive(QueryableByName)]
struct Detail {
    #[diesel(sql_type = Text)]
    detail: String,
}

/// Each rule's last event: its number and whether it fired.
pub(crate) async fn latest(
    store: &DieselStore,
) -> Result<HashMap<String, (u64, bool)>, StoreError> {
    let mut sql = Sql::new(store.dialect());
    sql.push("SELECT e.rule, e.seq, e.kind FROM ")
        .push(TABLE)
        .push(" e JOIN (SELECT rule, MAX(seq) AS seq FROM ")
        .push(TABLE)
        .push(" GROUP BY rule) l ON e.rule = l.rule AND e.seq = l.seq");
    let rows: Vec<Latest> = store.load(sql).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let seq = u64::try_from(r.seq).unwrap_or(0);
            (r.rule, (seq, r.kind == EventKind::Fired.as_str()))
        })
        .collect())
}

/// Writes `event` unless its rule already has an event of its number, and with it, in
/// the same transaction, its delivery to every webhook; whether it was this write that
/// made it.
pub(crate) async fn claim(store: &DieselStore, event: &AlertEvent) -> Result<bool, StoreError> {
    let detail = serde_json::to_string(event)
        .map_err(|e| StoreError::Corrupt(format!("an alert event that cannot be written: {e}")))?;
    let seq = i64::try_from(event.seq).map_err(|_| {
        StoreError::Corrupt(format!("alert event number {} out of range", event.seq))
    })?;
    let kind = match event.kind {
        EventKind::Fired => "alert.fired",
        EventKind::Resolved => "alert.resolved",
    };
    let row = Row {
        rule: &event.rule,
        seq,
        kind: event.kind.as_str(),
        detail: &detail,
    };
    write(store, row, event.id, kind, event, event.at).await
}

/// The event kind of a budget warning: neither fired nor resolved, so no rule's state.
const WARNING: &str = "budget_warning";

/// Writes `warning` as an event of the pseudo-rule `budget:<name>` (rule names have no
/// `:`), numbered by its window and threshold so that it is written once however many
/// processes find it, and with it its delivery to every webhook.
pub(crate) async fn claim_warning(
    store: &DieselStore,
    warning: &BudgetWarning,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let seq = warning
        .window_from
        .timestamp()
        .saturating_mul(1000)
        .saturating_add(i64::from(warning.percent));
    let detail = serde_json::to_string(warning).map_err(|e| {
        StoreError::Corrupt(format!("a budget warning that cannot be written: {e}"))
    })?;
    let row = Row {
        rule: &format!("budget:{}", warning.budget),
        seq,
        kind: WARNING,
        detail: &detail,
    };
    write(
        store,
        row,
        crate::id::new_v7(now),
        "budget.warning",
        warning,
        now,
    )
    .await
}

/// An event's row: its key, its kind (a fixed name) and what it holds.
struct Row<'a> {
    rule: &'a str,
    seq: i64,
    kind: &'static str,
    detail: &'a str,
}

/// Writes `row` unless its key is taken, and with it, in the same transaction, the
/// delivery to every webhook of `{id, type, created_at, data}`; whether it was this
/// write that made the row.
async fn write(
    store: &DieselStore,
    row: Row<'_>,
    id: Uuid,
    kind: &str,
    data: &impl Serialize,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut sql = Sql::new(store.dialect());
    sql.insert_ignoring(TABLE)
        .push(" (rule, seq, at_us, kind, detail) VALUES (")
        .bind_text(row.rule)
        .push(", ")
        .int(row.seq)
        .push(", ")
        .int(at.timestamp_micros())
        .push(", '")
        .push(row.kind)
        .push("', ")
        .bind_text(row.detail)
        .push(")")
        .or_ignore();
    let id = id.to_string();
    let payload = serde_json::json!({
        "id": id,
        "type": kind,
        "created_at": at,
        "data": data,
    });
    let deliver = notify::enqueue(
        store.dialect(),
        &id,
        &payload.to_string(),
        at.timestamp_micros(),
    );
    store.claim(sql, vec![deliver]).await
}

impl DieselStore {
    /// Alert events in `range`, newest first, at most `limit`; only `rule`'s when
    /// given.
    pub async fn alert_events(
        &self,
        range: &TimeRange,
        rule: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AlertEvent>, StoreError> {
        let (from, to) = range.micros(self.max_range())?;
        self.check_limit(limit)?;
        let mut sql = Sql::new(self.dialect());
        sql.push("SELECT detail FROM ")
            .push(TABLE)
            .push(" WHERE at_us >= ")
            .int(from)
            .push(" AND at_us < ")
            .int(to);
        sql.push(" AND kind <> '").push(WARNING).push("'");
        if let Some(rule) = rule {
            sql.push(" AND rule = ").bind_text(rule);
        }
        sql.push(" ORDER BY at_us DESC, seq DESC LIMIT ")
            .int(i64::try_from(limit).unwrap_or(i64::MAX));
        details(self, sql).await
    }

    /// The rules firing now: the event that fired each, oldest first.
    pub async fn firing_alerts(&self) -> Result<Vec<AlertEvent>, StoreError> {
        let firing: Vec<(String, u64)> = latest(self)
            .await?
            .into_iter()
            .filter(|(_, (_, fired))| *fired)
            .map(|(rule, (seq, _))| (rule, seq))
            .collect();
        if firing.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(self.dialect());
        sql.push("SELECT detail FROM ").push(TABLE).push(" WHERE ");
        sql.list(&firing, " OR ", |sql, (rule, seq)| {
            sql.push("(rule = ")
                .bind_text(rule)
                .push(" AND seq = ")
                .int(i64::try_from(*seq).unwrap_or(i64::MAX))
                .push(")");
        });
        sql.push(" ORDER BY at_us");
        details(self, sql).await
    }
}

async fn details(store: &DieselStore, sql: Sql) -> Result<Vec<AlertEvent>, StoreError> {
    let rows: Vec<Detail> = store.load(sql).await?;
    rows.into_iter()
        .map(|row| {
            serde_json::from_str(&row.detail).map_err(|_| {
                StoreError::Corrupt(format!("an unreadable alert event: {}", row.detail))
            })
        })
        .collect()
}
