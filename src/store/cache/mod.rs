//! [`AnswerCache`]: what the analytics read, kept between questions, and never an answer
//! older than the records.
//!
//! | module | holds |
//! |---|---|
//! | `pieces` | where a read's range is cut: settled days, today's closed slots, the open tail |
//! | `written` | which slots were written since when, so a stale entry is never served |

mod pieces;
mod written;

pub(crate) use pieces::pieces;
pub(crate) use written::slots_of;

use std::any::Any;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use written::Written;

/// An exact cache for a [`DieselStore`](super::DieselStore)'s analytics: every answer is
/// what the database would say at the moment it is asked, records written a moment ago
/// included.
///
/// Each analytics read is cut at the start of the open tail (the 15-minute slot not yet
/// two minutes over) and at the start of the UTC day holding it. What the statements of
/// each piece return is kept under the statement, with the range it covers and the
/// moment it was read. Every batch the store writes stamps the slots it touched,
/// after its commit; a kept piece whose range holds a slot stamped after it was read is
/// read again, so a record arriving late for an old slot (a retry, a replay, a clock
/// behind) costs the pieces over that slot a new read and nothing else. Between writes
/// into the tail, a question is answered from memory; the settled days are read again
/// only when a record arrives late for them.
///
/// The cache knows of the writes made through the stores it is given to. Give the same
/// cache to every store of the process that writes into the database; writes from other
/// processes are not seen, so with several writing processes, leave the cache off where
/// they read (a Redis-shared cache for fleets is not there yet).
///
/// Memory is bounded by `max_bytes`, an estimate of what the kept rows take, evicted by
/// the least recent use. [`stats`](Self::stats) counts hits, misses and invalidations.
///
/// ```
/// use tower_usage::query::{Filter, TimeRange};
/// use tower_usage::store::{AnswerCache, DieselStore};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = AnswerCache::new(64 << 20);
/// let store = DieselStore::builder("sqlite::memory:").answer_cache(cache.clone()).connect().await?;
/// let week = Filter::new(TimeRange::last_days(7));
/// store.metrics(&week).await?;
/// store.metrics(&week).await?;
/// let stats = cache.stats();
/// assert!(stats.hits > 0 && stats.misses > 0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AnswerCache {
    shared: Arc<Shared>,
}

struct Shared {
    entries: quick_cache::sync::Cache<String, Entry, Weight>,
    written: Mutex<Written>,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
}

/// A piece's rows, or a whole answer, as read at `epoch`, for the records of
/// `[from, to)`.
#[derive(Clone)]
struct Entry {
    epoch: u64,
    from: i64,
    to: i64,
    value: Arc<dyn Any + Send + Sync>,
    bytes: u64,
}

#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<String, Entry> for Weight {
    fn weight(&self, key: &String, entry: &Entry) -> u64 {
        (key.len() as u64).saturating_add(entry.bytes).max(1)
    }
}

/// What an [`AnswerCache`] has done since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads answered from memory.
    pub hits: u64,
    /// Reads that went to the database: not kept, evicted, or stale.
    pub misses: u64,
    /// Kept pieces found stale (a write into their range after they were read), and
    /// dropped.
    pub invalidations: u64,
    /// Pieces kept now.
    pub entries: u64,
    /// The estimated bytes they take.
    pub bytes: u64,
    /// The bound on `bytes`.
    pub capacity_bytes: u64,
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache")
            .field("stats", &self.stats())
            .finish()
    }
}

/// How many times a read waits for another's load and finds it stale before it reads
/// for itself, uncached: under a constant stream of writes into its range, a read does
/// not wait for ever.
const MAX_WAITS: usize = 3;

impl AnswerCache {
    /// A cache holding up to about `max_bytes` of read rows.
    pub fn new(max_bytes: u64) -> Self {
        // quick_cache sizes its tables from an estimate of the entry count.
        let items = usize::try_from(max_bytes / 4096)
            .unwrap_or(usize::MAX)
            .clamp(16, 1 << 20);
        AnswerCache {
            shared: Arc::new(Shared {
                entries: quick_cache::sync::Cache::with_weighter(items, max_bytes.max(1), Weight),
                written: Mutex::new(Written::default()),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                invalidations: AtomicU64::new(0),
            }),
        }
    }

