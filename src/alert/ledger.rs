//! The spend of every budget as this process knows it: what settled records used, what
//! requests let through have reserved, and what the store said at the last
//! reconciliation.
//!
//! Invariants, per budget (each behind its own lock, so requests in other scopes never
//! wait for it):
//! - `total` is the sum of `parts`, which hold only parts of the current window;
//! - a request is let through only if `total + reserved + estimate ≤ limit` held when it
//!   reserved, so requests that reserve at the same moment can never all read the same
//!   old total: together they overshoot by at most what they use beyond their estimates;
//! - `reserved` is the sum of the estimates of requests let through and not yet settled;
//!   a [`Reservation`] gives its share back exactly once, when its record settles or when
//!   it is dropped unsettled.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use chrono::{DateTime, Utc};

use super::budget::{Budget, Measure, Period, ScopeValues, Window};
use super::stored::Parts;
use crate::UsageRecord;

/// One budget and its spend.
#[derive(Debug)]
pub(crate) struct Tracked {
    pub(crate) budget: Budget,
    spend: Mutex<Spend>,
}

#[derive(Debug)]
struct Spend {
    window: Window,
    /// Settled amounts by the start of their part (microseconds): the period's start for
    /// a calendar period, each UTC hour's for a rolling window.
    parts: BTreeMap<i64, u64>,
    total: u64,
    reserved: u64,
    /// What a request of the scope used lately, for requests without an estimate.
    mean: u64,
    /// Whether the store's figure has been read since the budget was loaded.
    known: bool,
    /// The highest warning threshold the spend has passed in this window.
    warned: u8,
    /// Thresholds passed and not yet reported beyond the log.
    passed: Vec<u8>,
}

/// A budget whose spend passed one of its warning thresholds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct BudgetWarning {
    /// The budget.
    pub budget: String,
    /// The threshold passed, in percent of the limit.
    pub percent: u8,
    /// What the budget counts.
    pub measure: Measure,
    /// Spent when it was found.
    pub spent: u64,
    /// The limit.
    pub limit: u64,
    /// The start of the window the spend is counted over.
    pub window_from: DateTime<Utc>,
    /// When the window's spend starts again (or, rolling, its oldest hour leaves).
    pub resets_at: DateTime<Utc>,
}

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The budget has no room for it.
    Spent {
        name: String,
        measure: Measure,
        limit: u64,
        spent: u64,
        reserved: u64,
        /// When there will be room again (at the latest).
        retry_at: DateTime<Utc>,
    },
    /// The budget's spend could not be read and the configuration fails closed.
    Unknown { name: String },
}

impl Refusal {
    pub(crate) fn retry_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Refusal::Spent { retry_at, .. } => Some(*retry_at),
            Refusal::Unknown { .. } => None,
        }
    }
}

/// The estimates one request holds; given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct Reservation {
    held: Vec<(Arc<Tracked>, u64)>,
}

impl Reservation {
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The budgets reserved in, and how much in each.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn held(&self) -> impl Iterator<Item = (&Tracked, u64)> {
        self.held.iter().map(|(t, amount)| (t.as_ref(), *amount))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        for (tracked, amount) in self.held.drain(..) {
            let mut spend = tracked.lock();
            spend.reserved = spend.reserved.saturating_sub(amount);
        }
    }
}

/// What a request is expected to use of each measure, where known in advance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Cost in micro-units.
    pub cost_micros: Option<u64>,
    /// Tokens.
    pub tokens: Option<u64>,
}

impl Estimate {
    fn of(&self, measure: Measure) -> Option<u64> {
        match measure {
            Measure::Cost => self.cost_micros,
            Measure::Tokens => self.tokens,
            Measure::Requests => Some(1),
        }
    }
}

/// Whether a request may go ahead when a budget's spend is not known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum FailMode {
    /// Let it through, counted by this process alone (the default).
    #[default]
    Open,
    /// Refuse it.
    Closed,
}

