//! Which of a batch's rows an insert really adds: the backends find out differently
//! (a read before the insert, a locking read, or the insert's own answer), and keep
//! only those rows for the rollups.

use std::borrow::Cow;
use std::collections::HashSet;

use crate::store::schema::row::Row;
use crate::store::sql::{Dialect, KeyRow, Sql};

/// Drops the batch's duplicates and the rows already `stored`, leaving the rows an
/// insert will really add.
#[cfg_attr(not(any(feature = "sqlite", feature = "mysql")), allow(dead_code))]
pub(crate) fn only_new<'r>(rows: &'r [Row], stored: &[KeyRow]) -> Cow<'r, [Row]> {
    let mut seen: HashSet<(i64, &[u8])> = stored
        .iter()
        .map(|k| (k.started_at_us, k.id.as_slice()))
        .collect();
    keep(rows, |r| seen.insert((r.started_at_us, r.id.as_slice())))
}

/// The rows whose keys an insert reported `added`: a record the batch holds twice was
/// added once.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn only_added<'r>(rows: &'r [Row], added: &[KeyRow]) -> Cow<'r, [Row]> {
    let mut added: HashSet<(i64, &[u8])> = added
        .iter()
        .map(|k| (k.started_at_us, k.id.as_slice()))
        .collect();
    // Taken out as found, so that the second copy is dropped.
    keep(rows, |r| added.remove(&(r.started_at_us, r.id.as_slice())))
}

/// The rows `keep` says yes to, in order; borrowed when that is all of them (the usual
/// batch, whose records are all new), so nothing is copied.
fn keep<'r>(rows: &'r [Row], mut keep: impl FnMut(&'r Row) -> bool) -> Cow<'r, [Row]> {
    let kept: Vec<bool> = rows.iter().map(&mut keep).collect::<Vec<_>>();
    if kept.iter().all(|&k| k) {
        return Cow::Borrowed(rows);
    }
    Cow::Owned(
        rows.iter()
            .zip(kept)
            .filter(|&(_, kept)| kept)
            .map(|(row, _)| row.clone())
            .collect(),
    )
}

/// The statement that finds which of `rows` are stored already; `lock` makes it hold
/// the keys (and the gaps around them) until the transaction ends (MySQL).
#[cfg_attr(not(any(feature = "sqlite", feature = "mysql")), allow(dead_code))]
pub(crate) fn existing(dialect: Dialect, rows: &[Row], lock: bool) -> Sql {
    let mut times: Vec<i64> = rows.iter().map(|r| r.started_at_us).collect();
    times.sort_unstable();
    times.dedup();
    let mut sql = Sql::new(dialect);
    sql.push("SELECT started_at_us, id FROM usage_records WHERE started_at_us IN (");
    sql.list(times, ", ", |sql, t| {
        sql.int(t);
    });
    sql.push(")");
    if lock {
        sql.push(" FOR UPDATE");
    }
    sql
}
