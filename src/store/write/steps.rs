//! The sequence of statements that brings every rollup up to date with the rows a
//! batch really inserted, run in the batch's transaction.

use super::cells::{add, cells, ensure, select, Cell, Key};
use super::{seal, totals, users};
use crate::store::schema::row::Row;
use crate::store::schema::{Rollup, UserRollup};
use crate::store::sql::{Dialect, Sql};

/// The statements that bring every rollup up to date with `new`, the rows a batch
/// really inserted, run in the batch's transaction by each backend's writer.
pub(crate) enum Step {
    /// Run this.
    Execute(Sql),
    /// Read the stored rows of a rollup with this, then call [`upsert`](super::cells::upsert).
    Select(Rollup, Sql, std::collections::BTreeMap<Key, Cell>),
    /// Lock the per-user blocks with this, then run what [`seal::statements`] gives.
    Blocks(Sql),
}

/// The most rows whose rollups one round of [`steps`] writes; a batch with more is
/// written in several rounds, in its one transaction. A statement binds at most a dozen
/// values per row (six for a cell of each dimension rollup, chained into one statement
/// on PostgreSQL), so this many rows stay under SQLite's 32,766 parameters, the
/// smallest limit of the three backends.
pub(crate) const ROWS_PER_STEP: usize = 2_000;

/// The steps for `new` (at most [`ROWS_PER_STEP`] rows), in order.
pub(crate) fn steps(dialect: Dialect, new: &[Row]) -> Vec<Step> {
    let mut steps = Vec::new();
    if new.is_empty() {
        return steps;
    }
    if dialect == Dialect::Postgres {
        let mut parts: Vec<Sql> = Rollup::ALL
            .into_iter()
            .map(|rollup| add(rollup, &cells(rollup, new)))
            .collect();
        parts.extend(users::users(dialect, UserRollup::Day, new));
        parts.extend(seal::ensure(dialect, new));
        parts.extend(totals::totals(dialect, new));
        steps.extend(Sql::chain(parts).map(Step::Execute));
        steps.extend(seal::lock(dialect, new).map(Step::Blocks));
        return steps;
    }
    for rollup in Rollup::ALL {
        let cells = cells(rollup, new);
        if dialect != Dialect::Sqlite {
            steps.push(Step::Execute(ensure(dialect, rollup, &cells)));
        }
        steps.push(Step::Select(rollup, select(dialect, rollup, &cells), cells));
    }
    let others = [
        users::users(dialect, UserRollup::Day, new),
        seal::ensure(dialect, new),
    ];
    steps.extend(others.into_iter().flatten().map(Step::Execute));
    steps.extend(seal::lock(dialect, new).map(Step::Blocks));
    steps.extend(totals::totals(dialect, new).map(Step::Execute));
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest parameter count each backend takes in one statement.
    fn max_binds(dialect: Dialect) -> usize {
        match dialect {
            Dialect::Sqlite => 32_766,
            Dialect::Postgres | Dialect::Mysql => 65_535,
        }
    }

    /// Rows that share nothing: every row its own cell in every rollup and its own user.
    fn distinct_rows(n: usize) -> Vec<Row> {
        (0..n)
            .map(|i| {
                let mut row = Row::from(&crate::UsageRecord::builder().build());
                row.started_at_us = i as i64 * 1_000;
                row.service = Some(format!("service {i}"));
                row.model = Some(format!("model {i}"));
                row.provider = Some(format!("provider {i}"));
                row.user_id = Some(format!("user {i}"));
                row
            })
            .collect()
    }

    /// The most values one statement of the steps for `rows` binds.
    fn most_binds(dialect: Dialect, rows: &[Row]) -> usize {
        let mut most = 0;
        for step in steps(dialect, rows) {
            let binds = match step {
                Step::Execute(sql) | Step::Blocks(sql) => sql.binds.len(),
                Step::Select(rollup, sql, cells) => {
                    let upsert =
                        crate::store::write::cells::upsert(dialect, rollup, cells, Vec::new())
                            .unwrap();
                    sql.binds.len().max(upsert.binds.len())
                }
            };
            most = most.max(binds);
        }
        most
    }

    #[test]
    fn a_round_of_steps_stays_under_every_bind_limit() {
        let rows = distinct_rows(ROWS_PER_STEP);
        for dialect in [Dialect::Sqlite, Dialect::Postgres, Dialect::Mysql] {
            let most = most_binds(dialect, &rows);
            assert!(most <= max_binds(dialect), "{dialect:?}: {most} binds");
            assert!(
                most >= 6 * ROWS_PER_STEP,
                "{dialect:?}: the test binds little"
            );
        }
        // What the writers split: a batch of 6,000 such rows in one round would not do.
        let most = most_binds(Dialect::Sqlite, &distinct_rows(3 * ROWS_PER_STEP));
        assert!(most > max_binds(Dialect::Sqlite), "{most}");
    }
}