    /// What the cache has done, and what it holds.
    pub fn stats(&self) -> CacheStats {
        let shared = &self.shared;
        CacheStats {
            hits: shared.hits.load(Ordering::Relaxed),
            misses: shared.misses.load(Ordering::Relaxed),
            invalidations: shared.invalidations.load(Ordering::Relaxed),
            entries: shared.entries.len() as u64,
            bytes: shared.entries.weight(),
            capacity_bytes: shared.entries.capacity(),
        }
    }

    fn written(&self) -> MutexGuard<'_, Written> {
        // The log is consistent after every call (no call panics half-way).
        self.shared
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stamps the 15-minute `slots` as written now. Call after the write committed, or
    /// failed in a way that may have committed.
    pub(crate) fn record_written(&self, slots: impl IntoIterator<Item = i64>) {
        self.written().record(slots);
    }

    /// Makes everything kept stale: for writes whose slots are not known.
    pub(crate) fn record_written_everywhere(&self) {
        self.written().everything();
    }

    fn fresh(&self, entry: &Entry) -> bool {
        self.written().fresh(entry.epoch, entry.from, entry.to)
    }

    /// The rows kept under `key` for `[from, to)` if they are fresh, else those `load`
    /// reads (kept for the next call). Concurrent calls for a missing key wait for one
    /// load.
    pub(crate) async fn rows<T, E, F>(
        &self,
        key: String,
        range: (i64, i64),
        load: impl FnOnce() -> F,
    ) -> Result<Arc<Vec<T>>, E>
    where
        T: Send + Sync + 'static,
        F: Future<Output = Result<Vec<T>, E>>,
    {
        let weigh = |rows: &Vec<T>| (rows.len() as u64).saturating_mul(row_bytes::<T>());
        self.value(key, range, weigh, load).await
    }

    /// The value kept under `key` for the records of `[from, to)` if it is fresh, else
    /// the one `load` makes (kept for the next call, weighing `weigh` bytes).
    /// Concurrent calls for a missing key wait for one load.
    pub(crate) async fn value<V, E, F>(
        &self,
        key: String,
        (from, to): (i64, i64),
        weigh: impl FnOnce(&V) -> u64,
        load: impl FnOnce() -> F,
    ) -> Result<Arc<V>, E>
    where
        V: Send + Sync + 'static,
        F: Future<Output = Result<V, E>>,
    {
        let entries = &self.shared.entries;
        let mut waits = 0;
        let guard = loop {
            let found = match entries.get_value_or_guard_async(&key).await {
                Ok(entry) => entry,
                Err(guard) => break Some(guard),
            };
            if self.fresh(&found) {
                if let Ok(value) = Arc::clone(&found.value).downcast::<V>() {
                    self.shared.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(value);
                }
            }
            // Stale: dropped unless another call already put a newer read in its place.
            if entries
                .remove_if(&key, |kept| kept.epoch == found.epoch)
                .is_some()
            {
                self.shared.invalidations.fetch_add(1, Ordering::Relaxed);
            }
            waits += 1;
            if waits > MAX_WAITS {
                break None;
            }
        };
        self.shared.misses.fetch_add(1, Ordering::Relaxed);
        // Stamped before the read: a write committed after this point is stamped later,
        // and makes the entry stale.
        let epoch = self.written().epoch();
        let value = Arc::new(load().await?);
        if let Some(guard) = guard {
            let entry = Entry {
                epoch,
                from,
                to,
                bytes: weigh(&value),
                value: Arc::clone(&value) as Arc<dyn Any + Send + Sync>,
            };
            // Refused only when the entry is heavier than the whole cache.
            let _ = guard.insert(entry);
        }
        Ok(value)
    }
}

/// A rough size of a kept row: the type's own size and a share for the text it points
/// to (dimension values, user names).
fn row_bytes<T>() -> u64 {
    std::mem::size_of::<T>() as u64 + 32
}
