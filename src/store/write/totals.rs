//! The per-slot totals (`usage_totals_15m`): every measure per 15 minutes with no
//! dimension, for series and peak hours that filter on time alone.

use std::collections::BTreeMap;

use crate::query::Totals;
use crate::store::schema::row::{row_totals, Row};
use crate::store::schema::slots::QUARTER_US;
use crate::store::schema::{MEASURES, TOTALS};
use crate::store::sql::{Dialect, Sql};

/// Adds the batch's records to the per-slot totals, in the statement itself.
pub(crate) fn totals(dialect: Dialect, rows: &[Row]) -> Option<Sql> {
    let mut sums: BTreeMap<i64, Totals> = BTreeMap::new();
    for row in rows {
        let slot = row.started_at_us.div_euclid(QUARTER_US);
        sums.entry(slot).or_default().add(&row_totals(row));
    }
    if sums.is_empty() {
        return None;
    }
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO ").push(TOTALS).push(" (slot, ");
    sql.push(&MEASURES.join(", ")).push(") ");
    if dialect == Dialect::Postgres {
        sql.push("SELECT * FROM UNNEST(");
        sql.int_array(sums.keys().copied());
        for i in 0..MEASURES.len() {
            sql.push(", ")
                .int_array(sums.values().map(|t| t.values()[i]));
        }
        sql.push(")");
    } else {
        sql.push("VALUES ");
        sql.list(&sums, ", ", |sql, (slot, t)| {
            sql.push("(").int(*slot);
            for n in t.values() {
                sql.push(", ").int(n);
            }
            sql.push(")");
        });
    }
    sql.on_conflict(&["slot"], &MEASURES, TOTALS, true);
    Some(sql)
}
