//! Budget spend shared through Redis (feature `redis`), so that several replicas hold
//! one budget: every check and reservation is one Lua script, atomic across all the
//! budgets of a request.
//!
//! Keys, under a prefix: `<prefix>:spent:<budget>:<part>` holds what settled in one part
//! of a budget's window (the period's start, or a UTC hour of a rolling window), and
//! expires an hour after the window does; `<prefix>:res:<budget>` is a sorted set of
//! reservations, `<id>:<amount>` scored by when it expires, so that a process killed
//! between reserving and settling holds nothing for longer than the reservation's time
//! to live.

use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use redis::Script;

/// Checks every budget and, only if all have room, reserves in each. Returns
/// `{0, 0, 0}`, or `{i, spent, reserved}` for the first budget `i` (from 1) without.
const ADMIT: &str = r"
local now = tonumber(ARGV[1])
local expires = tonumber(ARGV[2])
local id = ARGV[3]
local n = tonumber(ARGV[4])
local k, a = 1, 5
local held = {}
for i = 1, n do
  local res = KEYS[k]
  k = k + 1
  local limit, amount, parts = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  redis.call('ZREMRANGEBYSCORE', res, '-inf', now)
  local reserved = 0
  for _, m in ipairs(redis.call('ZRANGE', res, 0, -1)) do
    reserved = reserved + tonumber(string.match(m, ':(%d+)$'))
  end
  local spent = 0
  for _ = 1, parts do
    spent = spent + (tonumber(redis.call('GET', KEYS[k])) or 0)
    k = k + 1
  end
  if spent + reserved >= limit or spent + reserved + amount > limit then
    return {i, spent, reserved}
  end
  held[i] = {res, amount}
end
for i = 1, n do
  redis.call('ZADD', held[i][1], expires, id .. ':' .. held[i][2])
  redis.call('PEXPIRE', held[i][1], expires - now + 60000)
end
return {0, 0, 0}
";

/// Gives reservations back (`ARGV[2..]`: the members, one per reservation key) and
/// adds amounts to parts (the keys after them; `amount, expire-at` pairs in `ARGV`).
const SETTLE: &str = r"
local n = tonumber(ARGV[1])
for i = 1, n do
  redis.call('ZREM', KEYS[i], ARGV[1 + i])
end
local a = 2 + n
for i = n + 1, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[a])
  redis.call('PEXPIREAT', KEYS[i], ARGV[a + 1])
  a = a + 2
end
return 1
";

/// Raises each part to the store's figure where that is larger.
const RAISE: &str = r"
for i = 1, #KEYS do
  local v = tonumber(ARGV[2 * i - 1])
  if v > (tonumber(redis.call('GET', KEYS[i])) or 0) then
    redis.call('SET', KEYS[i], ARGV[2 * i - 1])
  end
  redis.call('PEXPIREAT', KEYS[i], ARGV[2 * i])
end
return 1
";

/// One budget's part of a check: its name, limit, what the request reserves, and the
/// starts of its window's parts (microseconds).
pub(crate) struct Check<'a> {
    pub(crate) name: &'a str,
    pub(crate) limit: u64,
    pub(crate) amount: u64,
    pub(crate) parts: Vec<i64>,
}

/// A budget with no room, as Redis sees it: its index among the checks, spent and
/// reserved.
pub(crate) struct Full {
    pub(crate) index: usize,
    pub(crate) spent: u64,
    pub(crate) reserved: u64,
}

/// The Redis side of [`Budgets`](super::Budgets).
#[derive(Clone)]
pub(crate) struct Shared {
    conn: ConnectionManager,
    prefix: String,
    ttl: Duration,
    /// The scripts, with their hashes made once.
    admit: Script,
    settle: Script,
    raise: Script,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Connects to `url` (reconnecting by itself later).
    pub(crate) async fn connect(
        url: &str,
        prefix: &str,
        ttl: Duration,
    ) -> redis::RedisResult<Shared> {
        let client = redis::Client::open(url)?;
        let conn = crate::store::redis::connect(&client, Duration::from_secs(1)).await?;
        Ok(Shared {
            conn,
            prefix: prefix.to_owned(),
            ttl,
            admit: Script::new(ADMIT),
            settle: Script::new(SETTLE),
            raise: Script::new(RAISE),
        })
    }

    fn spent_key(&self, name: &str, part: i64) -> String {
        format!("{}:spent:{name}:{part}", self.prefix)
    }

    fn res_key(&self, name: &str) -> String {
        format!("{}:res:{name}", self.prefix)
    }

    /// Reserves `checks` under `id` if every one has room.
    pub(crate) async fn admit(
        &self,
        id: &str,
        checks: &[Check<'_>],
        now: DateTime<Utc>,
    ) -> redis::RedisResult<Result<(), Full>> {
        let mut call = self.admit.prepare_invoke();
        let now_ms = now.timestamp_millis();
        let expires = now_ms + i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX / 2);
        call.arg(now_ms).arg(expires).arg(id).arg(checks.len());
        for c in checks {
            call.key(self.res_key(c.name));
            for part in &c.parts {
                call.key(self.spent_key(c.name, *part));
            }
            call.arg(c.limit).arg(c.amount).arg(c.parts.len());
        }
        let (index, spent, reserved): (usize, u64, u64) =
            call.invoke_async(&mut self.conn.clone()).await?;
        Ok(match index {
            0 => Ok(()),
            i => Err(Full {
                index: i - 1,
                spent,
                reserved,
            }),
        })
    }

    /// Gives back the reservations of `id` (`(budget, amount)`) and adds `spent`
    /// (`(budget, part, amount, expire-at)`).
    pub(crate) async fn settle(
        &self,
        id: &str,
        reserved: &[(String, u64)],
        spent: &[(String, i64, u64, DateTime<Utc>)],
    ) -> redis::RedisResult<()> {
        let mut call = self.settle.prepare_invoke();
        call.arg(reserved.len());
        for (name, amount) in reserved {
            call.key(self.res_key(name)).arg(format!("{id}:{amount}"));
        }
        for (name, part, amount, expires) in spent {
            self.push_part(&mut call, name, *part, *amount, *expires);
        }
        call.invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
    }

    /// A part's key, its amount and when it expires, as the settling and raising
    /// scripts take them.
    fn push_part(
        &self,
        call: &mut redis::ScriptInvocation<'_>,
        name: &str,
        part: i64,
        amount: u64,
        expires: DateTime<Utc>,
    ) {
        call.key(self.spent_key(name, part))
            .arg(amount)
            .arg(expires.timestamp_millis());
    }

    /// Raises `name`'s parts to the store's figures (`(part, amount)`), each kept until
    /// `expires`.
    pub(crate) async fn raise(
        &self,
        name: &str,
        parts: &[(i64, u64)],
        expires: DateTime<Utc>,
    ) -> redis::RedisResult<()> {
        if parts.is_empty() {
            return Ok(());
        }
        let mut call = self.raise.prepare_invoke();
        for (part, amount) in parts {
            self.push_part(&mut call, name, *part, *amount, expires);
        }
        call.invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
    }
}
