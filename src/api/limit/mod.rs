//! Rate limits per role and subject, with the governor crate's GCRA in this process, or
//! in Redis for a fleet (feature `redis`).

#[cfg(feature = "redis")]
mod shared;

#[cfg(feature = "redis")]
pub use crate::store::BadRedisUrl;
#[cfg(feature = "redis")]
pub use shared::SharedRateLimits;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::auth::{Principal, Role};

/// How often one subject of a role may call the API: a sustained rate and a burst.
///
/// A call costs one unit; an export costs [`ApiConfig::export_cost`](super::ApiConfig::export_cost).
///
/// ```
/// use tower_usage::api::RateLimit;
///
/// let limit = RateLimit::per_minute(60).burst(10);
/// assert_eq!(limit.burst_size(), 10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub(super) per_minute: NonZeroU32,
    pub(super) burst: NonZeroU32,
}

impl RateLimit {
    /// `n` units a minute (at least one), with a burst of `n`.
    pub fn per_minute(n: u32) -> Self {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        RateLimit {
            per_minute: n,
            burst: n,
        }
    }

    /// How many units may be spent at once (at least one).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        self
    }

    /// The burst size.
    pub fn burst_size(&self) -> u32 {
        self.burst.get()
    }

    fn quota(self) -> Quota {
        Quota::per_minute(self.per_minute).allow_burst(self.burst)
    }
}

/// Calls between sweeps of subjects whose buckets are full again.
const SWEEP_EVERY: u32 = 4_096;

/// A role's limiter, keyed by subject, and the limit it holds.
type Keyed = (DefaultKeyedRateLimiter<String>, RateLimit);

/// One keyed limiter per role, keyed by subject, and one for unauthenticated requests,
/// keyed by client address: governor's quota is per limiter.
pub(crate) struct Limiter {
    admin: Option<Keyed>,
    user: Option<Keyed>,
    unauthenticated: Option<Keyed>,
    calls: AtomicU32,
    /// The limits kept in Redis; the keyed limiters above decide when it fails.
    #[cfg(feature = "redis")]
    shared: Option<SharedRateLimits>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").finish_non_exhaustive()
    }
}

impl Limiter {
    pub(crate) fn new(
        admin: Option<RateLimit>,
        user: Option<RateLimit>,
        unauthenticated: Option<RateLimit>,
    ) -> Self {
        let keyed = |limit: RateLimit| (RateLimiter::keyed(limit.quota()), limit);
        Limiter {
            admin: admin.map(keyed),
            user: user.map(keyed),
            unauthenticated: unauthenticated.map(keyed),
            calls: AtomicU32::new(0),
            #[cfg(feature = "redis")]
            shared: None,
        }
    }

    /// Keeps the limits in Redis, with this process's limiters for when it fails.
    #[cfg(feature = "redis")]
    pub(crate) fn shared(mut self, shared: Option<SharedRateLimits>) -> Self {
        self.shared = shared;
        self
    }

    /// Spends `cost` units of `who`'s allowance, or says how long to wait. A cost above
    /// the burst spends the whole burst, so an export stays possible under a small one.
    pub(crate) async fn check(&self, who: &Principal, cost: u32) -> Result<(), Duration> {
        let keyed = match who.role {
            Role::Admin => &self.admin,
            Role::User => &self.user,
        };
        self.spend(keyed.as_ref(), who.role.as_str(), &who.subject, cost)
            .await
    }

    /// Spends one unit of the allowance of unauthenticated requests from `address`.
    pub(crate) async fn check_unauthenticated(&self, address: &String) -> Result<(), Duration> {
        self.spend(self.unauthenticated.as_ref(), "anonymous", address, 1)
            .await
    }

    /// Spends in Redis when the limits are shared and it answers, else in this process.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    async fn spend(
        &self,
        keyed: Option<&Keyed>,
        kind: &str,
        key: &String,
        cost: u32,
    ) -> Result<(), Duration> {
        let Some((_, limit)) = keyed else {
            return Ok(());
        };
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            if let Some(verdict) = shared.spend(kind, key, *limit, cost).await {
                return verdict;
            }
        }
        self.spend_here(keyed, key, cost)
    }

    #[allow(clippy::ptr_arg)] // governor's keyed limiter looks keys up as `&String`.
    fn spend_here(&self, keyed: Option<&Keyed>, key: &String, cost: u32) -> Result<(), Duration> {
        let Some((limiter, RateLimit { burst, .. })) = keyed else {
            return Ok(());
        };
        if self.calls.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        let cost = NonZeroU32::new(cost.min(burst.get())).unwrap_or(NonZeroU32::MIN);
        match limiter.check_key_n(key, cost) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(limiter.clock().now())),
            // Cannot happen: the cost is capped at the burst.
            Err(_) => Err(Duration::from_secs(60)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_subject_is_limited_alone_and_told_how_long_to_wait() {
        let limiter = Limiter::new(None, Some(RateLimit::per_minute(60).burst(2)), None);
        let alice = Principal::new("alice", Role::User);
        let bob = Principal::new("bob", Role::User);
        assert!(limiter.check(&alice, 1).await.is_ok());
        assert!(limiter.check(&alice, 1).await.is_ok());
        let wait = limiter.check(&alice, 1).await.unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(
            limiter.check(&bob, 5).await.is_ok(),
            "bob has his own allowance"
        );
        assert!(limiter.check(&bob, 1).await.is_err());
        let admin = Principal::new("ops", Role::Admin);
        for _ in 0..100 {
            assert!(
                limiter.check(&admin, 10).await.is_ok(),
                "admins are not limited here"
            );
        }
    }
}
