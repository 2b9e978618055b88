//! Partition upkeep: the conversion of a plain table, the partitions a batch needs, and
//! the drops retention asks for, each one transaction under the upkeep lock.

use chrono::Utc;
use diesel::QueryResult;
use futures_util::future::BoxFuture;

use super::ddl::{self, Listed};
use super::layout::{gaps, name, Partitions};
use crate::store::backend::run::{Job, Run};
use crate::store::sql::{Count, Dialect};
use crate::store::{DieselStore, StoreError};

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
    pub(in crate::store) async fn prepare_partitions(&self) -> Result<(), StoreError> {
        let Some(partitioned) = &self.inner.partitions else {
            return Ok(());
        };
        let now = Utc::now().timestamp_micros();
        let current = partitioned.layout().period(now);
        let next = partitioned.layout().period(current.1);
        let covered = self
            .run(Upkeep {
                layout: partitioned.layout(),
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
    pub(in crate::store) async fn ensure_partitions(&self, times: impl IntoIterator<Item = i64>) {
        let Some(partitioned) = &self.inner.partitions else {
            return;
        };
        let periods = partitioned.missing(times);
        if periods.is_empty() {
            return;
        }
        let upkeep = Upkeep {
            layout: partitioned.layout(),
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
    pub(in crate::store) async fn drop_partitions_before(
        &self,
        before: i64,
    ) -> Result<(u64, u64), StoreError> {
        if self.dialect() != Dialect::Postgres {
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
            partitioned.forget_before(before);
        }
        Ok(dropped)
    }
}
