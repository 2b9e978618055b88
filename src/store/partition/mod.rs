//! Partitioned records on PostgreSQL: `usage_records` range-partitioned by start time,
//! a partition a day or a month, so that retention drops partitions instead of deleting
//! rows and queries over a range read only its partitions. The rollups stay as they are.
//!
//! [`DieselStoreBuilder::partition_records`](crate::store::DieselStoreBuilder::partition_records)
//! turns it on. `connect` then makes a plain `usage_records` partitioned, in one
//! transaction: the old table becomes the partition of every time up to the end of the
//! current period (or, empty, goes), a default partition takes what no other holds,
//! and the partitions of the current and the next period are made. Before each batch,
//! the store makes the partitions of the periods its records fall in that have none
//! (moving any of their rows out of the default partition), so history and late
//! records land in partitions of their own too. Upkeep is serialised between processes
//! by an advisory lock; every statement of it is one transaction.

mod ddl;

use std::sync::Mutex;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use diesel::QueryResult;
use futures_util::future::BoxFuture;

use super::backend::run::{Job, Run};
use super::schema::slots::DAY_US;
use super::sql::Count;
use super::{DieselStore, StoreError};
use ddl::Listed;

/// How [`DieselStoreBuilder::partition_records`](crate::store::DieselStoreBuilder::partition_records)
/// splits the records by time: one partition per UTC day or per UTC calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Partitions {
    /// A partition per UTC day: retention keeps to the day, a month is about 30 tables.
    Daily,
    /// A partition per UTC calendar month.
    Monthly,
}

impl Partitions {
    /// The period holding `at` (microseconds): `[from, to)`.
    fn period(self, at: i64) -> (i64, i64) {
        match self {
            Partitions::Daily => {
                let from = at.div_euclid(DAY_US) * DAY_US;
                (from, from.saturating_add(DAY_US))
            }
            Partitions::Monthly => {
                let Some(t) = DateTime::<Utc>::from_timestamp_micros(at) else {
                    return (at, at.saturating_add(1));
                };
                let month = |y: i32, m: u32| {
                    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
                        .single()
                        .map_or(at, |d| d.timestamp_micros())
                };
                let next = if t.month() == 12 {
                    month(t.year() + 1, 1)
                } else {
                    month(t.year(), t.month() + 1)
                };
                (month(t.year(), t.month()), next)
            }
        }
    }
}

/// A partition's name: the records' table and the UTC date its range starts on.
fn name(from: i64) -> String {
    let day = DateTime::<Utc>::from_timestamp_micros(from).unwrap_or(DateTime::UNIX_EPOCH);
    format!("usage_records_{}", day.format("%Y%m%d"))
}

/// The parts of `[from, to)` that none of `covered` (sorted by start) holds.
fn gaps(from: i64, to: i64, covered: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut gaps = Vec::new();
    let mut at = from;
    for &(a, b) in covered {
        if b <= at || a >= to {
            continue;
        }
        if a > at {
            gaps.push((at, a));
        }
        at = at.max(b);
        if at >= to {
            break;
        }
    }
    if at < to {
        gaps.push((at, to));
    }
    gaps
}

/// The store's side of partitioning: the layout, and the ranges the partitions cover as
/// last read or made, so a batch whose records all have one costs no query.
#[derive(Debug)]
pub(super) struct Partitioned {
    layout: Partitions,
    covered: Mutex<Vec<(i64, i64)>>,
}

impl Partitioned {
    pub(super) fn new(layout: Partitions) -> Self {
        Partitioned {
            layout,
            covered: Mutex::new(Vec::new()),
        }
    }

    /// The periods of `times` no known partition holds, in order, once each.
    fn missing(&self, times: impl IntoIterator<Item = i64>) -> Vec<(i64, i64)> {
        let covered = self.covered.lock().unwrap_or_else(|e| e.into_inner());
        // Sorted and disjoint: the only range that may hold `t` is the last one to
        // start at or before it.
        let held = |t: i64| {
            let i = covered.partition_point(|&(a, _)| a <= t);
            i > 0 && t < covered[i - 1].1
        };
        let mut missing: Vec<(i64, i64)> = times
            .into_iter()
            .filter(|&t| !held(t))
            .map(|t| self.layout.period(t))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        missing
    }

