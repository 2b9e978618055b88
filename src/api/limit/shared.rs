//! [`SharedRateLimits`]: the API's rate limits kept in Redis (feature `redis`), so that a
//! subject's limit holds across replicas.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use tokio::sync::OnceCell;

use super::RateLimit;
use crate::store::BadRedisUrl;

/// GCRA, one round trip: `KEYS[1]` holds the subject's theoretical arrival time in
/// microseconds of Redis's own clock (one clock for every replica). `ARGV`: the emission
/// interval (µs per unit), the burst, the cost. Returns 0 when admitted, otherwise the
/// microseconds to wait; a refused call spends nothing.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + cost * interval
local wait = new_tat - burst * interval - now
if wait > 0 then return wait end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
";

/// How long one call to Redis may take before the per-process limiter decides.
const CALL_TIMEOUT: Duration = Duration::from_millis(250);

/// How long the per-process limiter decides alone after Redis failed, before Redis is
/// tried again: an outage costs one slow call a second, not one per request.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Rate limits kept in a Redis server, shared by every replica of the API that uses the
/// same server and key prefix; give it to [`ApiConfig::shared_rate_limits`](crate::api::ApiConfig::shared_rate_limits).
/// Cheap to clone: clones share the connection and the counters.
///
/// Each call is one Lua script (GCRA, on Redis's clock), so a subject's allowance is
/// spent atomically wherever its requests land. When Redis cannot be reached or does not
/// answer within 250 ms, the per-process limiter decides instead (with the same limits,
/// so each replica then allows a subject its own full rate), for a second before Redis
/// is tried again; each such call is counted in [`fallbacks`](Self::fallbacks), and the
/// outage is logged once, when it begins.
///
/// ```
/// use tower_usage::api::{ApiConfig, Jwt, SharedRateLimits};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limits = SharedRateLimits::new("redis://127.0.0.1:6379/", "myapp:api-limits")?;
/// let config = ApiConfig::new(Jwt::hs256("a secret of at least thirty-two bytes!")?)
///     .shared_rate_limits(limits.clone());
/// assert_eq!(limits.fallbacks(), 0);
/// assert!(SharedRateLimits::new("http://not-redis", "x").is_err());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SharedRateLimits {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    prefix: String,
    conn: OnceCell<ConnectionManager>,
    gcra: Script,
    /// Unix microseconds before which Redis is not tried.
    paused_until: AtomicI64,
    fallbacks: AtomicU64,
    /// Whether the current outage was logged.
    logged: AtomicBool,
}

impl std::fmt::Debug for SharedRateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRateLimits")
            .field("prefix", &self.inner.prefix)
            .field("fallbacks", &self.fallbacks())
            .finish_non_exhaustive()
    }
}

impl SharedRateLimits {
    /// Limits kept in the Redis server at `url`, under keys starting with `prefix`
    /// (`<prefix>:<role>:<subject>`). Nothing is connected yet: the first call connects,
    /// and a server that is down then is a fallback, not an error. Fails only for a URL
    /// that is not a Redis URL.
    pub fn new(url: &str, prefix: impl Into<String>) -> Result<Self, BadRedisUrl> {
        let client = crate::store::redis::client(url)?;
        Ok(SharedRateLimits {
            inner: Arc::new(Inner {
                client,
                prefix: prefix.into(),
                conn: OnceCell::new(),
                gcra: Script::new(GCRA),
                paused_until: AtomicI64::new(0),
                fallbacks: AtomicU64::new(0),
                logged: AtomicBool::new(false),
            }),
        })
    }

    /// Calls the per-process limiter decided because Redis failed or was paused after a
    /// failure.
    pub fn fallbacks(&self) -> u64 {
        self.inner.fallbacks.load(Relaxed)
    }

    /// Spends `cost` units (at most the burst) of `key`'s allowance under `limit`:
    /// `Some(Ok(()))` when admitted, `Some(Err(wait))` when not, `None` when Redis
    /// could not say (counted; the caller decides locally).
    pub(super) async fn spend(
        &self,
        kind: &str,
        key: &str,
        limit: RateLimit,
        cost: u32,
    ) -> Option<Result<(), Duration>> {
        let inner = &*self.inner;
        let now = chrono::Utc::now().timestamp_micros();
        if now < inner.paused_until.load(Relaxed) {
            inner.fallbacks.fetch_add(1, Relaxed);
            return None;
        }
        let cost = cost.clamp(1, limit.burst.get());
        let interval = 60_000_000 / u64::from(limit.per_minute.get());
        let call = async {
            let conn = inner.conn.get_or_try_init(|| self.connect()).await?;
            let mut conn = conn.clone();
            inner
                .gcra
                .key(format!("{}:{kind}:{key}", inner.prefix))
                .arg(interval)
                .arg(limit.burst.get())
                .arg(cost)
                .invoke_async::<i64>(&mut conn)
                .await
        };
        let answer = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(wait)) => Ok(wait),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
        };
        match answer {
            Ok(wait) => {
                if inner.logged.swap(false, Relaxed) {
                    tracing::info!("api rate limits: Redis answers again; limits are shared");
                }
                Some(match u64::try_from(wait) {
                    Ok(wait) if wait > 0 => Err(Duration::from_micros(wait)),
                    _ => Ok(()),
                })
            }
            Err(error) => {
                let pause = i64::try_from(PAUSE_AFTER_FAILURE.as_micros()).unwrap_or(i64::MAX);
                inner.paused_until.store(now.saturating_add(pause), Relaxed);
                inner.fallbacks.fetch_add(1, Relaxed);
                if !inner.logged.swap(true, Relaxed) {
                    tracing::warn!(
                        %error,
                        "api rate limits: Redis failed; each process limits on its own until it answers"
                    );
                }
                None
            }
        }
    }

    async fn connect(&self) -> redis::RedisResult<ConnectionManager> {
        crate::store::redis::connect(&self.inner.client, CALL_TIMEOUT).await
    }
}
