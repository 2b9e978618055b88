//! The per-user sums (`usage_user_1d`, and `usage_user_7d` for records of sealed
//! blocks): added to in the statement itself, so no row needs locking. A batch updates
//! the daily sums of about as many users as it has records; the 7-day sums are written
//! once per block instead (see [`seal`](super::seal)).

use std::collections::BTreeMap;

use crate::query::Totals;
use crate::store::schema::row::{row_totals, Row};
use crate::store::schema::{UserRollup, USER_MEASURES};
use crate::store::sql::{Dialect, Sql};

/// Adds the batch's records to a per-user rollup (records without a user are not
/// ranked). The sums are added in the statement itself, so no row needs locking.
pub(crate) fn users(dialect: Dialect, rollup: UserRollup, rows: &[Row]) -> Option<Sql> {
    let mut sums: BTreeMap<(i64, &str), Totals> = BTreeMap::new();
    for row in rows {
        if let Some(user) = row.user_id.as_deref() {
            let slot = row.started_at_us.div_euclid(rollup.width_us());
            sums.entry((slot, user)).or_default().add(&row_totals(row));
        }
    }
    if sums.is_empty() {
        return None;
    }
    let columns = USER_MEASURES;
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO ")
        .push(rollup.table())
        .push(" (slot, user_id, ");
    sql.push(&columns.join(", ")).push(") ");
    if dialect == Dialect::Postgres {
        // One array per column: a thousand-row VALUES list took the server longer to
        // parse and bind than to upsert.
        sql.push("SELECT * FROM UNNEST(");
        sql.int_array(sums.keys().map(|(slot, _)| *slot));
        sql.push(", ")
            .bind_text_array(sums.keys().map(|(_, user)| *user));
        for i in 0..columns.len() {
            sql.push(", ")
                .int_array(sums.values().map(|t| t.values()[i]));
        }
        sql.push(")");
    } else {
        sql.push("VALUES ");
        sql.list(&sums, ", ", |sql, ((slot, user), t)| {
            sql.push("(").int(*slot).push(", ").bind_text(user);
            for n in &t.values()[..columns.len()] {
                sql.push(", ").int(*n);
            }
            sql.push(")");
        });
    }
    sql.on_conflict(&["slot", "user_id"], columns, rollup.table(), true);
    Some(sql)
}
