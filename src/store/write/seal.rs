//! Sealing the per-user 7-day blocks: a block's rows in `usage_user_7d` are written once,
//! from its days in `usage_user_1d`, by the first batch that brings records of a later
//! block, instead of being added to by every batch. A batch then updates one per-user
//! table, not two; readers sum an unsealed block's days instead of its row.
//!
//! `usage_user_blocks` has a row for every block with per-user sums, and it is the lock:
//! a writer locks the rows of the blocks its records fall in (and of the blocks it seals)
//! for the rest of its transaction. So a block is never sealed while another transaction
//! writes its days, and a writer that waited for a seal sees it, and adds its records of
//! that block to `usage_user_7d` as well (a late record).

use std::collections::BTreeSet;

use diesel::sql_types::BigInt;
use diesel::QueryableByName;

use super::users::users;
use crate::store::schema::row::Row;
use crate::store::schema::slots::{DAYS, WEEK_US};
use crate::store::schema::{UserRollup, BLOCKS, USER_MEASURES};
use crate::store::sql::{Dialect, Sql};

/// A locked block's row.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct Block {
    #[diesel(sql_type = BigInt)]
    block: i64,
    #[diesel(sql_type = BigInt)]
    sealed: i64,
}

/// The blocks that `rows` with a user fall in, in order.
fn blocks(rows: &[Row]) -> BTreeSet<i64> {
    rows.iter()
        .filter(|r| r.user_id.is_some())
        .map(|r| r.started_at_us.div_euclid(WEEK_US))
        .collect()
}

/// Creates the missing rows of the blocks `rows` fall in, unsealed; `None` when no row
/// has a user.
pub(crate) fn ensure(dialect: Dialect, rows: &[Row]) -> Option<Sql> {
    let blocks = blocks(rows);
    if blocks.is_empty() {
        return None;
    }
    let mut sql = Sql::new(dialect);
    sql.insert_ignoring(BLOCKS).push(" (block, sealed) VALUES ");
    sql.list(blocks, ", ", |sql, block| {
        sql.push("(").int(block).push(", 0)");
    });
    sql.or_ignore();
    Some(sql)
}

/// Reads and locks, in order, the blocks `rows` fall in and the unsealed blocks before
/// the last of them (which this batch will seal); `None` when no row has a user.
pub(crate) fn lock(dialect: Dialect, rows: &[Row]) -> Option<Sql> {
    let blocks = blocks(rows);
    let last = *blocks.last()?;
    let mut sql = Sql::new(dialect);
    let sealed = sql.as_bigint("sealed");
    sql.push("SELECT block, ")
        .push(&sealed)
        .push(" AS sealed FROM ");
    sql.push(BLOCKS).push(" WHERE block IN (");
    sql.list(blocks, ", ", |sql, block| {
        sql.int(block);
    });
    sql.push(") OR (sealed = 0 AND block < ")
        .int(last)
        .push(")");
    if dialect != Dialect::Sqlite {
        sql.push(" ORDER BY block FOR UPDATE");
    }
    Some(sql)
}

/// The blocks the batch seals: the unsealed ones before its last.
pub(crate) fn sealing(rows: &[Row], locked: &[Block]) -> Vec<i64> {
    let Some(&last) = blocks(rows).last() else {
        return Vec::new();
    };
    locked
        .iter()
        .filter(|b| b.sealed == 0 && b.block < last)
        .map(|b| b.block)
        .collect()
}

/// What the batch does with the locked blocks, after its records were added to the
/// daily sums: seals the blocks of [`sealing`] (from the days, which now hold this
/// batch's records too), and adds `late`, its records of blocks sealed before it
/// ([`late`]), to the blocks' sums. The caller adds those to the detail rows of the
/// users who have them ([`detailed`](super::detail::detailed)). The sealed blocks'
/// detail rows are built afterwards, in a transaction of their own
/// ([`build`](super::detail::build)).
pub(crate) fn statements(
    dialect: Dialect,
    rows: &[Row],
    locked: &[Block],
    late: &[Row],
) -> Vec<Sql> {
    let mut statements = Vec::new();
    for block in sealing(rows, locked) {
        statements.push(seal(dialect, block));
        let mut sql = Sql::new(dialect);
        sql.push("UPDATE ")
            .push(BLOCKS)
            .push(" SET sealed = 1 WHERE block = ");
        sql.int(block);
        statements.push(sql);
    }
    statements.extend(users(dialect, UserRollup::Week, late));
    statements
}