    fn set(&self, mut covered: Vec<(i64, i64)>) {
        covered.sort_unstable();
        *self.covered.lock().unwrap_or_else(|e| e.into_inner()) = covered;
    }
}

/// Partition upkeep in one transaction under the upkeep lock: the conversion of a plain
/// table (when `convert_at` is the time now), then the partitions of `periods` where
/// none covers them; the output is the ranges covered after it.
struct Upkeep {
    layout: Partitions,
    convert_at: Option<i64>,
    periods: Vec<(i64, i64)>,
}

impl Job for Upkeep {
    type Output = Vec<(i64, i64)>;

    fn run<C: Run>(self, conn: &mut C) -> BoxFuture<'_, QueryResult<Vec<(i64, i64)>>> {
        conn.transaction(Box::new(move |conn: &mut C| {
            Box::pin(async move {
                conn.execute(ddl::lock()).await?;
                let partitioned: Vec<Count> = conn.load(ddl::is_partitioned()).await?;
                if partitioned.first().is_none_or(|c| c.n == 0) {
                    let Some(now) = self.convert_at else {
                        return Ok(Vec::new());
                    };
                    let latest: Vec<Count> = conn.load(ddl::latest()).await?;
                    let cut = latest.first().map(|c| self.layout.period(c.n.max(now)).1);
                    for sql in ddl::convert(cut) {
                        conn.execute(sql).await?;
                    }
                }
                let listed: Vec<Listed> = conn.load(ddl::partitions()).await?;
                let mut covered: Vec<(i64, i64)> =
                    listed.iter().filter_map(Listed::range).collect();
                covered.sort_unstable();
                for (from, to) in self.periods {
                    for (a, b) in gaps(from, to, &covered) {
                        for sql in ddl::create(&name(a), a, b) {
                            conn.execute(sql).await?;
                        }
                        covered.push((a, b));
                        covered.sort_unstable();
                    }
                }
                Ok(covered)
            })
        }))
    }
}

/// Drops, in one transaction under the upkeep lock, the partitions whose range ends at
/// or before `before` (never the default one); the output is the records they held and
/// how many were dropped. Each is locked and counted first, then all are dropped, so
/// the lock a drop takes on the parent is held for the drops alone.
struct DropBefore(i64);

impl Job for DropBefore {
    type Output = (u64, u64);

    fn run<C: Run>(self, conn: &mut C) -> BoxFuture<'_, QueryResult<(u64, u64)>> {
        conn.transaction(Box::new(move |conn: &mut C| {
            Box::pin(async move {
                conn.execute(ddl::lock()).await?;
                let partitioned: Vec<Count> = conn.load(ddl::is_partitioned()).await?;
                if partitioned.first().is_none_or(|c| c.n == 0) {
                    return Ok((0, 0));
                }
                let listed: Vec<Listed> = conn.load(ddl::partitions()).await?;
                let gone: Vec<&Listed> = listed
                    .iter()
                    .filter(|p| p.range().is_some_and(|(_, to)| to <= self.0))
                    .collect();
                conn.execute(ddl::lock_timeout()).await?;
                let mut records = 0u64;
                for partition in &gone {
                    conn.execute(ddl::lock_partition(&partition.name)).await?;
                    let n: Vec<Count> = conn.load(ddl::count(&partition.name)).await?;
                    records += n.first().map_or(0, |c| u64::try_from(c.n).unwrap_or(0));
                }
                for partition in &gone {
                    conn.execute(ddl::drop(&partition.name)).await?;
                }
                Ok((records, gone.len() as u64))
            })
        }))
    }
}

