//! Deferring the rollups of records a batch spreads thin over time (see
//! [`spread`](super::spread)): they are stored pending, and their blocks settled once
//! such batches stop coming.

use std::sync::Arc;
use std::time::Duration;

use crate::store::DieselStore;

/// A store's deferral of records spread thin (see the module docs).
#[derive(Debug)]
pub(crate) struct Deferral {
    /// How long without a deferred batch before the pending blocks are settled.
    quiet: Duration,
    /// Counts the deferred batches: the settling task wakes on a change, and ends once
    /// the store, which holds this sender, is gone.
    deferred: tokio::sync::watch::Sender<u64>,
}

impl Deferral {
    pub(crate) fn new(quiet: Duration) -> Self {
        Deferral {
            quiet,
            deferred: tokio::sync::watch::Sender::new(0),
        }
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
                    tracing::warn!(%error, "tower-usage: the deferred records were not settled; trying again");
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
                tracing::warn!(%error, "tower-usage: the pending records were not settled; the next connect tries again");
            }
        });
    }
}