impl Tracked {
    pub(crate) fn new(budget: Budget, now: DateTime<Utc>) -> Tracked {
        let window = budget.window(now);
        Tracked {
            budget,
            spend: Mutex::new(Spend {
                window,
                parts: BTreeMap::new(),
                total: 0,
                reserved: 0,
                mean: 0,
                known: false,
                warned: 0,
                passed: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Spend> {
        // The spend is plain numbers: a panic elsewhere leaves them usable.
        self.spend.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves `estimate` (or the scope's mean) if it fits; refuses otherwise.
    fn reserve(
        self: &Arc<Self>,
        estimate: &Estimate,
        now: DateTime<Utc>,
        fail: FailMode,
    ) -> Result<u64, Refusal> {
        let budget = &self.budget;
        let mut spend = self.lock();
        spend.roll(budget, now);
        if !spend.known && fail == FailMode::Closed {
            return Err(Refusal::Unknown {
                name: budget.name.clone(),
            });
        }
        let amount = estimate.of(budget.measure).unwrap_or(spend.mean);
        let used = spend.total.saturating_add(spend.reserved);
        if used < budget.limit && used.saturating_add(amount) <= budget.limit {
            spend.reserved = spend.reserved.saturating_add(amount);
            return Ok(amount);
        }
        Err(Refusal::Spent {
            name: budget.name.clone(),
            measure: budget.measure,
            limit: budget.limit,
            spent: spend.total,
            reserved: spend.reserved,
            retry_at: spend.room_at(budget, amount),
        })
    }

    /// Counts what `record` used, if it started in the current window.
    fn settle(&self, record: &UsageRecord, now: DateTime<Utc>) {
        let budget = &self.budget;
        let amount = budget.measure.of(record);
        let mut spend = self.lock();
        spend.roll(budget, now);
        // A moving mean over about the last eight records.
        spend.mean = (spend.mean.saturating_mul(7).saturating_add(amount)).div_ceil(8);
        if let Some(part) = spend.part_of(budget, record.started_at) {
            let sum = spend.parts.entry(part).or_insert(0);
            *sum = sum.saturating_add(amount);
            spend.total = spend.total.saturating_add(amount);
            spend.warn(budget);
        }
    }

    /// Takes the store's figures where they are larger than this process's own (they
    /// hold other processes' records; this process's own may not be written yet).
    pub(crate) fn reconcile(&self, window: Window, parts: &Parts, mean: Option<u64>) {
        let budget = &self.budget;
        let mut spend = self.lock();
        if spend.window != window {
            // The window moved while the store was read: its figures are of the old one.
            return;
        }
        for (start, amount) in parts {
            let Some(part) = spend.part_of(budget, *start) else {
                continue;
            };
            let own = spend.parts.entry(part).or_insert(0);
            *own = (*own).max(*amount);
        }
        spend.total = spend.parts.values().fold(0, |a, b| a.saturating_add(*b));
        spend.known = true;
        if let Some(mean) = mean.filter(|_| spend.mean == 0) {
            spend.mean = mean;
        }
        spend.warn(budget);
    }

    /// The warnings passed since the last call.
    pub(crate) fn take_warnings(&self) -> Vec<BudgetWarning> {
        let budget = &self.budget;
        let mut spend = self.lock();
        let passed = std::mem::take(&mut spend.passed);
        passed
            .into_iter()
            .map(|percent| BudgetWarning {
                budget: budget.name.clone(),
                percent,
                measure: budget.measure,
                spent: spend.total,
                limit: budget.limit,
                window_from: spend.window.from,
                resets_at: spend.window.until,
            })
            .collect()
    }

    /// The starts of the parts of the window that holds `now` (microseconds): the
    /// period's start, or each UTC hour of a rolling window.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn part_starts(&self, now: DateTime<Utc>) -> Vec<i64> {
        let window = self.window(now);
        let from = window.from.timestamp_micros();
        match self.budget.period {
            Period::Rolling { .. } => (from..window.until.timestamp_micros())
                .step_by(HOUR_US as usize)
                .collect(),
            Period::Day | Period::Week | Period::Month => vec![from],
        }
    }

    /// The part `at` counts in now, and when the window that holds it ends.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn part_at(
        &self,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<(i64, DateTime<Utc>)> {
        let mut spend = self.lock();
        spend.roll(&self.budget, now);
        let part = spend.part_of(&self.budget, at)?;
        Some((part, spend.window.until))
    }

    /// Whether no mean use of a request is known yet.
    pub(crate) fn needs_mean(&self) -> bool {
        self.lock().mean == 0
    }

    /// The window of the spend now (after rolling it to `now`).
    pub(crate) fn window(&self, now: DateTime<Utc>) -> Window {
        let mut spend = self.lock();
        spend.roll(&self.budget, now);
        spend.window
    }

    /// Spent (settled), reserved, and whether the store's figure is in.
    pub(crate) fn figures(&self, now: DateTime<Utc>) -> (u64, u64, bool) {
        let mut spend = self.lock();
        spend.roll(&self.budget, now);
        (spend.total, spend.reserved, spend.known)
    }
}

impl Spend {
    /// Moves the window on to the one that holds `now`, dropping what left it.
    fn roll(&mut self, budget: &Budget, now: DateTime<Utc>) {
        if self.window.from <= now && now < self.window.until {
            return;
        }
        self.window = budget.window(now);
        let from = self.window.from.timestamp_micros();
        self.parts = self.parts.split_off(&from);
        self.total = self.parts.values().fold(0, |a, b| a.saturating_add(*b));
        self.warned = 0;
        self.warn_quietly(budget);
    }

    /// The part an instant belongs to, if it is in the current window.
    fn part_of(&self, budget: &Budget, at: DateTime<Utc>) -> Option<i64> {
        if at < self.window.from || at >= self.window.until {
            return None;
        }
        Some(match budget.period {
            Period::Rolling { .. } => at.timestamp_micros().div_euclid(HOUR_US) * HOUR_US,
            Period::Day | Period::Week | Period::Month => self.window.from.timestamp_micros(),
        })
    }

    /// When `amount` more will fit: the end of a calendar period; for a rolling window,
    /// when enough of its hours have left it (an hour leaves the window `hours` after it
    /// began), or its end if what is reserved alone stands in the way.
    fn room_at(&self, budget: &Budget, amount: u64) -> DateTime<Utc> {
        let Period::Rolling { hours } = budget.period else {
            return self.window.until;
        };
        let mut left = self.total.saturating_add(self.reserved);
        for (&start, &part) in &self.parts {
            left = left.saturating_sub(part);
            if left.saturating_add(amount) <= budget.limit {
                let leaves = start.saturating_add(i64::from(hours) * HOUR_US);
                return DateTime::from_timestamp_micros(leaves).unwrap_or(self.window.until);
            }
        }
        self.window.until
    }

    fn warn(&mut self, budget: &Budget) {
        for &percent in &budget.warn_at {
            if percent > self.warned && passed(self.total, budget.limit, percent) {
                self.warned = percent;
                self.passed.push(percent);
            }
        }
    }

    /// Sets the thresholds already passed without reporting them again.
    fn warn_quietly(&mut self, budget: &Budget) {
        self.warned = budget
            .warn_at
            .iter()
            .copied()
            .filter(|p| passed(self.total, budget.limit, *p))
            .max()
            .unwrap_or(0);
    }
}

fn passed(total: u64, limit: u64, percent: u8) -> bool {
    u128::from(total) * 100 >= u128::from(limit) * u128::from(percent)
}

const HOUR_US: i64 = 3_600_000_000;

/// Every budget this process enforces, found by the user they name.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    index: RwLock<Arc<Index>>,
    /// Where passed warning thresholds go, if anywhere but the log.
    warnings: Option<tokio::sync::mpsc::UnboundedSender<BudgetWarning>>,
}

#[derive(Debug, Default)]
struct Index {
    all: Vec<Arc<Tracked>>,
    by_user: HashMap<String, Vec<Arc<Tracked>>>,
    any_user: Vec<Arc<Tracked>>,
}

impl Index {
    fn new(all: Vec<Arc<Tracked>>) -> Index {
        let mut index = Index::default();
        for tracked in &all {
            match &tracked.budget.scope.user {
                Some(user) => index
                    .by_user
                    .entry(user.clone())
                    .or_default()
                    .push(Arc::clone(tracked)),
                None => index.any_user.push(Arc::clone(tracked)),
            }
        }
        index.all = all;
        index
    }

    /// The budgets whose scope covers `values`.
    fn covering<'a>(
        &'a self,
        values: &'a ScopeValues<'_>,
    ) -> impl Iterator<Item = &'a Arc<Tracked>> {
        let named = values
            .user
            .and_then(|user| self.by_user.get(user))
            .into_iter()
            .flatten();
        named
            .chain(&self.any_user)
            .filter(move |t| t.budget.scope.covers(values))
    }
}

impl Ledger {
    /// A ledger that sends the warning thresholds its budgets pass to `warnings`.
    pub(crate) fn new(warnings: tokio::sync::mpsc::UnboundedSender<BudgetWarning>) -> Ledger {
        Ledger {
            index: RwLock::default(),
            warnings: Some(warnings),
        }
    }

    /// Sends on the warnings `tracked` has passed.
    pub(crate) fn forward(&self, tracked: &Tracked) {
        for warning in tracked.take_warnings() {
            if let Some(warnings) = &self.warnings {
                // The receiver lives as long as the budgets do; if it is gone, so is
                // anyone to tell.
                let _ = warnings.send(warning);
            }
        }
    }

    fn index(&self) -> Arc<Index> {
        Arc::clone(&self.index.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether it tracks no budget at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.index().all.is_empty()
    }

    /// Every tracked budget.
    pub(crate) fn all(&self) -> Vec<Arc<Tracked>> {
        self.index().all.clone()
    }

    /// Replaces the budgets with `budgets`, keeping the spend of those unchanged.
    pub(crate) fn replace(&self, budgets: Vec<Budget>, now: DateTime<Utc>) -> Vec<Arc<Tracked>> {
        let old = self.index();
        let mut fresh = Vec::new();
        let all = budgets
            .into_iter()
            .map(|budget| {
                let kept = old.all.iter().find(|t| t.budget == budget);
                kept.cloned().unwrap_or_else(|| {
                    let tracked = Arc::new(Tracked::new(budget, now));
                    fresh.push(Arc::clone(&tracked));
                    tracked
                })
            })
            .collect();
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(Index::new(all));
        fresh
    }

    /// Adds or replaces one budget.
    pub(crate) fn put(&self, budget: Budget, now: DateTime<Utc>) -> Arc<Tracked> {
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<Arc<Tracked>> = index
            .all
            .iter()
            .filter(|t| t.budget.name != budget.name)
            .cloned()
            .collect();
        let tracked = Arc::new(Tracked::new(budget, now));
        all.push(Arc::clone(&tracked));
        all.sort_by(|a, b| a.budget.name.cmp(&b.budget.name));
        *index = Arc::new(Index::new(all));
        tracked
    }

    /// Forgets one budget.
    pub(crate) fn remove(&self, name: &str) {
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        let all = index
            .all
            .iter()
            .filter(|t| t.budget.name != name)
            .cloned()
            .collect();
        *index = Arc::new(Index::new(all));
    }

    /// Reserves for a request in scope `values` against every hard budget that covers
    /// it. Refused by any, it reserves nothing, and the refusal is the one with the
    /// latest `retry_at` (the budget that holds the caller back longest).
    pub(crate) fn admit(
        &self,
        values: &ScopeValues<'_>,
        estimate: &Estimate,
        now: DateTime<Utc>,
        fail: FailMode,
    ) -> Result<Reservation, Refusal> {
        let index = self.index();
        let mut reservation = Reservation::default();
        let mut refusal: Option<Refusal> = None;
        for tracked in index.covering(values).filter(|t| t.budget.enforce) {
            match tracked.reserve(estimate, now, fail) {
                Ok(amount) => reservation.held.push((Arc::clone(tracked), amount)),
                Err(new) => {
                    let later = match (&refusal, new.retry_at()) {
                        (None, _) => true,
                        (Some(old), Some(at)) => old.retry_at().is_some_and(|o| at > o),
                        (Some(_), None) => false,
                    };
                    if later {
                        refusal = Some(new);
                    }
                }
            }
        }
        match refusal {
            // Dropping the reservation gives back what it held.
            Some(refusal) => Err(refusal),
            None => Ok(reservation),
        }
    }

    /// The budgets that cover `record`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn covering(&self, record: &UsageRecord) -> Vec<Arc<Tracked>> {
        let index = self.index();
        let values = ScopeValues::of(record);
        index.covering(&values).cloned().collect()
    }

    /// Counts `record` in every budget that covers it, and gives `reservation` back.
    pub(crate) fn settle(
        &self,
        record: &UsageRecord,
        reservation: Reservation,
        now: DateTime<Utc>,
    ) {
        drop(reservation);
        let index = self.index();
        let values = ScopeValues::of(record);
        for tracked in index.covering(&values) {
            tracked.settle(record, now);
            self.forward(tracked);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Period, Scope};
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, h, m, 0).unwrap()
    }

    fn ledger(budgets: Vec<Budget>) -> Ledger {
        let ledger = Ledger::default();
        for tracked in ledger.replace(budgets, at(10, 0)) {
            tracked.reconcile(tracked.window(at(10, 0)), &Vec::new(), None);
        }
        ledger
    }

    fn alice() -> ScopeValues<'static> {
        ScopeValues {
            user: Some("alice"),
            ..ScopeValues::default()
        }
    }