impl DieselStore {
    /// At `connect`, with partitioning on: makes the table partitioned if it is not, and
    /// the partitions of the current and the next period.
    pub(super) async fn prepare_partitions(&self) -> Result<(), StoreError> {
        let Some(partitioned) = &self.inner.partitions else {
            return Ok(());
        };
        let now = Utc::now().timestamp_micros();
        let current = partitioned.layout.period(now);
        let next = partitioned.layout.period(current.1);
        let covered = self
            .run(Upkeep {
                layout: partitioned.layout,
                convert_at: Some(now),
                periods: vec![current, next],
            })
            .await?;
        partitioned.set(covered);
        Ok(())
    }

    /// Before a batch, with partitioning on: makes the partitions of the periods of
    /// `times` that have none. A failure is logged and the batch written anyway: its
    /// records land in the default partition, and a later batch makes the partition.
    pub(super) async fn ensure_partitions(&self, times: impl IntoIterator<Item = i64>) {
        let Some(partitioned) = &self.inner.partitions else {
            return;
        };
        let periods = partitioned.missing(times);
        if periods.is_empty() {
            return;
        }
        let upkeep = Upkeep {
            layout: partitioned.layout,
            convert_at: None,
            periods,
        };
        match self.run(upkeep).await {
            Ok(covered) => partitioned.set(covered),
            Err(e) => tracing::warn!("usage_records: a partition could not be made: {e}"),
        }
    }

    /// For retention, on PostgreSQL: drops the partitions of `usage_records` (if it is
    /// partitioned) that hold only records before `before`; the records they held and
    /// how many partitions were dropped. When the drops cannot run (their lock waits
    /// past the timeout), nothing is dropped and the batched deletes remove the rows.
    pub(super) async fn drop_partitions_before(
        &self,
        before: i64,
    ) -> Result<(u64, u64), StoreError> {
        if self.dialect() != super::sql::Dialect::Postgres {
            return Ok((0, 0));
        }
        // A drop that cannot have its lock soon is left to the batched deletes.
        let dropped = match self.run(DropBefore(before)).await {
            Ok(dropped) => dropped,
            Err(e) => {
                tracing::warn!("retention: partitions not dropped, deleting instead: {e}");
                return Ok((0, 0));
            }
        };
        if let Some(partitioned) = &self.inner.partitions {
            let mut covered = partitioned
                .covered
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            covered.retain(|&(_, to)| to > before);
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32) -> i64 {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn periods_are_utc_days_and_calendar_months() {
        let noon = at(2026, 12, 6) + DAY_US / 2;
        assert_eq!(
            Partitions::Daily.period(noon),
            (at(2026, 12, 6), at(2026, 12, 7))
        );
        assert_eq!(
            Partitions::Monthly.period(noon),
            (at(2026, 12, 1), at(2027, 1, 1))
        );
        assert_eq!(
            Partitions::Monthly.period(at(2024, 2, 29)),
            (at(2024, 2, 1), at(2024, 3, 1))
        );
        assert_eq!(Partitions::Daily.period(-1), (-DAY_US, 0));
        assert_eq!(name(at(2026, 12, 6)), "usage_records_20261206");
    }

    #[test]
    fn gaps_are_what_no_partition_holds() {
        assert_eq!(gaps(0, 10, &[]), vec![(0, 10)]);
        assert_eq!(gaps(0, 10, &[(i64::MIN, 3), (5, 7)]), vec![(3, 5), (7, 10)]);
        assert_eq!(gaps(0, 10, &[(0, 10)]), vec![]);
        assert_eq!(gaps(0, 10, &[(-5, 2), (8, 20)]), vec![(2, 8)]);
    }

    #[test]
    fn a_batch_asks_once_for_each_period_it_lacks() {
        let p = Partitioned::new(Partitions::Daily);
        p.set(vec![(0, DAY_US)]);
        let missing = p.missing([5, DAY_US + 1, DAY_US + 2, 3 * DAY_US]);
        assert_eq!(
            missing,
            vec![(DAY_US, 2 * DAY_US), (3 * DAY_US, 4 * DAY_US)]
        );
    }
}
