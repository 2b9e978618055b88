//! [`AnswerCache`]: what the analytics read, kept between questions, and never an answer
//! older than the records.
//!
//! | module | holds |
//! |---|---|
//! | `pieces` | where a read's range is cut: settled days, today's closed slots, the open tail |
//! | `written` | which slots were written since when, so a stale entry is never served |
//! | `shared` | that log kept in Redis for a fleet of replicas (feature `redis`) |

mod pieces;
#[cfg(feature = "redis")]
mod shared;
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
/// cache to every store of the process that writes into the database. With several
/// writing processes, make each one's cache with `AnswerCache::shared` (feature
/// `redis`) over one Redis server, so that each sees the others' writes; an in-process
/// cache ([`new`](Self::new)) does not see them.
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
    /// Local misses answered from an answer another replica kept in Redis.
    #[cfg(feature = "redis")]
    shared_hits: AtomicU64,
    /// The write log shared with other replicas, when there is one.
    #[cfg(feature = "redis")]
    log: Option<shared::SharedLog>,
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
    /// Reads missing from this process's memory that were answered from a whole answer
    /// another replica kept in Redis (they count among the misses too).
    pub shared_hits: u64,
    /// Calls to the Redis write log that failed (or were skipped in the pause after a
    /// failure); the reads among them were answered uncached.
    pub shared_failures: u64,
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
        Self::with_log(
            max_bytes,
            #[cfg(feature = "redis")]
            None,
        )
    }

    /// A cache of up to about `max_bytes` whose write log is shared through the Redis
    /// server at `url`, under keys starting with `prefix` (feature `redis`): every
    /// replica given a cache over the same server and prefix sees the others' writes,
    /// so the answers stay exact with several processes writing into one database.
    ///
    /// Each read asks Redis, in one call, what was written since its last call: a hit
    /// costs one round trip. When Redis fails or takes over 250 ms, reads are answered
    /// uncached (exact, slower) and Redis is left alone for a second; a write that
    /// could not be stamped there makes every replica's entries stale once Redis
    /// answers again. Whole answers (a dashboard, a breakdown) are also kept in Redis
    /// for an hour, as JSON under a hash of the question, so a replica that has not
    /// read a question yet takes another's answer when no write came into its range
    /// since; the pieces a read is cut into stay in each process's memory. Nothing is
    /// connected here; fails only for a URL that is not a Redis URL.
    ///
    /// ```
    /// use tower_usage::store::AnswerCache;
    ///
    /// let cache = AnswerCache::shared(64 << 20, "redis://127.0.0.1:6379/", "myapp:answers")?;
    /// assert!(AnswerCache::shared(64 << 20, "http://example.com", "x").is_err());
    /// # Ok::<(), tower_usage::store::BadRedisUrl>(())
    /// ```
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn shared(max_bytes: u64, url: &str, prefix: &str) -> Result<Self, super::BadRedisUrl> {
        Ok(Self::with_log(
            max_bytes,
            Some(shared::SharedLog::new(url, prefix)?),
        ))
    }

    fn with_log(max_bytes: u64, #[cfg(feature = "redis")] log: Option<shared::SharedLog>) -> Self {
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
                #[cfg(feature = "redis")]
                shared_hits: AtomicU64::new(0),
                #[cfg(feature = "redis")]
                log,
            }),
        }
    }

    /// Whether other processes share this cache's write log (`AnswerCache::shared`).
    pub(crate) fn is_shared(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.shared.log.is_some();
        #[cfg(not(feature = "redis"))]
        false
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
            #[cfg(feature = "redis")]
            shared_failures: shared
                .log
                .as_ref()
                .map_or(0, |log| log.failures.load(Ordering::Relaxed)),
            #[cfg(not(feature = "redis"))]
            shared_failures: 0,
            #[cfg(feature = "redis")]
            shared_hits: shared.shared_hits.load(Ordering::Relaxed),
            #[cfg(not(feature = "redis"))]
            shared_hits: 0,
        }
    }

    fn written(&self) -> MutexGuard<'_, Written> {
        // The log is consistent after every call (no call panics half-way).
        self.shared
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stamps the 15-minute `slots` as written now, in the shared log when there is
    /// one. Call after the write committed, or failed in a way that may have committed.
    pub(crate) async fn record_written(&self, slots: Vec<i64>) {
        #[cfg(feature = "redis")]
        if let Some(log) = &self.shared.log {
            let stamped = log.stamp(Some(&slots)).await;
            let mut written = self.written();
            match stamped {
                Some(epoch) => written.stamped(epoch, &slots),
                None => written.stale_until_sync(),
            }
            return;
        }
        self.written().record(slots);
    }

    /// Makes everything kept stale (in every replica, with a shared log): for writes
    /// whose slots are not known.
    pub(crate) async fn record_written_everywhere(&self) {
        #[cfg(feature = "redis")]
        if let Some(log) = &self.shared.log {
            let stamped = log.stamp(None).await;
            let mut written = self.written();
            match stamped {
                Some(epoch) => written.raised(epoch),
                None => written.stale_until_sync(),
            }
            return;
        }
        self.written().everything();
    }

    /// Brings the local log up to the shared one's writes; `false` when Redis could
    /// not say, and the read must not use the cache. Without a shared log, `true`.
    async fn sync(&self) -> bool {
        #[cfg(feature = "redis")]
        if let Some(log) = &self.shared.log {
            let since = self.written().since();
            let Some(synced) = log.sync(since).await else {
                return false;
            };
            self.written()
                .synced(synced.epoch, synced.floor, &synced.stamps);
        }
        true
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

    /// A whole answer: as [`value`](Self::value), weighed as its JSON; with a shared log,
    /// also kept in Redis, and taken from there when another replica read it and no
    /// write into its range came since.
    pub(crate) async fn answer<V, E, F>(
        &self,
        key: String,
        range: (i64, i64),
        load: impl FnOnce() -> F,
    ) -> Result<Arc<V>, E>
    where
        V: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
        F: Future<Output = Result<V, E>>,
    {
        let weigh = |answer: &V| serde_json::to_vec(answer).map_or(4096, |b| b.len() as u64);
        #[cfg(feature = "redis")]
        if let Some(log) = &self.shared.log {
            let shared_key = key.clone();
            let load = || async move {
                if let Some(answer) = self.shared_answer(log, &shared_key, range).await {
                    return Ok(answer);
                }
                // Taken before the read: every stamp up to it was committed before.
                let epoch = self.written().epoch();
                let answer = load().await?;
                let kept = (epoch, range.0, range.1, &answer);
                if let Ok(json) = serde_json::to_vec(&kept) {
                    log.keep_answer(&shared_key, json).await;
                }
                Ok(answer)
            };
            return self.value(key, range, weigh, load).await;
        }
        self.value(key, range, weigh, load).await
    }

    /// The answer another replica kept in Redis under `key`, if it covers `range` and no
    /// write into the range was stamped since it was read (the log was just synced).
    #[cfg(feature = "redis")]
    async fn shared_answer<V: serde::de::DeserializeOwned>(
        &self,
        log: &shared::SharedLog,
        key: &str,
        range: (i64, i64),
    ) -> Option<V> {
        let json = log.answer(key).await?;
        let (epoch, from, to, answer): (u64, i64, i64, V) = serde_json::from_slice(&json).ok()?;
        let fresh = (from, to) == range && self.written().fresh(epoch, from, to);
        if fresh {
            self.shared.shared_hits.fetch_add(1, Ordering::Relaxed);
        }
        fresh.then_some(answer)
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
        if !self.sync().await {
            // Other replicas' writes are unknown: read as if there were no cache.
            self.shared.misses.fetch_add(1, Ordering::Relaxed);
            return load().await.map(Arc::new);
        }
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