    fn spent(user: &str, cost: i64, when: DateTime<Utc>) -> UsageRecord {
        UsageRecord::builder()
            .user(user)
            .started_at(when)
            .cost_micros(cost)
            .build()
    }

    #[test]
    fn requests_reserve_until_the_room_is_gone_and_give_back_when_dropped() {
        let b = Budget::new("r", Scope::user("alice"), Measure::Requests, 3, Period::Day);
        let ledger = ledger(vec![b]);
        let now = at(10, 5);
        let held: Vec<_> = (0..3)
            .map(|_| {
                ledger
                    .admit(&alice(), &Estimate::default(), now, FailMode::Open)
                    .unwrap()
            })
            .collect();
        let refused = ledger.admit(&alice(), &Estimate::default(), now, FailMode::Open);
        assert!(matches!(refused, Err(Refusal::Spent { reserved: 3, .. })));
        // Other users are not covered.
        let bob = ScopeValues {
            user: Some("bob"),
            ..ScopeValues::default()
        };
        assert!(ledger
            .admit(&bob, &Estimate::default(), now, FailMode::Open)
            .unwrap()
            .is_empty());
        drop(held);
        assert!(ledger
            .admit(&alice(), &Estimate::default(), now, FailMode::Open)
            .is_ok());
    }

