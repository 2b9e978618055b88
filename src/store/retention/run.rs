//! A retention run, the horizons read back, and the background task.

use std::time::Duration;

use chrono::Utc;

use super::cut::{self, Horizons};
use super::retained::{Retained, RetentionReport};
use super::RetentionPolicy;
use crate::store::schema::slots::WEEK_US;
use crate::store::schema::ROLLUP_TABLES;
use crate::store::sql::Count;
use crate::store::{DieselStore, StoreError};

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
        // Records stored without their rollups (an import, deferred late records) are
        // counted into them first: once their block is past the horizon, its rollups are
        // all that is left, and a rebuild would find nothing to count.
        self.settle().await?;
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
    pub(crate) async fn retained_lately(&self) -> Option<Retained> {
        match self.inner.retained.get() {
            Some(retained) => Some(retained),
            None => self.retained().await.ok(),
        }
    }

    pub(in crate::store) async fn horizons(&self) -> Result<Horizons, StoreError> {
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
