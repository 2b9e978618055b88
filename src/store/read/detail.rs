//! Reading a heavy user's detail rows (see the [`write::detail`](crate::store::write::detail)
//! module for what they hold and when they are built): which blocks have them, which
//! parts of a range they serve, and the statement that reads them.

use diesel::sql_types::BigInt;
use diesel::QueryableByName;

use crate::store::schema::row::stored_user;
use crate::store::schema::slots::{ceil_div, DAY_US, HOUR_US, WEEK_US};
use crate::store::schema::{HIST, HOURS, MEASURES};
use crate::store::sql::{Dialect, Sql};

/// Reads which of `blocks` have detail rows of `user`, as rows of [`DetailedBlock`].
pub(crate) fn user_blocks(dialect: Dialect, user: &str, blocks: &[i64]) -> Sql {
    let user = stored_user(user);
    let mut sql = Sql::new(dialect);
    sql.push("SELECT slot AS block FROM usage_user_7d WHERE slot IN (");
    sql.list(blocks, ", ", |sql, block| {
        sql.int(*block);
    });
    sql.push(") AND user_id = ").bind_text(&user);
    sql.push(" AND detailed = 1 ORDER BY slot");
    sql
}

/// A block with detail rows of a user.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct DetailedBlock {
    #[diesel(sql_type = BigInt)]
    pub(crate) block: i64,
}

/// The parts of `[from, to)` that detail rows serve, given the blocks that have them
/// (ascending): the whole UTC days within those blocks, as merged ranges.
pub(crate) fn served(from: i64, to: i64, detailed: &[i64]) -> Vec<(i64, i64)> {
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for &block in detailed {
        // Saturating: a stored block past the end of time lies outside every range.
        let start = block.saturating_mul(WEEK_US).max(from);
        let end = block.saturating_add(1).saturating_mul(WEEK_US).min(to);
        // Whole days only: the histograms are kept per day.
        let start = ceil_div(start, DAY_US) * DAY_US;
        let end = end.div_euclid(DAY_US) * DAY_US;
        if start >= end {
            continue;
        }
        match ranges.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => ranges.push((start, end)),
        }
    }
    ranges
}

/// The whole UTC days of `served` inside `[from, to)`.
pub(crate) fn clip(served: &[(i64, i64)], from: i64, to: i64) -> Vec<(i64, i64)> {
    served
        .iter()
        .map(|&(start, end)| {
            let start = ceil_div(start.max(from), DAY_US) * DAY_US;
            (start, end.min(to).div_euclid(DAY_US) * DAY_US)
        })
        .filter(|(start, end)| start < end)
        .collect()
}

/// What is left of `[from, to)` outside `served` (ascending, within it).
pub(crate) fn rest(from: i64, to: i64, served: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut rest = Vec::new();
    let mut at = from;
    for &(start, end) in served {
        if start > at {
            rest.push((at, start));
        }
        at = at.max(end);
    }
    if at < to {
        rest.push((at, to));
    }
    rest
}

/// The detail rows' share of one user's usage over `served` (ranges of whole UTC days),
/// as rows of [`UserAgg`](crate::store::sql::UserAgg): sums per day (the index into `days`,
/// which must all start on the hour), service and model, then histogram buckets.
pub(crate) fn user_rows(sql: &mut Sql, user: &str, served: &[(i64, i64)], days: &[i64]) {
    let user = stored_user(user);
    let slots = |sql: &mut Sql, width: i64| {
        sql.push(" AND (");
        sql.list(served, " OR ", |sql, &(from, to)| {
            sql.push("slot >= ").int(from / width);
            sql.push(" AND slot < ").int(to / width);
        });
        sql.push(")");
    };
    let (kind0, day) = (sql.bigint(0), sql.as_bigint("d"));
    sql.push("SELECT ")
        .push(&kind0)
        .push(" AS kind, ")
        .push(&day);
    sql.push(" AS k, NULLIF(service, '') AS service, NULLIF(model, '') AS model");
    for m in MEASURES {
        let sum = sql.sum(m);
        sql.push(", ").push(&sum).push(" AS ").push(m);
    }
    sql.push(" FROM (SELECT ");
    sql.step_index(&format!("slot * {HOUR_US}"), days);
    sql.push(" AS d, service, model, ")
        .push(&MEASURES.join(", "));
    sql.push(" FROM ")
        .push(HOURS)
        .push(" WHERE user_id = ")
        .bind_text(&user);
    slots(sql, HOUR_US);
    sql.push(") h GROUP BY d, service, model");

    let (kind, b, count) = (sql.as_bigint("kind"), sql.as_bigint("bucket"), sql.sum("n"));
    let (zero, null) = (sql.bigint(0), sql.null_text());
    sql.push(" UNION ALL SELECT ")
        .push(&kind)
        .push(" AS kind, ")
        .push(&b);
    sql.push(" AS k, ")
        .push(null)
        .push(", ")
        .push(null)
        .push(", ")
        .push(&count);
    for _ in &MEASURES[1..] {
        sql.push(", ").push(&zero);
    }
    sql.push(" FROM ")
        .push(HIST)
        .push(" WHERE user_id = ")
        .bind_text(&user);
    slots(sql, DAY_US);
    sql.push(" GROUP BY kind, bucket");
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: i64 = DAY_US;
    const W: i64 = WEEK_US;

    #[test]
    fn only_whole_days_of_detailed_blocks_are_served() {
        // Blocks 1 and 2 are detailed; the range starts mid-day in block 1 and ends
        // mid-day in block 3.
        let (from, to) = (W + 2 * D + 5, 3 * W + D + 7);
        let served = served(from, to, &[1, 2]);
        assert_eq!(served, vec![(W + 3 * D, 3 * W)]);
        assert_eq!(
            rest(from, to, &served),
            vec![(from, W + 3 * D), (3 * W, to)]
        );
        // A gap between detailed blocks is read raw.
        let served = super::served(0, 5 * W, &[1, 3]);
        assert_eq!(served, vec![(W, 2 * W), (3 * W, 4 * W)]);
        assert_eq!(
            rest(0, 5 * W, &served),
            vec![(0, W), (2 * W, 3 * W), (4 * W, 5 * W)]
        );
        // Less than a whole day: nothing served.
        assert!(super::served(W + 5, W + D, &[1]).is_empty());
        assert_eq!(rest(W + 5, W + D, &[]), vec![(W + 5, W + D)]);
    }
}