    #[test]
    fn settled_spend_counts_and_a_calendar_period_starts_again_at_its_end() {
        let b = Budget::new("c", Scope::user("alice"), Measure::Cost, 100, Period::Day);
        let ledger = ledger(vec![b]);
        let estimate = Estimate {
            cost_micros: Some(30),
            tokens: None,
        };
        let r = ledger
            .admit(&alice(), &estimate, at(10, 0), FailMode::Open)
            .unwrap();
        ledger.settle(&spent("alice", 90, at(10, 0)), r, at(10, 1));
        let refused = ledger
            .admit(&alice(), &estimate, at(10, 2), FailMode::Open)
            .unwrap_err();
        let tomorrow = Utc.with_ymd_and_hms(2026, 12, 6, 0, 0, 0).unwrap();
        assert_eq!(refused.retry_at(), Some(tomorrow));
        assert!(ledger
            .admit(&alice(), &estimate, tomorrow, FailMode::Open)
            .is_ok());
        // A record from yesterday that arrives late counts nowhere now.
        let r = ledger
            .admit(&alice(), &estimate, tomorrow, FailMode::Open)
            .unwrap();
        ledger.settle(&spent("alice", 90, at(23, 0)), r, tomorrow);
        assert!(ledger
            .admit(&alice(), &estimate, tomorrow, FailMode::Open)
            .is_ok());
    }

