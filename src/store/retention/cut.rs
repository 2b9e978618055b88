//! The statements of a retention run, and the horizons as stored in `usage_retention`.

use diesel::sql_types::{BigInt, Nullable};
use diesel::QueryableByName;

use crate::store::schema::RETENTION;
use crate::store::sql::{Dialect, Sql};

/// The stored horizons, in microseconds; `None` where nothing was removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, QueryableByName)]
pub(crate) struct Horizons {
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) raw_before_us: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) rollups_before_us: Option<i64>,
}

/// Reads the [`Horizons`] (one row).
pub(crate) fn horizons(dialect: Dialect) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT raw_before_us, rollups_before_us FROM ")
        .push(RETENTION)
        .push(" WHERE id = 1");
    sql
}

/// Moves the horizons forward to `raw` and `rollups`, never back: two runs with
/// different policies, or clocks, leave the furthest cut.
pub(crate) fn advance(dialect: Dialect, raw: i64, rollups: Option<i64>) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("UPDATE ").push(RETENTION).push(" SET ");
    forward(&mut sql, "raw_before_us", raw);
    if let Some(rollups) = rollups {
        sql.push(", ");
        forward(&mut sql, "rollups_before_us", rollups);
    }
    sql.push(" WHERE id = 1");
    sql
}

fn forward(sql: &mut Sql, column: &str, to: i64) {
    sql.push(column)
        .push(" = CASE WHEN ")
        .push(column)
        .push(" IS NULL OR ")
        .push(column)
        .push(" < ")
        .int(to)
        .push(" THEN ")
        .int(to)
        .push(" ELSE ")
        .push(column)
        .push(" END");
}

/// The start time of the `n`th oldest record (1-based) that starts before `before`, as
/// a row `n`; no row when fewer are left. Reads the key index only.
pub(crate) fn nth_record_before(dialect: Dialect, before: i64, n: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT started_at_us AS n FROM usage_records WHERE started_at_us < ")
        .int(before)
        .push(" ORDER BY started_at_us LIMIT 1 OFFSET ")
        .int(n.saturating_sub(1).max(0));
    sql
}

/// Removes the records that start before `before`.
pub(crate) fn delete_records_before(dialect: Dialect, before: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("DELETE FROM usage_records WHERE started_at_us < ")
        .int(before);
    sql
}

/// The first slot `table` holds, as a row `n`; no row when it is empty.
pub(crate) fn first_slot(dialect: Dialect, table: &str, column: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(column)
        .push(" AS n FROM ")
        .push(table)
        .push(" ORDER BY ")
        .push(column)
        .push(" LIMIT 1");
    sql
}

/// Removes the rows of `table` whose slot is before `slot`: what retention cuts.
pub(crate) fn delete_slots_before(dialect: Dialect, table: &str, column: &str, slot: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("DELETE FROM ")
        .push(table)
        .push(" WHERE ")
        .push(column)
        .push(" < ")
        .int(slot);
    sql
}
