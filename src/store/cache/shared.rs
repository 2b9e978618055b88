//! The write log shared through Redis (feature `redis`): every replica stamps the slots
//! its writes touched there, and reads what the others stamped before it answers, so a
//! cached answer is never older than any replica's records.
//!
//! Keys, under a prefix: `<prefix>:epoch` counts the writes; `<prefix>:slots` is a sorted
//! set of slot numbers scored by the last epoch that wrote into each; `<prefix>:floor`
//! is the epoch before which every entry is stale (raised when the set grows past its
//! bound, or when a replica lost track of a write); `<prefix>:answer:<sha-256 of the
//! question>` holds a whole answer as JSON, `[epoch, from, to, answer]`, for an hour, so
//! that one replica's reads serve the others.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use tokio::sync::OnceCell;

use crate::store::BadRedisUrl;

/// Stamps the slots in `ARGV[3..]` with a new epoch (or, with `ARGV[1] == 'all'`,
/// raises the floor to it) and returns the epoch. Past `ARGV[2]` stamped slots, the
/// floor is raised over them all and the set starts again.
const STAMP: &str = r"
local e = redis.call('INCR', KEYS[1])
if ARGV[1] == 'all' then
  redis.call('SET', KEYS[3], e)
  redis.call('DEL', KEYS[2])
  return e
end
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[2], e, ARGV[i])
end
if redis.call('ZCARD', KEYS[2]) > tonumber(ARGV[2]) then
  redis.call('SET', KEYS[3], e)
  redis.call('DEL', KEYS[2])
end
return e
";

/// What was stamped after epoch `ARGV[1]` (`'now'`: nothing, for a replica that holds
/// no entry yet): `{epoch, floor, {slot, epoch, ...}}`. With `ARGV[2] == 'lost'`, first
/// raises the floor: this replica wrote without being able to stamp.
const SYNC: &str = r"
if ARGV[2] == 'lost' then
  local e = redis.call('INCR', KEYS[1])
  redis.call('SET', KEYS[3], e)
  redis.call('DEL', KEYS[2])
end
local e = tonumber(redis.call('GET', KEYS[1])) or 0
local f = tonumber(redis.call('GET', KEYS[3])) or 0
local since = ARGV[1]
if since == 'now' then since = e end
return {e, f, redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. since, '+inf', 'WITHSCORES')}
";

/// How long a whole answer is kept in Redis: an answer over settled days stays good
/// until a late write, but a key that nobody asks again should not stay for ever.
const ANSWER_SECONDS: u64 = 3_600;

/// Answers larger than this are kept only in each process's memory.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Stamped slots kept in Redis before the floor is raised over them all.
const MAX_SLOTS: usize = 100_000;

/// How long one call may take before the cache is bypassed for it.
const CALL_TIMEOUT: Duration = Duration::from_millis(250);

/// After a failure, Redis is left alone this long (reads go uncached, at once).
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// What a sync found: the shared epoch and floor, and the slots stamped since.
pub(super) struct Synced {
    pub(super) epoch: u64,
    pub(super) floor: u64,
    pub(super) stamps: Vec<(i64, u64)>,
}

/// The Redis side of an [`AnswerCache`](super::AnswerCache).
pub(super) struct SharedLog {
    client: redis::Client,
    prefix: String,
    keys: [String; 3],
    conn: OnceCell<ConnectionManager>,
    stamp: Script,
    sync: Script,
    /// Unix microseconds before which Redis is not tried.
    paused_until: AtomicI64,
    /// A write of this process could not be stamped: the next sync raises the floor.
    lost: AtomicBool,
    /// Whether the current outage was logged.
    logged: AtomicBool,
    pub(super) failures: AtomicU64,
}

impl SharedLog {
    pub(super) fn new(url: &str, prefix: &str) -> Result<Self, BadRedisUrl> {
        Ok(SharedLog {
            client: crate::store::redis::client(url)?,
            prefix: prefix.to_owned(),
            keys: [
                format!("{prefix}:epoch"),
                format!("{prefix}:slots"),
                format!("{prefix}:floor"),
            ],
            conn: OnceCell::new(),
            stamp: Script::new(STAMP),
            sync: Script::new(SYNC),
            paused_until: AtomicI64::new(0),
            lost: AtomicBool::new(false),
            logged: AtomicBool::new(false),
            failures: AtomicU64::new(0),
        })
    }

