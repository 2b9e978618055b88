//! The layout of partitioned records: the periods, the partitions' names, and what the
//! store knows of the ranges its partitions cover.

use std::sync::Mutex;

use chrono::{DateTime, Datelike, TimeZone, Utc};

use crate::store::schema::slots::DAY_US;

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
    pub(super) fn period(self, at: i64) -> (i64, i64) {
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
pub(super) fn name(from: i64) -> String {
    let day = DateTime::<Utc>::from_timestamp_micros(from).unwrap_or(DateTime::UNIX_EPOCH);
    format!("usage_records_{}", day.format("%Y%m%d"))
}

/// The parts of `[from, to)` that none of `covered` (sorted by start) holds.
pub(super) fn gaps(from: i64, to: i64, covered: &[(i64, i64)]) -> Vec<(i64, i64)> {
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
pub(crate) struct Partitioned {
    layout: Partitions,
    covered: Mutex<Vec<(i64, i64)>>,
}

impl Partitioned {
    pub(crate) fn new(layout: Partitions) -> Self {
        Partitioned {
            layout,
            covered: Mutex::new(Vec::new()),
        }
    }

    /// The layout.
    pub(super) fn layout(&self) -> Partitions {
        self.layout
    }

    /// The periods of `times` no known partition holds, in order, once each.
    pub(super) fn missing(&self, times: impl IntoIterator<Item = i64>) -> Vec<(i64, i64)> {
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

    /// Takes the ranges the partitions cover, as upkeep found them.
    pub(super) fn set(&self, mut covered: Vec<(i64, i64)>) {
        covered.sort_unstable();
        *self.covered.lock().unwrap_or_else(|e| e.into_inner()) = covered;
    }

    /// Forgets the ranges that end at or before `before`: their partitions were dropped.
    pub(super) fn forget_before(&self, before: i64) {
        let mut covered = self.covered.lock().unwrap_or_else(|e| e.into_inner());
        covered.retain(|&(_, to)| to > before);
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
