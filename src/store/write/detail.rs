//! A heavy user's usage without their raw rows, for
//! [`DieselStore::user_usage`](crate::store::DieselStore::user_usage): sums per user, UTC hour,
//! service and model (`usage_user_hours`), and latency histograms per user and UTC day,
//! one row per bucket (`usage_user_hist`).
//!
//! Only heavy users get them: a user with a few records a day has about as many rows
//! here as records, and reads them as fast from the user index. Kept up to date by
//! every batch, they would cost ingest another row per record, as the per-user daily
//! sums do. So once a 7-day block is sealed (see [`seal`](super::seal)), the users with
//! at least a set number of records in it are marked `detailed` in their
//! `usage_user_7d` row and get their rows, built from their records of the block;
//! records that arrive later for the block are added to the rows of users who have
//! them. Readers take every other user's and block's records, and the parts of days at
//! a range's edges, from `usage_records`.
//!
//! The build reads thousands of records a heavy user, so it runs in a transaction of
//! its own, after the batch that sealed the block committed: however long it takes, it
//! cannot hold back or roll back a batch. If it fails, the block is read raw until the
//! next build of it ([`DieselStore::rebuild_rollups`](crate::store::DieselStore::rebuild_rollups)).
//!
//! Hours serve a daily series in every zone whose days start on the hour; zones with a
//! half-hour offset read raw rows. Histograms are kept per day, not per hour: a heavy
//! user's hour holds a few dozen records, nearly one bucket each.

use std::collections::{BTreeMap, BTreeSet};

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;

use crate::query::{bucket, Totals};
use crate::store::schema::row::{row_totals, Row};
use crate::store::schema::slots::{DAY_US, HOUR_US, WEEK_US};
use crate::store::schema::{UserRollup, BLOCKS, HIST, HOURS, MEASURES, RAW_COLUMNS, RAW_MEASURES};
use crate::store::sql::{Dialect, Sql};

/// How many records a user needs in a block to get detail rows for it, unless the
/// store is told otherwise: below that, reading the raw rows costs a few milliseconds,
/// and the rows would barely compress them (a heavy user's hour and day still spread
/// over many services, models and buckets).
pub(crate) const MIN_RECORDS: i64 = 1_024;

/// Whether a block can have detail rows: the builders' integer division rounds toward
/// zero, which is the floor only from the epoch on.
fn buildable(block: i64) -> bool {
    block >= 0
}

/// Marks in `usage_user_7d` the block's users with at least `min` records who have no
/// detail rows yet, and builds theirs from their records: the statements of one
/// transaction, run after the one that sealed the block (see the module docs for why).
/// The first locks the block's row, as a writer of late records does, so that no late
/// record is written between the read of the records and the marks. Users marked by an
/// earlier build are left as they are: running it again adds the users who have
/// reached `min` since. `buckets` are the histogram's lower bounds.
pub(crate) fn build(dialect: Dialect, block: i64, min: i64, buckets: &[i64]) -> Vec<Sql> {
    if !buildable(block) {
        return Vec::new();
    }
    let mut lock = Sql::new(dialect);
    lock.push("UPDATE ").push(BLOCKS);
    lock.push(" SET sealed = 1 WHERE block = ").int(block);
    let mut statements = vec![lock];
    if dialect == Dialect::Postgres {
        // The marked users are unknown to the planner's statistics: it guessed one and
        // fetched their records user by user through the user index (a heap page per
        // record), then sorted the groups by name. Reading the block's records in time
        // order and hashing both ways took a third of the time on 10,000,000 records.
        for setting in [
            "enable_nestloop = off",
            "enable_sort = off",
            "work_mem = '256MB'",
        ] {
            let mut sql = Sql::new(dialect);
            sql.push("SET LOCAL ").push(setting);
            statements.push(sql);
        }
    }
    // 2 while being built: never seen outside this transaction.
    let mut mark = Sql::new(dialect);
    mark.push("UPDATE usage_user_7d SET detailed = 2 WHERE slot = ")
        .int(block);
    mark.push(" AND detailed = 0 AND requests >= ").int(min);
    let mut done = Sql::new(dialect);
    done.push("UPDATE usage_user_7d SET detailed = 1 WHERE slot = ")
        .int(block);
    done.push(" AND detailed = 2");
    let [hours, hist] = insert_rows(dialect, block, buckets);
    statements.extend([mark, hours, hist, done]);
    statements
}

