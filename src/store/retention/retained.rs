//! What retention left: the horizons as answers see them, a run's report, and the
//! process's recent view of the horizons.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::cut::Horizons;
use crate::query::TimeRange;

/// How long the API's view of the horizons may lag a run in another process.
const LATELY: Duration = Duration::from_secs(10);

/// How far retention has removed records and rollups: what answers over old ranges rest
/// on. Read with [`DieselStore::retained`](crate::store::DieselStore::retained).
///
/// Before [`records_before`](Self::records_before), answers come from the rollups alone.
/// They count whole 15-minute slots: a range that starts or ends inside one leaves that
/// part out. They keep what the rollups keep per slot: service, model, provider,
/// outcome and status class, each user's daily sums (unique and top users), and heavy
/// users' hourly detail (their own usage). What only the records hold counts nothing
/// there: filters and breakdowns by client or country, other users' own usage by
/// service and model, exports. Before [`rollups_before`](Self::rollups_before),
/// nothing is kept.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use tower_usage::query::TimeRange;
/// use tower_usage::store::Retained;
///
/// let day = |d| Utc.with_ymd_and_hms(2026, 11, d, 0, 0, 0).unwrap();
/// let retained = Retained { records_before: Some(day(5)), ..Retained::default() };
/// let part = retained.aggregate_only(&TimeRange::between(day(1), day(30)));
/// assert_eq!(part, Some(TimeRange::between(day(1), day(5))));
/// assert_eq!(retained.aggregate_only(&TimeRange::between(day(5), day(30))), None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Retained {
    /// Records that started before this were removed; `None` if none ever were.
    pub records_before: Option<DateTime<Utc>>,
    /// Rollup sums before this were removed; `None` if none ever were.
    pub rollups_before: Option<DateTime<Utc>>,
}

impl Retained {
    /// The part of `range` answered from the rollups alone (see the type's docs), if
    /// any: from its start, or the rollups' horizon, to the records' horizon.
    pub fn aggregate_only(&self, range: &TimeRange) -> Option<TimeRange> {
        let to = self.records_before?.min(range.to);
        let from = self
            .rollups_before
            .map_or(range.from, |r| r.max(range.from));
        (from < to).then(|| TimeRange::between(from, to))
    }

    /// The part of `range` of which nothing is kept, if any.
    pub fn removed(&self, range: &TimeRange) -> Option<TimeRange> {
        let to = self.rollups_before?.min(range.to);
        (range.from < to).then(|| TimeRange::between(range.from, to))
    }

    pub(super) fn of(horizons: Horizons) -> Retained {
        Retained {
            records_before: horizons.raw_before_us.map(instant),
            rollups_before: horizons.rollups_before_us.map(instant),
        }
    }
}

fn instant(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::UNIX_EPOCH)
}

/// What a retention run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RetentionReport {
    /// The horizons after the run.
    pub retained: Retained,
    /// Records this run removed.
    pub records_removed: u64,
    /// Rollup rows this run removed.
    pub rollup_rows_removed: u64,
    /// Partitions of the records this run dropped whole (partitioned PostgreSQL, see
    /// [`DieselStoreBuilder::partition_records`](crate::store::DieselStoreBuilder::partition_records));
    /// their records count in `records_removed`.
    pub partitions_dropped: u64,
}

/// The horizons as this process last read them, for the API's answers (which must not
/// cost a query each).
#[derive(Debug, Default)]
pub(crate) struct Lately(Mutex<Option<(tokio::time::Instant, Retained)>>);

impl Lately {
    pub(super) fn get(&self) -> Option<Retained> {
        let seen = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.filter(|(at, _)| at.elapsed() < LATELY).map(|(_, r)| r)
    }

    pub(super) fn set(&self, retained: Retained) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((tokio::time::Instant::now(), retained));
    }
}