    /// Stamps `slots` (all of them: `None`) after a write; the new epoch, or `None` when
    /// Redis failed (then the next sync makes every entry stale, everywhere).
    pub(super) async fn stamp(&self, slots: Option<&[i64]>) -> Option<u64> {
        let mut invocation = self.stamp.prepare_invoke();
        for key in &self.keys {
            invocation.key(key);
        }
        invocation.arg(if slots.is_some() { "slots" } else { "all" });
        invocation.arg(MAX_SLOTS);
        for slot in slots.unwrap_or_default() {
            invocation.arg(*slot);
        }
        // Not paused: a write's stamp is worth a try whatever reads found.
        let stamped =
            self.call(|mut conn| async move { invocation.invoke_async::<u64>(&mut conn).await });
        match stamped.await {
            Some(epoch) => Some(epoch),
            None => {
                self.lost.store(true, Relaxed);
                None
            }
        }
    }

    /// The whole answer kept under `key`, as JSON, if there is one; `None` also when
    /// Redis failed.
    pub(super) async fn answer(&self, key: &str) -> Option<Vec<u8>> {
        let key = self.answer_key(key);
        self.call(|mut conn| async move {
            redis::cmd("GET")
                .arg(key)
                .query_async::<Option<Vec<u8>>>(&mut conn)
                .await
        })
        .await
        .flatten()
    }

    /// Keeps a whole answer (JSON) under `key` for an hour, for the other replicas.
    pub(super) async fn keep_answer(&self, key: &str, json: Vec<u8>) {
        if json.len() > MAX_ANSWER_BYTES {
            return;
        }
        let key = self.answer_key(key);
        self.call(|mut conn| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(json)
                .arg("EX")
                .arg(ANSWER_SECONDS)
                .query_async::<()>(&mut conn)
                .await
        })
        .await;
    }

    fn answer_key(&self, key: &str) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(key.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:answer:{hex}", self.prefix)
    }

    /// What was stamped after `since` (`None`: nothing is held yet), or `None` when
    /// Redis failed or is paused after a failure.
    pub(super) async fn sync(&self, since: Option<u64>) -> Option<Synced> {
        let now = chrono::Utc::now().timestamp_micros();
        if now < self.paused_until.load(Relaxed) {
            self.failures.fetch_add(1, Relaxed);
            return None;
        }
        let lost = self.lost.swap(false, Relaxed);
        let mut invocation = self.sync.prepare_invoke();
        for key in &self.keys {
            invocation.key(key);
        }
        match since {
            Some(epoch) => invocation.arg(epoch),
            None => invocation.arg("now"),
        };
        invocation.arg(if lost { "lost" } else { "kept" });
        let synced = self.call(|mut conn| async move {
            invocation
                .invoke_async::<(u64, u64, Vec<i64>)>(&mut conn)
                .await
        });
        let Some((epoch, floor, flat)) = synced.await else {
            if lost {
                self.lost.store(true, Relaxed);
            }
            return None;
        };
        let stamps = flat
            .chunks_exact(2)
            .map(|pair| (pair[0], u64::try_from(pair[1]).unwrap_or(0)))
            .collect();
        Some(Synced {
            epoch,
            floor,
            stamps,
        })
    }

    /// Runs `call` on the connection within the time limit; on failure, counts it,
    /// pauses Redis and logs the outage once.
    async fn call<T, F>(&self, call: impl FnOnce(ConnectionManager) -> F) -> Option<T>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async {
            let conn = self
                .conn
                .get_or_try_init(|| crate::store::redis::connect(&self.client, CALL_TIMEOUT))
                .await?;
            call(conn.clone()).await
        };
        let error = match tokio::time::timeout(CALL_TIMEOUT, attempt).await {
            Ok(Ok(value)) => {
                if self.logged.swap(false, Relaxed) {
                    tracing::info!("answer cache: Redis answers again");
                }
                return Some(value);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {CALL_TIMEOUT:?}"),
        };
        self.failures.fetch_add(1, Relaxed);
        let now = chrono::Utc::now().timestamp_micros();
        let pause = i64::try_from(PAUSE_AFTER_FAILURE.as_micros()).unwrap_or(i64::MAX);
        self.paused_until.store(now.saturating_add(pause), Relaxed);
        if !self.logged.swap(true, Relaxed) {
            tracing::warn!(
                %error,
                "answer cache: Redis failed; analytics are read uncached until it answers"
            );
        }
        None
    }
}
