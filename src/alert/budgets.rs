//! [`Budgets`]: the budgets of a store as one process enforces them, kept in step with
//! the store by a background task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::Utc;

use super::budget::{Budget, Measure, ScopeValues};
use super::error::Error;
use super::events;
use super::ledger::{BudgetWarning, Estimate, FailMode, Ledger, Refusal, Reservation, Tracked};
use crate::store::{DieselStore, StoreError};
use crate::UsageRecord;

/// How long requests skip Redis after it failed.
#[cfg(feature = "redis")]
const REDIS_PAUSE_MS: i64 = 5_000;

/// How far back the mean use of a request is read, for requests without an estimate.
const MEAN_HOURS: i64 = 24;

/// The budgets of a store, their spend as this process knows it, and the task that
/// reconciles it with the store; cheap to clone (clones share everything).
///
/// This process counts the records of the requests a [`BudgetLayer`](super::BudgetLayer)
/// lets through as they finish. Every `reconcile_every` (10 seconds by default) the task
/// reads the budgets again (changes made by other processes take effect) and the spend
/// of each from the store, which holds other processes' records and those of routes
/// without the layer; where the store's figure is larger it wins, so nothing is counted
/// twice. Between two reconciliations, other processes' spend is not seen: replicas that
/// must share one budget exactly need a shared counter (not there yet).
///
/// ```
/// use tower_usage::alert::{Budget, Budgets, Measure, Period, Scope};
/// use tower_usage::store::DieselStore;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = DieselStore::connect("sqlite::memory:").await?;
/// let budgets = Budgets::open(store).await?;
/// budgets
///     .put(Budget::new("alice-daily", Scope::user("alice"), Measure::Requests, 100, Period::Day))
///     .await?;
/// let spend = budgets.spend();
/// assert_eq!((spend[0].spent, spend[0].limit), (0, 100));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Budgets {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: DieselStore,
    ledger: Ledger,
    fail: FailMode,
    counters: Counters,
    #[cfg(feature = "redis")]
    redis: Option<super::shared::Shared>,
    /// After Redis fails, requests skip it until then (Unix milliseconds), rather than
    /// each waiting for it to fail again.
    #[cfg(feature = "redis")]
    redis_down_until: std::sync::atomic::AtomicI64,
}

#[derive(Debug, Default)]
struct Counters {
    admitted: AtomicU64,
    refused: AtomicU64,
    unmetered: AtomicU64,
    reconciled: AtomicU64,
    reconcile_failures: AtomicU64,
    shared_failures: AtomicU64,
}

/// What [`Budgets`] has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetStats {
    /// Requests let through by a budget layer.
    pub admitted: u64,
    /// Requests refused.
    pub refused: u64,
    /// Requests that reached a budget layer without a [`UsageLayer`](crate::UsageLayer)
    /// outside it, and so were let through unchecked.
    pub unmetered: u64,
    /// Reconciliations with the store that succeeded.
    pub reconciled: u64,
    /// Reconciliations that failed (the store could not be read); the spend is then
    /// this process's own count.
    pub reconcile_failures: u64,
    /// Calls to Redis that failed (feature `redis`): the request was then checked
    /// against this process's own count (or refused, failing closed).
    pub shared_failures: u64,
}

/// One budget's spend as this process knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Spend {
    /// The budget's name.
    pub name: String,
    /// What it counts.
    pub measure: Measure,
    /// Its limit.
    pub limit: u64,
    /// Settled in the current window.
    pub spent: u64,
    /// Held by requests let through and not yet settled.
    pub reserved: u64,
    /// Whether the store's figure has been read since the budget was loaded.
    pub known: bool,
}

/// Builds [`Budgets`]; see [`Budgets::builder`].
#[derive(Debug)]
#[must_use]
pub struct BudgetsBuilder {
    store: DieselStore,
    reconcile_every: Option<Duration>,
    fail: FailMode,
    #[cfg(feature = "redis")]
    redis: Option<(String, String, Duration)>,
}

impl BudgetsBuilder {
    /// How often the budgets and their spend are read from the store (default 10
    /// seconds); `None` never (call [`Budgets::reconcile`] yourself).
    pub fn reconcile_every(mut self, every: Option<Duration>) -> Self {
        self.reconcile_every = every.map(|e| e.max(Duration::from_millis(100)));
        self
    }

