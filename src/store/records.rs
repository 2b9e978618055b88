//! Statements that read the records themselves as [`Row`](super::schema::row::Row)s, in
//! key order (start time, id): what exports, the rollup rebuild and `recent` share.

use super::schema::PG_COLUMNS;
use super::sql::{Dialect, Sql};

/// Rows read per page, at most.
pub(crate) const PAGE: i64 = 5_000;

/// The columns that read as a `Row`: PostgreSQL keeps `metadata` as JSONB.
pub(crate) fn columns(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => PG_COLUMNS.as_str(),
        Dialect::Sqlite | Dialect::Mysql => "*",
    }
}

/// ` AND` the records past the key `after`, if any.
///
/// PostgreSQL and SQLite compare the key as a row value: their planners walk the key
/// index from there, where the `OR` of two ranges made PostgreSQL read and sort the rest
/// of the range for every page. MySQL's range optimizer reads the `OR` as ranges of the
/// key, and a row value as none.
pub(crate) fn after_key(sql: &mut Sql, after: Option<&(i64, Vec<u8>)>) {
    let Some((at, id)) = after else { return };
    match sql.dialect {
        Dialect::Postgres | Dialect::Sqlite => {
            sql.push(" AND (started_at_us, id) > (")
                .int(*at)
                .push(", ")
                .bind_bytes(id)
                .push(")");
        }
        Dialect::Mysql => {
            sql.push(" AND (started_at_us > ").int(*at);
            sql.push(" OR (started_at_us = ")
                .int(*at)
                .push(" AND id > ")
                .bind_bytes(id)
                .push("))");
        }
    }
}

/// The next [`PAGE`] of the records after `after` (and starting before `before`).
pub(crate) fn page_after(
    dialect: Dialect,
    after: Option<&(i64, Vec<u8>)>,
    before: Option<i64>,
) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(columns(dialect))
        .push(" FROM usage_records WHERE 1 = 1");
    after_key(&mut sql, after);
    if let Some(before) = before {
        sql.push(" AND started_at_us < ").int(before);
    }
    sql.push(" ORDER BY started_at_us, id LIMIT ").int(PAGE);
    sql
}

/// The `limit` most recent records, newest first.
pub(crate) fn recent(dialect: Dialect, limit: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(columns(dialect))
        .push(" FROM usage_records ORDER BY started_at_us DESC, id DESC LIMIT ")
        .int(limit);
    sql
}
