//! Retention: old records removed while the rollups keep their sums, and old rollups
//! removed after a horizon of their own.
//!
//! A run first moves the horizons forward in `usage_retention` (never back), then removes
//! what lies before them: whole partitions of the records on partitioned PostgreSQL,
//! the records left in batches of about
//! [`RetentionPolicy::batch_rows`] (each its own statement and transaction, so writes go
//! on between them), rollup rows a 7-day block per statement. Horizons fall on the start
//! of a 7-day block, the unit every rollup divides into, so no rollup row straddles one
//! and a [rebuild](crate::store::DieselStore::rebuild_rollups) replays only the records
//! after the records' horizon, keeping the sums before it. A run that fails part way is
//! finished by the next; two processes running at once remove the same rows once.
//!
//! Before the records' horizon the store answers from its rollups alone (see
//! [`Retained`]).

pub(crate) mod cut;
mod policy;

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use policy::{BadRetentionPolicy, RetentionPolicy};

use super::schema::slots::WEEK_US;
use super::schema::ROLLUP_TABLES;
use super::sql::Count;
use super::{DieselStore, StoreError};
use crate::query::TimeRange;
use cut::Horizons;

/// How long the API's view of the horizons may lag a run in another process.
const LATELY: Duration = Duration::from_secs(10);

/// How far retention has removed records and rollups: what answers over old ranges rest
/// on. Read with [`DieselStore::retained`].
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

    fn of(horizons: Horizons) -> Retained {
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
pub(super) struct Lately(Mutex<Option<(tokio::time::Instant, Retained)>>);

impl Lately {
    fn get(&self) -> Option<Retained> {
        let seen = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.filter(|(at, _)| at.elapsed() < LATELY).map(|(_, r)| r)
    }

    fn set(&self, retained: Retained) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((tokio::time::Instant::now(), retained));
    }
}

impl DieselStore {
    /// Removes what `policy` no longer keeps, now: records before its records' horizon
    /// (their sums stay in the rollups) and, if it has one, rollup rows before its
    /// rollups' horizon. Answers over the removed records' time come from the rollups
    /// alone; [`retained`](Self::retained) says where that starts.
    ///
    /// The run first moves the horizons stored in `usage_retention` forward (never
    /// back), then, on partitioned PostgreSQL
    /// ([`partition_records`](crate::store::DieselStoreBuilder::partition_records)),
    /// drops the partitions that lie wholly before the records' horizon, then removes
    /// the records left before it in batches of about
    /// [`RetentionPolicy::batch_rows`], each its own statement, so writes go on between
    /// them, and rollup rows a 7-day block per statement. A run that fails part way is
    /// finished by the next; runs in two processes at once remove each row once.
    /// [`rebuild_rollups`](Self::rebuild_rollups) afterwards replays only the records
    /// after the horizon and keeps the sums before it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_usage::store::{DieselStore, RetentionPolicy};
    ///
    /// let store = DieselStore::connect("sqlite::memory:").await?;
    /// let report = store.apply_retention(&RetentionPolicy::keep_records_days(90)?).await?;
    /// assert_eq!(report.records_removed, 0);
    /// assert!(report.retained.records_before.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn apply_retention(
        &self,
        policy: &RetentionPolicy,
    ) -> Result<RetentionReport, StoreError> {
        let now = Utc::now().timestamp_micros();
        let dialect = self.dialect();
        let advance = cut::advance(
            dialect,
            policy.records_before(now),
            policy.rollups_before(now),
        );
        self.execute(vec![advance]).await?;
        // Another run may have cut further: remove up to the stored horizons.
        let horizons = self.horizons().await?;
        let mut report = RetentionReport {
            retained: Retained::of(horizons),
            records_removed: 0,
            rollup_rows_removed: 0,
            partitions_dropped: 0,
        };
        let removed = self.remove(horizons, policy.batch(), &mut report).await;
        // Whether or not it finished: answers read before may count what is gone.
        if report.records_removed + report.rollup_rows_removed > 0 || removed.is_err() {
            if let Some(cache) = &self.inner.cache {
                cache.record_written_everywhere().await;
            }
        }
        self.inner.retained.set(report.retained);
        removed.map(|()| report)
    }

    async fn remove(
        &self,
        horizons: Horizons,
        batch: i64,
        report: &mut RetentionReport,
    ) -> Result<(), StoreError> {
        let dialect = self.dialect();
        if let Some(before) = horizons.raw_before_us {
            let (records, partitions) = self.drop_partitions_before(before).await?;
            report.records_removed += records;
            report.partitions_dropped += partitions;
            loop {
                let nth: Vec<Count> = self
                    .load(cut::nth_record_before(dialect, before, batch))
                    .await?;
                let upto = nth.first().map_or(before, |c| c.n.saturating_add(1));
                let sql = cut::delete_records_before(dialect, upto.min(before));
                report.records_removed += self.execute(vec![sql]).await? as u64;
                if nth.is_empty() {
                    break;
                }
            }
        }
        if let Some(before) = horizons.rollups_before_us {
            for (table, column, width) in ROLLUP_TABLES {
                let first: Vec<Count> = self.load(cut::first_slot(dialect, table, column)).await?;
                let Some(first) = first.first().map(|c| c.n) else {
                    continue;
                };
                let (end, step) = (before.div_euclid(width), WEEK_US / width);
                let mut upto = first;
                while upto < end {
                    upto = upto.saturating_add(step).min(end);
                    let sql = cut::delete_slots_before(dialect, table, column, upto);
                    report.rollup_rows_removed += self.execute(vec![sql]).await? as u64;
                }
            }
        }
        Ok(())
    }

    /// How far retention has removed records and rollups (nothing, until
    /// [`apply_retention`](Self::apply_retention) ran).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = tower_usage::store::DieselStore::connect("sqlite::memory:").await?;
    /// assert_eq!(store.retained().await?, tower_usage::store::Retained::default());
    /// # Ok(()) }
    /// ```
    pub async fn retained(&self) -> Result<Retained, StoreError> {
        let retained = Retained::of(self.horizons().await?);
        self.inner.retained.set(retained);
        Ok(retained)
    }

    /// [`retained`](Self::retained) as read at most a few seconds ago, or `None` if it
    /// cannot be read now: for answers that must not wait on it.
    #[cfg_attr(not(feature = "api"), allow(dead_code))]
    pub(crate) async fn retained_lately(&self) -> Option<Retained> {
        match self.inner.retained.get() {
            Some(retained) => Some(retained),
            None => self.retained().await.ok(),
        }
    }

    async fn horizons(&self) -> Result<Horizons, StoreError> {
        let rows: Vec<Horizons> = self.load(cut::horizons(self.dialect())).await?;
        Ok(rows.first().copied().unwrap_or_default())
    }

    /// Applies `policy` every `every` (at least a minute) on the current tokio runtime,
    /// the first time at once, until the returned task is aborted (or the runtime
    /// ends). A failed run is logged (once in a row), and the next one finishes it.
    pub fn spawn_retention(
        &self,
        policy: RetentionPolicy,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let every = every.max(Duration::from_secs(60));
        let store = self.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                match (store.apply_retention(&policy).await, failing) {
                    (Err(e), false) => {
                        tracing::warn!("retention: run failed (retrying quietly): {e}");
                        failing = true;
                    }
                    (Err(_), true) => {}
                    (Ok(report), _) => {
                        failing = false;
                        tracing::debug!(
                            records = report.records_removed,
                            rollup_rows = report.rollup_rows_removed,
                            "retention ran"
                        );
                    }
                }
                tokio::time::sleep(every).await;
            }
        })
    }
}