/// Logs a [`build`] that failed: its block is read from raw rows, with the same
/// answers, and the batch that sealed it is written all the same.
pub(crate) fn report(built: diesel::QueryResult<()>) {
    if let Err(error) = built {
        tracing::warn!(
            %error,
            "tower-usage: per-user detail rows of a sealed block not built; it is read from raw rows"
        );
    }
}

/// The inserts of [`build`]: the rows of the users marked 2, from their records.
fn insert_rows(dialect: Dialect, block: i64, buckets: &[i64]) -> [Sql; 2] {
    let (from, to) = (block * WEEK_US, (block + 1) * WEEK_US);
    let block_rows = |sql: &mut Sql| {
        sql.push(" FROM usage_records WHERE started_at_us >= ")
            .int(from);
        sql.push(" AND started_at_us < ").int(to);
        sql.push(" AND user_id IN (SELECT user_id FROM usage_user_7d WHERE slot = ");
        sql.int(block).push(" AND detailed = 2)");
    };
    let mut hours = Sql::new(dialect);
    hours
        .push("INSERT INTO ")
        .push(HOURS)
        .push(" (user_id, slot, service, model, ");
    hours
        .push(&MEASURES.join(", "))
        .push(") SELECT user_id, h, service, model");
    for expr in RAW_MEASURES {
        let sum = hours.sum(expr);
        hours.push(", ").push(&sum);
    }
    let hour = hours.div("started_at_us", HOUR_US);
    hours.push(" FROM (SELECT user_id, ").push(&hour);
    hours.push(" AS h, COALESCE(service, '') AS service, COALESCE(model, '') AS model, ");
    hours.push(RAW_COLUMNS);
    block_rows(&mut hours);
    hours.push(") r GROUP BY user_id, h, service, model");

    let mut hist = Sql::new(dialect);
    hist.push("INSERT INTO ")
        .push(HIST)
        .push(" (user_id, slot, kind, bucket, n) ");
    let day = hist.div("started_at_us", DAY_US);
    for (kind, column) in [(1, "duration_us"), (2, "ttfb_us")] {
        if kind == 2 {
            hist.push(" UNION ALL ");
        }
        hist.push("SELECT user_id, d, ").int(kind);
        hist.push(", b, COUNT(*) FROM (SELECT user_id, ")
            .push(&day)
            .push(" AS d, ");
        hist.step_index(column, buckets);
        hist.push(" AS b");
        block_rows(&mut hist);
        hist.push(" AND ").push(column).push(" IS NOT NULL");
        hist.push(") r").int(kind).push(" GROUP BY user_id, d, b");
    }
    [hours, hist]
}

/// A user marked `detailed` in a sealed block, as [`detailed`] reads it.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct Detailed {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = BigInt)]
    slot: i64,
}

/// Reads which of the users of `late` (records of sealed blocks) are marked `detailed`
/// in the blocks of their records; `None` when no record has a user. Few users are
/// (the heavy ones): reading them first spares a late batch one insert per user and
/// hour whose every row would be filtered out.
pub(crate) fn detailed(dialect: Dialect, late: &[Row]) -> Option<Sql> {
    let users: BTreeSet<&str> = late.iter().filter_map(|r| r.user_id.as_deref()).collect();
    if users.is_empty() {
        return None;
    }
    let blocks: BTreeSet<i64> = late
        .iter()
        .map(|r| r.started_at_us.div_euclid(WEEK_US))
        .collect();
    let mut sql = Sql::new(dialect);
    sql.push("SELECT user_id, slot FROM ")
        .push(UserRollup::Week.table())
        .push(" WHERE detailed = 1 AND slot IN (");
    sql.list(blocks, ", ", |sql, block| {
        sql.int(block);
    });
    sql.push(") AND user_id IN (");
    sql.list(users, ", ", |sql, user| {
        sql.bind_text(user);
    });
    sql.push(")");
    Some(sql)
}

/// Those of `late` whose user is marked in their block, as [`detailed`] read.
pub(crate) fn of_detailed(late: Vec<Row>, marked: &[Detailed]) -> Vec<Row> {
    let marked: BTreeSet<(&str, i64)> = marked
        .iter()
        .map(|m| (m.user_id.as_str(), m.slot))
        .collect();
    late.into_iter()
        .filter(|r| {
            r.user_id
                .as_deref()
                .is_some_and(|user| marked.contains(&(user, r.started_at_us.div_euclid(WEEK_US))))
        })
        .collect()
}