    /// Refuse requests in the scope of a budget whose spend has not been read from the
    /// store yet (the store was down when the budget was loaded), with 503. By default
    /// they are let through and counted by this process alone.
    pub fn fail_closed(mut self) -> Self {
        self.fail = FailMode::Closed;
        self
    }

    /// Shares the spend through the Redis server at `url` (feature `redis`), so that
    /// several replicas hold one budget: every check and reservation is one atomic
    /// script, and a reservation not settled within 5 minutes (a process killed in
    /// between) expires. Keys start with `tower-usage:`. When Redis fails, a request is
    /// checked against this process's own count (or refused with 503 when failing
    /// closed), and the failure is counted.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis = Some((
            url.into(),
            "tower-usage".to_owned(),
            Duration::from_secs(300),
        ));
        self
    }

    /// The Redis keys' prefix and how long a reservation lives unsettled (see
    /// [`redis`](Self::redis)).
    #[cfg(feature = "redis")]
    pub fn redis_keys(mut self, prefix: impl Into<String>, reservation_ttl: Duration) -> Self {
        if let Some((_, p, ttl)) = self.redis.as_mut() {
            *p = prefix.into();
            *ttl = reservation_ttl.max(Duration::from_secs(1));
        }
        self
    }

    /// Reads the budgets and their spend and starts the reconciliation task (on the
    /// current tokio runtime). Fails if the budgets cannot be read (or Redis, when
    /// configured, cannot be reached); a spend that cannot be read is left unknown (see
    /// [`fail_closed`](Self::fail_closed)).
    pub async fn open(self) -> Result<Budgets, Error> {
        #[cfg(feature = "redis")]
        let redis = match &self.redis {
            None => None,
            Some((url, prefix, ttl)) => Some(
                super::shared::Shared::connect(url, prefix, *ttl)
                    .await
                    .map_err(|e| Error::Shared(format!("{url}: {e}")))?,
            ),
        };
        let (warnings, passed) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(report_warnings(self.store.clone(), passed));
        let budgets = Budgets {
            shared: Arc::new(Shared {
                store: self.store,
                ledger: Ledger::new(warnings),
                fail: self.fail,
                counters: Counters::default(),
                #[cfg(feature = "redis")]
                redis,
                #[cfg(feature = "redis")]
                redis_down_until: std::sync::atomic::AtomicI64::new(0),
            }),
        };
        let loaded = budgets.shared.store.budgets().await?;
        let fresh = budgets.shared.ledger.replace(loaded, Utc::now());
        if let Err(e) = budgets.read_spend(&fresh).await {
            tracing::warn!("budgets: the spend could not be read: {e}");
        }
        if let Some(every) = self.reconcile_every {
            tokio::spawn(reconcile_forever(Arc::downgrade(&budgets.shared), every));
        }
        Ok(budgets)
    }
}

/// Writes each warning threshold a budget passes as an event (sent to the webhooks),
/// until every [`Budgets`] clone is gone. Several processes may find the same one: the
/// event's key lets it be written once.
async fn report_warnings(
    store: DieselStore,
    mut passed: tokio::sync::mpsc::UnboundedReceiver<BudgetWarning>,
) {
    while let Some(warning) = passed.recv().await {
        tracing::warn!(
            budget = %warning.budget,
            spent = warning.spent,
            limit = warning.limit,
            "budget passed {}% of its limit",
            warning.percent
        );
        if let Err(e) = events::claim_warning(&store, &warning, Utc::now()).await {
            tracing::warn!("budgets: a warning could not be written: {e}");
        }
    }
}

/// Reconciles until every [`Budgets`] clone is gone.
async fn reconcile_forever(shared: Weak<Shared>, every: Duration) {
    let mut failing = false;
    loop {
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let result = Budgets { shared }.reconcile().await;
        match result {
            Err(e) if !failing => {
                tracing::warn!("budgets: reconciliation failed (retrying quietly): {e}");
                failing = true;
            }
            Err(_) => {}
            Ok(()) => failing = false,
        }
    }
}

