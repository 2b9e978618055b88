//! The outbox: a row per event and webhook in `usage_webhook_outbox`, written with the
//! event, then leased, sent and marked by a sender.

use crate::store::sql::{Dialect, Sql};

/// The outbox's table, made by the store's migrations.
pub(crate) const TABLE: &str = "usage_webhook_outbox";
/// The webhooks' table.
const WEBHOOKS: &str = "usage_webhooks";

/// The statement that queues `payload` (the event `event_id`, as its receivers get it)
/// for every webhook there is now, due at once; run in the transaction that writes
/// the event.
pub(crate) fn enqueue(dialect: Dialect, event_id: &str, payload: &str, now_us: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO ")
        .push(TABLE)
        .push(
            " (webhook, event_id, payload, created_at_us, next_at_us, attempts, gave_up) \
             SELECT name, ",
        )
        .bind_text(event_id)
        .push(", ")
        .bind_text(payload)
        .push(", ")
        .int(now_us)
        .push(", ")
        .int(now_us)
        .push(", 0, 0 FROM ")
        .push(WEBHOOKS);
    sql
}