    #[test]
    fn a_rolling_window_frees_room_as_its_oldest_hours_leave() {
        let b = Budget::new(
            "w",
            Scope::user("alice"),
            Measure::Cost,
            100,
            Period::Rolling { hours: 2 },
        );
        let ledger = ledger(vec![b]);
        let none = Estimate {
            cost_micros: Some(10),
            tokens: None,
        };
        ledger.settle(
            &spent("alice", 60, at(10, 10)),
            Reservation::default(),
            at(10, 10),
        );
        ledger.settle(
            &spent("alice", 35, at(11, 10)),
            Reservation::default(),
            at(11, 10),
        );
        let refused = ledger
            .admit(&alice(), &none, at(11, 20), FailMode::Open)
            .unwrap_err();
        // Room comes back when the 10:00 hour leaves, at 12:00.
        assert_eq!(refused.retry_at(), Some(at(12, 0)));
        assert!(ledger
            .admit(&alice(), &none, at(12, 0), FailMode::Open)
            .is_ok());
    }

    #[test]
    fn the_store_figure_wins_where_it_is_larger_and_never_adds_twice() {
        let b = Budget::new("s", Scope::everything(), Measure::Cost, 100, Period::Day);
        let ledger = ledger(vec![b]);
        let tracked = ledger.all().pop().unwrap();
        ledger.settle(
            &spent("alice", 40, at(10, 0)),
            Reservation::default(),
            at(10, 0),
        );
        let window = tracked.window(at(10, 1));
        // The store holds the same 40: still 40. Then other processes' 30 more: 70.
        tracked.reconcile(window, &vec![(window.from, 40)], None);
        assert_eq!(tracked.figures(at(10, 1)).0, 40);
        tracked.reconcile(window, &vec![(window.from, 70)], None);
        assert_eq!(tracked.figures(at(10, 1)).0, 70);
    }