/// Adds `rows` (records of sealed blocks) to the detail rows of the users marked
/// `detailed` in those blocks; nothing for rows without a user.
pub(crate) fn add(dialect: Dialect, rows: &[Row]) -> Vec<Sql> {
    let mut sums: BTreeMap<(&str, i64, &str, &str), Totals> = BTreeMap::new();
    let mut counts: BTreeMap<(&str, i64, i64, u16), i64> = BTreeMap::new();
    for row in rows {
        let Some(user) = row.user_id.as_deref() else {
            continue;
        };
        let key = (
            user,
            row.started_at_us.div_euclid(HOUR_US),
            row.service.as_deref().unwrap_or_default(),
            row.model.as_deref().unwrap_or_default(),
        );
        sums.entry(key).or_default().add(&row_totals(row));
        let day = row.started_at_us.div_euclid(DAY_US);
        *counts
            .entry((user, day, 1, bucket(row.duration_us)))
            .or_default() += 1;
        if let Some(ttfb) = row.ttfb_us {
            *counts.entry((user, day, 2, bucket(ttfb))).or_default() += 1;
        }
    }
    if sums.is_empty() {
        return Vec::new();
    }
    let hour_columns: Vec<&str> = ["user_id", "slot", "service", "model"]
        .into_iter()
        .chain(MEASURES)
        .collect();
    let hour_rows = sums.iter().map(|((user, slot, service, model), totals)| {
        let mut row = vec![
            Value::Text(user),
            Value::Int(*slot),
            Value::Text(service),
            Value::Text(model),
        ];
        row.extend(totals.values().map(Value::Int));
        row
    });
    let mut statements = only_detailed(
        dialect,
        HOURS,
        &hour_columns,
        4,
        WEEK_US / HOUR_US,
        hour_rows,
    );
    let hist_columns = ["user_id", "slot", "kind", "bucket", "n"];
    let hist_rows = counts.iter().map(|((user, slot, kind, b), n)| {
        let b = i64::from(*b);
        vec![
            Value::Text(user),
            Value::Int(*slot),
            Value::Int(*kind),
            Value::Int(b),
            Value::Int(*n),
        ]
    });
    statements.extend(only_detailed(
        dialect,
        HIST,
        &hist_columns,
        4,
        WEEK_US / DAY_US,
        hist_rows,
    ));
    statements
}

/// The most rows one statement of [`only_detailed`] selects: each is a term of a
/// compound `SELECT`, and SQLite refuses more than 500 terms (its
/// `SQLITE_MAX_COMPOUND_SELECT`). A batch of late records for many users and hours has
/// thousands; refused, the whole batch would fall back to one transaction a record.
const ROWS_PER_INSERT: usize = 400;

/// A value of a row written into a statement.
#[derive(Clone, Copy)]
enum Value<'a> {
    Text(&'a str),
    Int(i64),
}

/// `INSERT`s into `table` (its `columns`, the first `key` of them its key) of those of
/// `rows` whose user (the first column) is marked `detailed` in the block of their slot
/// (the second column; `per_block` slots a block), adding to the stored rows with the
/// same key; [`ROWS_PER_INSERT`] rows a statement.
fn only_detailed<'a>(
    dialect: Dialect,
    table: &str,
    columns: &[&str],
    key: usize,
    per_block: i64,
    rows: impl Iterator<Item = Vec<Value<'a>>>,
) -> Vec<Sql> {
    let rows: Vec<Vec<Value<'a>>> = rows.collect();
    rows.chunks(ROWS_PER_INSERT)
        .map(|chunk| insert_detailed(dialect, table, columns, key, per_block, chunk))
        .collect()
}