impl Budgets {
    /// Builds budgets over `store` with a non-default configuration.
    pub fn builder(store: DieselStore) -> BudgetsBuilder {
        BudgetsBuilder {
            store,
            reconcile_every: Some(Duration::from_secs(10)),
            fail: FailMode::Open,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

    /// [`builder`](Self::builder) with the defaults, opened.
    pub async fn open(store: DieselStore) -> Result<Budgets, Error> {
        Budgets::builder(store).open().await
    }

    /// The store the budgets are kept in.
    pub fn store(&self) -> &DieselStore {
        &self.shared.store
    }

    /// Creates or replaces a budget, in the store and at once in this process (with
    /// its spend read from the store).
    pub async fn put(&self, budget: Budget) -> Result<Budget, Error> {
        let budget = self.shared.store.put_budget(budget).await?;
        let tracked = self.shared.ledger.put(budget.clone(), Utc::now());
        if let Err(e) = self.read_spend(&[tracked]).await {
            tracing::warn!(
                "budgets: the spend of {} could not be read: {e}",
                budget.name
            );
        }
        Ok(budget)
    }

    /// Deletes a budget, in the store and in this process; returns whether there was
    /// one.
    pub async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let deleted = self.shared.store.delete_budget(name).await?;
        self.shared.ledger.remove(name);
        Ok(deleted)
    }

    /// Reads the budgets and their spend from the store now (what the background task
    /// does every `reconcile_every`).
    pub async fn reconcile(&self) -> Result<(), StoreError> {
        let result = self.reconcile_once().await;
        let counter = match result {
            Ok(()) => &self.shared.counters.reconciled,
            Err(_) => &self.shared.counters.reconcile_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn reconcile_once(&self) -> Result<(), StoreError> {
        let loaded = self.shared.store.budgets().await?;
        self.shared.ledger.replace(loaded, Utc::now());
        self.read_spend(&self.shared.ledger.all()).await
    }

    /// Reads the store's spend of `tracked` into them.
    async fn read_spend(&self, tracked: &[Arc<Tracked>]) -> Result<(), StoreError> {
        let store = &self.shared.store;
        for t in tracked {
            let now = Utc::now();
            let window = t.window(now);
            let parts = store.budget_parts(&t.budget, window).await?;
            let mean = match t.needs_mean() {
                true => store.budget_mean(&t.budget, now, MEAN_HOURS).await?,
                false => None,
            };
            t.reconcile(window, &parts, mean);
            self.shared.ledger.forward(t);
            #[cfg(feature = "redis")]
            if let Some(redis) = &self.shared.redis {
                let parts: Vec<(i64, u64)> = parts
                    .iter()
                    .map(|(at, n)| (at.timestamp_micros(), *n))
                    .collect();
                let expires = window.until + chrono::Duration::hours(1);
                if redis.raise(&t.budget.name, &parts, expires).await.is_err() {
                    self.count_shared_failure();
                }
            }
        }
        Ok(())
    }

    /// Every budget's spend as this process knows it, by name.
    pub fn spend(&self) -> Vec<Spend> {
        let now = Utc::now();
        self.shared
            .ledger
            .all()
            .iter()
            .map(|t| {
                let (spent, reserved, known) = t.figures(now);
                Spend {
                    name: t.budget.name.clone(),
                    measure: t.budget.measure,
                    limit: t.budget.limit,
                    spent,
                    reserved,
                    known,
                }
            })
            .collect()
    }

    /// What has been done so far.
    pub fn stats(&self) -> BudgetStats {
        let c = &self.shared.counters;
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        BudgetStats {
            admitted: get(&c.admitted),
            refused: get(&c.refused),
            unmetered: get(&c.unmetered),
            reconciled: get(&c.reconciled),
            reconcile_failures: get(&c.reconcile_failures),
            shared_failures: get(&c.shared_failures),
        }
    }

    /// Counts a record that did not pass through a budget layer (one written by hand,
    /// say) in the budgets that cover it, until the next reconciliation reads it from
    /// the store.
    pub fn settle(&self, record: &UsageRecord) {
        self.shared
            .ledger
            .settle(record, Reservation::default(), Utc::now());
    }

    pub(crate) fn admit(
        &self,
        values: &ScopeValues<'_>,
        estimate: &Estimate,
    ) -> Result<Reservation, Refusal> {
        let admitted = self
            .shared
            .ledger
            .admit(values, estimate, Utc::now(), self.shared.fail);
        let counter = match admitted {
            Ok(_) => &self.shared.counters.admitted,
            Err(_) => &self.shared.counters.refused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        admitted
    }

    pub(crate) fn settle_reserved(&self, record: &UsageRecord, reservation: Reservation) {
        self.shared.ledger.settle(record, reservation, Utc::now());
    }

    /// Whether there is no budget: then a request has nothing to reserve or settle.
    pub(crate) fn is_empty(&self) -> bool {
        self.shared.ledger.is_empty()
    }

    /// Whether the spend is shared through Redis.
    #[cfg(feature = "redis")]
    pub(crate) fn is_shared(&self) -> bool {
        self.shared.redis.is_some()
    }

    /// Confirms `reservation` (made in this process's ledger) in Redis: the same
    /// budgets and amounts, reserved there too if every one has room. Returns the
    /// reservation and its id in Redis (none when Redis failed and the budgets fail
    /// open).
    #[cfg(feature = "redis")]
    pub(crate) async fn confirm(
        &self,
        reservation: Reservation,
    ) -> Result<(Reservation, Option<String>), Refusal> {
        let Some(redis) = &self.shared.redis else {
            return Ok((reservation, None));
        };
        let now = Utc::now();
        let checks: Vec<super::shared::Check<'_>> = reservation
            .held()
            .map(|(t, amount)| super::shared::Check {
                name: &t.budget.name,
                limit: t.budget.limit,
                amount,
                parts: t.part_starts(now),
            })
            .collect();
        let id = crate::id::new_v7(now).to_string();
        let down_until = self.shared.redis_down_until.load(Ordering::Relaxed);
        let answer = if now.timestamp_millis() < down_until {
            Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "Redis failed a moment ago",
            )))
        } else {
            redis.admit(&id, &checks, now).await
        };
        match answer {
            Ok(Ok(())) => Ok((reservation, Some(id))),
            Ok(Err(full)) => {
                let tracked = reservation.held().nth(full.index).map(|(t, _)| t);
                let refusal = match tracked {
                    Some(t) => Refusal::Spent {
                        name: t.budget.name.clone(),
                        measure: t.budget.measure,
                        limit: t.budget.limit,
                        spent: full.spent,
                        reserved: full.reserved,
                        retry_at: t.window(now).until,
                    },
                    None => Refusal::Unknown {
                        name: String::new(),
                    },
                };
                self.shared
                    .counters
                    .admitted
                    .fetch_sub(1, Ordering::Relaxed);
                self.shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                Err(refusal)
            }
            Err(e) => {
                self.count_shared_failure();
                if now.timestamp_millis() >= down_until {
                    tracing::warn!("budgets: Redis failed; checking locally for 5 s: {e}");
                    let until = Utc::now().timestamp_millis() + REDIS_PAUSE_MS;
                    self.shared.redis_down_until.store(until, Ordering::Relaxed);
                }
                match self.shared.fail {
                    FailMode::Open => Ok((reservation, None)),
                    FailMode::Closed => {
                        let name = checks.first().map_or("", |c| c.name).to_owned();
                        Err(Refusal::Unknown { name })
                    }
                }
            }
        }
    }

    /// [`settle_reserved`](Self::settle_reserved), and in Redis: the reservation `id`
    /// given back, and what `record` used added to every budget that covers it.
    #[cfg(feature = "redis")]
    pub(crate) fn settle_shared(
        &self,
        record: &UsageRecord,
        reservation: Reservation,
        id: Option<String>,
    ) {
        let now = Utc::now();
        let reserved: Vec<(String, u64)> = match &id {
            Some(_) => reservation
                .held()
                .map(|(t, amount)| (t.budget.name.clone(), amount))
                .collect(),
            None => Vec::new(),
        };
        let spent: Vec<(String, i64, u64, chrono::DateTime<Utc>)> = self
            .shared
            .ledger
            .covering(record)
            .iter()
            .filter_map(|t| {
                let (part, until) = t.part_at(record.started_at, now)?;
                let expires = until + chrono::Duration::hours(1);
                Some((
                    t.budget.name.clone(),
                    part,
                    t.budget.measure.of(record),
                    expires,
                ))
            })
            .collect();
        self.settle_reserved(record, reservation);
        let Some(redis) = self.shared.redis.clone() else {
            return;
        };
        if spent.is_empty() && reserved.is_empty() {
            return;
        }
        let budgets = self.clone();
        let id = id.unwrap_or_default();
        // The worker that calls this must not wait for Redis.
        tokio::spawn(async move {
            if redis.settle(&id, &reserved, &spent).await.is_err() {
                budgets.count_shared_failure();
            }
        });
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn count_shared_failure(&self) {
        self.shared
            .counters
            .shared_failures
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_unmetered(&self) {
        self.shared
            .counters
            .unmetered
            .fetch_add(1, Ordering::Relaxed);
    }
}