    #[test]
    fn overlapping_budgets_all_hold_and_the_longest_wait_is_reported() {
        let daily = Budget::new(
            "daily",
            Scope::user("alice"),
            Measure::Requests,
            5,
            Period::Day,
        );
        let monthly = Budget::new(
            "monthly",
            Scope::everything(),
            Measure::Requests,
            2,
            Period::Month,
        );
        let ledger = ledger(vec![daily, monthly]);
        let now = at(10, 0);
        let _a = ledger
            .admit(&alice(), &Estimate::default(), now, FailMode::Open)
            .unwrap();
        let _b = ledger
            .admit(&alice(), &Estimate::default(), now, FailMode::Open)
            .unwrap();
        match ledger.admit(&alice(), &Estimate::default(), now, FailMode::Open) {
            Err(Refusal::Spent { name, .. }) => assert_eq!(name, "monthly"),
            other => panic!("{other:?}"),
        }
        // The refused request reserved nothing in the daily budget.
        let daily = ledger
            .all()
            .into_iter()
            .find(|t| t.budget.name == "daily")
            .unwrap();
        assert_eq!(daily.figures(now).1, 2);
    }

    #[test]
    fn an_unknown_spend_fails_open_or_closed_as_configured() {
        let b = Budget::new("u", Scope::everything(), Measure::Requests, 5, Period::Day);
        let ledger = Ledger::default();
        ledger.replace(vec![b], at(10, 0));
        let values = ScopeValues::default();
        assert!(ledger
            .admit(&values, &Estimate::default(), at(10, 0), FailMode::Open)
            .is_ok());
        assert!(matches!(
            ledger.admit(&values, &Estimate::default(), at(10, 0), FailMode::Closed),
            Err(Refusal::Unknown { .. })
        ));
    }
}
