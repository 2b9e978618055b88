//! The statements that append rows to `usage_pending_records` (module `pending`) on the
//! backends that take a `VALUES` list (SQLite, MySQL): integers written into the text,
//! text and bytes bound. PostgreSQL binds one array a column instead.

use crate::store::schema::row::Row;
use crate::store::schema::slots::WEEK_US;
use crate::store::schema::{PENDING_RECORDS, RECORD_NAMES};
use crate::store::sql::{Dialect, Sql};

/// Rows per statement: at most 12 binds a row stays under SQLite's 32,766 parameters
/// and MySQL's 65,535.
const ROWS_PER_STATEMENT: usize = 1_000;

/// The statements that append `rows`, each with its block.
pub(crate) fn statements(dialect: Dialect, rows: &[Row]) -> Vec<Sql> {
    rows.chunks(ROWS_PER_STATEMENT)
        .map(|chunk| {
            let mut sql = Sql::new(dialect);
            sql.push("INSERT INTO ")
                .push(PENDING_RECORDS)
                .push(" (block, ")
                .push(&RECORD_NAMES)
                .push(") VALUES ");
            sql.list(chunk, ", ", values);
            sql
        })
        .collect()
}

/// One row's values, in the order of [`RECORD_NAMES`] after its block.
fn values(sql: &mut Sql, row: &Row) {
    fn int(sql: &mut Sql, value: Option<i64>) {
        match value {
            Some(value) => sql.push(", ").int(value),
            None => sql.push(", NULL"),
        };
    }
    fn text(sql: &mut Sql, value: Option<&str>) {
        match value {
            Some(value) => sql.push(", ").bind_text(value),
            None => sql.push(", NULL"),
        };
    }
    sql.push("(").int(row.started_at_us.div_euclid(WEEK_US));
    sql.push(", ").bind_bytes(&row.id);
    int(sql, Some(row.started_at_us));
    text(sql, row.method.as_deref());
    text(sql, row.route.as_deref());
    int(sql, row.status.map(i64::from));
    text(sql, Some(&row.outcome));
    int(sql, row.ttfb_us);
    int(sql, Some(row.duration_us));
    int(sql, row.request_bytes);
    int(sql, Some(row.response_bytes));
    text(sql, row.user_id.as_deref());
    text(sql, row.service.as_deref());
    text(sql, row.model.as_deref());
    text(sql, row.provider.as_deref());
    text(sql, Some(&row.client));
    text(sql, row.country.as_deref());
    int(sql, Some(row.tokens_in));
    int(sql, Some(row.tokens_out));
    int(sql, Some(row.tokens_cached_in));
    int(sql, Some(row.tokens_cache_write_in));
    int(sql, row.cost_micros);
    text(sql, row.metadata.as_deref());
    text(sql, row.requested_model.as_deref());
    int(sql, Some(i64::from(row.unpriced)));
    sql.push(")");
}
