//! Deferring the rollups of late records: a batch with many records two or more 7-day
//! blocks before the newest block this store has written goes without their rollups,
//! and the rollups of their blocks are rebuilt once such batches stop coming.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::store::schema::row::Row;
use crate::store::schema::slots::WEEK_US;
use crate::store::DieselStore;

/// Late records a batch needs before they are deferred: a few stragglers cost less in
/// the write path than a rebuild of their block.
const LATE_MIN: usize = 64;

/// A store's deferral of late records (see the module docs).
#[derive(Debug)]
pub(crate) struct Deferral {
    /// How long without a deferred batch before the pending blocks are rebuilt.
    quiet: Duration,
    /// The newest block this process has written records in.
    newest: AtomicI64,
    /// Counts the deferred batches: the settling task wakes on a change, and ends once
    /// the store, which holds this sender, is gone.
    deferred: tokio::sync::watch::Sender<u64>,
}

impl Deferral {
    pub(crate) fn new(quiet: Duration) -> Self {
        Deferral {
            quiet,
            newest: AtomicI64::new(i64::MIN),
            deferred: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Splits `rows` into the late ones to defer (none unless there are [`LATE_MIN`])
    /// and the others. A row is late two blocks or more before the newest block written
    /// (this batch's included), and after `raw_before_us`, the retention horizon: before
    /// it, a block's rollups hold the sums of records that are gone and cannot be
    /// rebuilt.
    pub(crate) fn split(&self, rows: Vec<Row>, raw_before_us: i64) -> (Vec<Row>, Vec<Row>) {
        let block = |row: &Row| row.started_at_us.div_euclid(WEEK_US);
        let batch_newest = rows.iter().map(block).max().unwrap_or(i64::MIN);
        let newest = self
            .newest
            .fetch_max(batch_newest, Relaxed)
            .max(batch_newest);
        let is_late = |row: &Row| block(row) + 1 < newest && row.started_at_us >= raw_before_us;
        if rows.iter().filter(|row| is_late(row)).count() < LATE_MIN {
            return (Vec::new(), rows);
        }
        rows.into_iter().partition(is_late)
    }

    /// Notes a deferred batch.
    pub(crate) fn deferred(&self) {
        self.deferred.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl DieselStore {
    /// Starts the task that settles the pending blocks once no batch was deferred for
    /// the deferral's quiet time; it ends with the store.
    pub(crate) fn spawn_settling(&self) {
        let Some(deferral) = &self.inner.deferral else {
            return;
        };
        let mut deferred = deferral.deferred.subscribe();
        let quiet = deferral.quiet;
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            while deferred.changed().await.is_ok() {
                loop {
                    match tokio::time::timeout(quiet, deferred.changed()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return,
                        Err(_) => break,
                    }
                }
                let Some(inner) = inner.upgrade() else { return };
                let store = DieselStore { inner };
                if let Err(error) = store.settle().await {
                    tracing::warn!(%error, "tower-usage: the rollups of deferred late records were not rebuilt; trying again");
                    // As if another batch came: tried again after the quiet time.
                    deferred.mark_changed();
                }
            }
        });
    }

    /// Settles once, in a task of its own, logging a failure.
    pub(crate) fn spawn_settle_once(&self) {
        let store = self.clone();
        tokio::spawn(async move {
            if let Err(error) = store.settle().await {
                tracing::warn!(%error, "tower-usage: the rollups of records stored without them were not rebuilt; the next connect tries again");
            }
        });
    }
}