/// One statement of [`only_detailed`].
fn insert_detailed(
    dialect: Dialect,
    table: &str,
    columns: &[&str],
    key: usize,
    per_block: i64,
    rows: &[Vec<Value<'_>>],
) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO ").push(table).push(" (");
    sql.push(&columns.join(", ")).push(") SELECT ");
    // The derived table's columns are named apart from the table's: MySQL's
    // `VALUES(column)` in the upsert must not find two columns of one name.
    let names: Vec<String> = (0..columns.len()).map(|i| format!("v{i}")).collect();
    sql.push(&names.join(", ")).push(" FROM (");
    for (i, row) in rows.iter().enumerate() {
        sql.push(if i == 0 {
            "SELECT "
        } else {
            " UNION ALL SELECT "
        });
        for (c, &value) in row.iter().enumerate() {
            if c > 0 {
                sql.push(", ");
            }
            match value {
                Value::Text(text) => sql.bind_text(text),
                Value::Int(n) => sql.int(n),
            };
            if i == 0 {
                sql.push(" AS ").push(&names[c]);
            }
        }
    }
    sql.push(") v WHERE EXISTS (SELECT 1 FROM usage_user_7d w WHERE w.user_id = v.v0");
    let block = sql.div("v.v1", per_block);
    sql.push(" AND w.slot = ")
        .push(&block)
        .push(" AND w.detailed = 1)");
    sql.on_conflict(&columns[..key], &columns[key..], table, true);
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::slots::{HOUR_US, WEEK_US};

    const W: i64 = WEEK_US;

    #[test]
    fn a_build_marks_the_users_then_reads_only_theirs() {
        let sql: Vec<String> = build(Dialect::Sqlite, 1, 256, &[i64::MIN, 1])
            .into_iter()
            .map(|s| s.text())
            .collect();
        assert_eq!(sql.len(), 5, "{sql:?}");
        assert!(sql[0].starts_with("UPDATE usage_user_blocks SET sealed = 1 WHERE block = 1"));
        assert!(sql[1].ends_with("WHERE slot = 1 AND detailed = 0 AND requests >= 256"));
        let marked =
            "user_id IN (SELECT user_id FROM usage_user_7d WHERE slot = 1 AND detailed = 2)";
        assert!(sql[2].starts_with("INSERT INTO usage_user_hours") && sql[2].contains(marked));
        assert!(sql[3].starts_with("INSERT INTO usage_user_hist") && sql[3].contains(marked));
        assert!(sql[4].ends_with("SET detailed = 1 WHERE slot = 1 AND detailed = 2"));
        // Before the epoch: nothing built, the block is read raw.
        assert!(build(Dialect::Sqlite, -1, 256, &[i64::MIN, 1]).is_empty());
    }

    #[test]
    fn many_late_rows_stay_under_sqlites_compound_select_limit() {
        // A late batch in random order: every record its own user, hour and buckets.
        let rows: Vec<Row> = (0..2_000)
            .map(|i| {
                let mut row = Row::from(&crate::UsageRecord::builder().build());
                row.user_id = Some(format!("u{i}"));
                row.started_at_us = W + i * HOUR_US;
                row.duration_us = i * 1_000;
                row.ttfb_us = Some(i * 100);
                row
            })
            .collect();
        let sql = add(Dialect::Sqlite, &rows);
        assert!(sql.len() >= 10, "{}", sql.len());
        let mut selected = 0;
        for sql in &sql {
            let terms = sql.text().matches(" UNION ALL SELECT ").count() + 1;
            assert!(terms <= 500, "{terms} terms");
            selected += terms;
        }
        // 2,000 hour rows and 4,000 histogram counts (duration and time to first byte).
        assert_eq!(selected, 6_000);
    }

    #[test]
    fn late_rows_add_sums_and_one_count_per_histogram() {
        let mut row = Row::from(&crate::UsageRecord::builder().build());
        row.user_id = Some("u".into());
        row.started_at_us = W + 3 * HOUR_US + 5;
        row.ttfb_us = None;
        let sql = add(Dialect::Sqlite, &[row.clone()]);
        assert_eq!(sql.len(), 2);
        assert!(sql[0].text().starts_with("INSERT INTO usage_user_hours"));
        assert!(sql[0]
            .text()
            .contains(&format!(", {} AS v1, ", W / HOUR_US + 3)));
        assert!(sql[0]
            .text()
            .contains("w.slot = (v.v1 / 168) AND w.detailed = 1"));
        // No time to first byte: one latency count only.
        assert_eq!(
            sql[1].text().matches("SELECT ?").count(),
            1,
            "{}",
            sql[1].text()
        );
        assert!(sql[1]
            .text()
            .contains("w.slot = (v.v1 / 7) AND w.detailed = 1"));
        row.user_id = None;
        assert!(add(Dialect::Sqlite, &[row]).is_empty());
    }
}