/// The rows that fall in blocks sealed before this batch.
pub(crate) fn late(rows: &[Row], locked: &[Block]) -> Vec<Row> {
    let sealed: BTreeSet<i64> = locked
        .iter()
        .filter(|b| b.sealed != 0)
        .map(|b| b.block)
        .collect();
    rows.iter()
        .filter(|r| sealed.contains(&r.started_at_us.div_euclid(WEEK_US)))
        .cloned()
        .collect()
}

/// Writes a block's per-user sums from its days (no user has detail rows yet).
fn seal(dialect: Dialect, block: i64) -> Sql {
    let columns = USER_MEASURES;
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO ")
        .push(UserRollup::Week.table())
        .push(" (slot, user_id, ");
    sql.push(&columns.join(", ")).push(") SELECT ");
    let block_column = sql.bigint(block);
    sql.push(&block_column).push(", user_id");
    for c in columns {
        let sum = sql.sum(c);
        sql.push(", ").push(&sum);
    }
    sql.push(" FROM ").push(UserRollup::Day.table());
    sql.push(" WHERE slot >= ").int(block * DAYS);
    sql.push(" AND slot < ")
        .int((block + 1) * DAYS)
        .push(" GROUP BY user_id");
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::slots::DAY_US;

    fn row(day: i64, user: Option<&str>) -> Row {
        let mut row = Row::from(&crate::UsageRecord::builder().build());
        row.started_at_us = day * DAY_US + 1;
        row.user_id = user.map(str::to_owned);
        row
    }

    #[test]
    fn only_rows_with_a_user_touch_blocks() {
        let rows = [row(1, None), row(15, None)];
        assert!(ensure(Dialect::Sqlite, &rows).is_none());
        assert!(lock(Dialect::Sqlite, &rows).is_none());
        assert!(statements(Dialect::Sqlite, &rows, &[], &late(&rows, &[])).is_empty());
    }

    /// The statements' texts for `rows` with these blocks locked, as (block, sealed).
    fn texts(rows: &[Row], locked: &[(i64, i64)]) -> Vec<String> {
        let locked: Vec<Block> = locked
            .iter()
            .map(|&(block, sealed)| Block { block, sealed })
            .collect();
        statements(Dialect::Sqlite, rows, &locked, &late(rows, &locked))
            .into_iter()
            .map(|s| s.text())
            .collect()
    }

    #[test]
    fn earlier_unsealed_blocks_are_sealed_and_sealed_blocks_get_the_late_rows() {
        // Days 1 and 8 fall in blocks 0 and 1; block 1 is the batch's last.
        let rows = [row(1, Some("a")), row(8, Some("b"))];
        let sql = texts(&rows, &[(0, 1), (1, 0)]);
        assert_eq!(sql.len(), 1, "{sql:?}");
        // Block 0's record is added to its sums (and is late); nothing is sealed.
        assert!(sql[0].starts_with("INSERT INTO usage_user_7d"), "{sql:?}");
        assert!(sql[0].contains(" VALUES (0, "), "{sql:?}");
        let locked = [
            Block {
                block: 0,
                sealed: 1,
            },
            Block {
                block: 1,
                sealed: 0,
            },
        ];
        assert_eq!(late(&rows, &locked), [rows[0].clone()]);
        let sql = texts(&rows, &[(0, 0), (1, 0)]);
        assert_eq!(sql.len(), 2, "{sql:?}");
        assert!(sql[0].contains("FROM usage_user_1d WHERE slot >= 0 AND slot < 7"));
        assert!(sql[1].starts_with("UPDATE usage_user_blocks SET sealed = 1 WHERE block = 0"));
        let locked = [
            Block {
                block: 0,
                sealed: 0,
            },
            Block {
                block: 1,
                sealed: 0,
            },
        ];
        assert_eq!(sealing(&rows, &locked), [0]);
    }
}
