//! Budgets and alert rules in the store (`usage_budgets`, `usage_alert_rules`), and
//! what the budgets' scopes have spent according to the stored records.

use super::budget::{Budget, Measure, Period, Window};
use super::error::{Error, RuleStoreError};
use super::rule::Rule;
use crate::query::{Filter, Granularity, Metrics, Point, TimeRange, Tz};
use crate::store::{definitions, DieselStore, StoreError};
use crate::Outcome;
use chrono::{DateTime, Duration, Utc};

/// The budgets' table, made by the store's migrations.
const TABLE: &str = "usage_budgets";
/// The alert rules' table.
const RULES: &str = "usage_alert_rules";

/// What a budget's scope has spent in the window that holds a moment, by the stored
/// records.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct BudgetStatus {
    /// The budget's name.
    pub name: String,
    /// What it counts.
    pub measure: Measure,
    /// Its limit.
    pub limit: u64,
    /// Spent so far in the window.
    pub spent: u64,
    /// `limit - spent`, 0 once spent.
    pub remaining: u64,
    /// Whether requests are refused once it is spent.
    pub enforce: bool,
    /// The first instant the window counts.
    pub window_from: DateTime<Utc>,
    /// When the period starts again (a rolling window: when its oldest hour leaves it).
    pub resets_at: DateTime<Utc>,
}

/// Spend per UTC hour (a rolling window) or for the whole period (a calendar one): the
/// start of each part and the amount spent in it.
pub(crate) type Parts = Vec<(DateTime<Utc>, u64)>;

impl DieselStore {
    /// Creates the budget, or replaces the one of the same name, after
    /// [`Budget::check`]; returns it as stored.
    ///
    /// ```
    /// use tower_usage::alert::{Budget, Measure, Period, Scope};
    /// use tower_usage::store::DieselStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = DieselStore::connect("sqlite::memory:").await?;
    /// let daily = Budget::new("alice-daily", Scope::user("alice"), Measure::Tokens, 100_000, Period::Day);
    /// store.put_budget(daily).await?;
    /// assert_eq!(store.budgets().await?.len(), 1);
    /// assert!(store.delete_budget("alice-daily").await?);
    /// # Ok(()) }
    /// ```
    pub async fn put_budget(&self, budget: Budget) -> Result<Budget, Error> {
        let budget = budget.check()?;
        definitions::put(self, TABLE, &budget.name, &budget).await?;
        Ok(budget)
    }

    /// Every budget, by name.
    pub async fn budgets(&self) -> Result<Vec<Budget>, StoreError> {
        definitions::load(self, TABLE, None, |b: Budget| b.check().ok()).await
    }

    /// The budget named `name`, if there is one.
    pub async fn budget(&self, name: &str) -> Result<Option<Budget>, StoreError> {
        let found = definitions::load(self, TABLE, Some(name), |b: Budget| b.check().ok());
        Ok(found.await?.pop())
    }

    /// Deletes the budget named `name`; returns whether there was one.
    pub async fn delete_budget(&self, name: &str) -> Result<bool, StoreError> {
        definitions::delete(self, TABLE, name).await
    }

    /// Creates the alert rule, or replaces the one of the same name, after
    /// [`Rule::check`]; returns it as stored. A replaced rule keeps its state (firing
    /// or not) and its events.
    ///
    /// ```
    /// use tower_usage::alert::{Condition, Rule, Signal};
    /// use tower_usage::store::DieselStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = DieselStore::connect("sqlite::memory:").await?;
    /// store.put_rule(Rule::new("errors", Signal::ErrorRate, Condition::Above, 0.05)).await?;
    /// assert_eq!(store.rules().await?.len(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn put_rule(&self, rule: Rule) -> Result<Rule, RuleStoreError> {
        let rule = rule.check()?;
        definitions::put(self, RULES, &rule.name, &rule).await?;
        Ok(rule)
    }

    /// Every alert rule, by name.
    pub async fn rules(&self) -> Result<Vec<Rule>, StoreError> {
        definitions::load(self, RULES, None, |r: Rule| r.check().ok()).await
    }

    /// Deletes the alert rule named `name` (its events stay); whether there was one.
    pub async fn delete_rule(&self, name: &str) -> Result<bool, StoreError> {
        definitions::delete(self, RULES, name).await
    }

    /// What `budget`'s scope has spent in the window that holds `now`.
    pub async fn budget_status(
        &self,
        budget: &Budget,
        now: DateTime<Utc>,
    ) -> Result<BudgetStatus, StoreError> {
        let window = budget.window(now);
        let spent = self
            .budget_parts(budget, window)
            .await?
            .iter()
            .fold(0u64, |sum, (_, amount)| sum.saturating_add(*amount));
        Ok(BudgetStatus {
            name: budget.name.clone(),
            measure: budget.measure,
            limit: budget.limit,
            spent,
            remaining: budget.limit.saturating_sub(spent),
            enforce: budget.enforce,
            window_from: window.from,
            resets_at: window.until,
        })
    }

    /// The spend of `budget`'s scope in `window`, in parts (see [`Parts`]). Records
    /// refused before their service ran spend nothing, not even a request.
    pub(crate) async fn budget_parts(
        &self,
        budget: &Budget,
        window: Window,
    ) -> Result<Parts, StoreError> {
        let filter = scope_filter(budget, window);
        let refused = budget.measure == Measure::Requests;
        let mut parts = self.parts(budget, window, &filter).await?;
        if refused {
            let mut only = filter.clone();
            only.outcome = Some(Outcome::Refused);
            let not = self.parts(budget, window, &only).await?;
            for ((_, amount), (_, refused)) in parts.iter_mut().zip(not) {
                *amount = amount.saturating_sub(refused);
            }
        }
        Ok(parts)
    }

    async fn parts(
        &self,
        budget: &Budget,
        window: Window,
        filter: &Filter,
    ) -> Result<Parts, StoreError> {
        match budget.period {
            Period::Rolling { .. } => {
                let series = self.time_series(filter, Granularity::Hour, Tz::UTC).await?;
                let points = series.series.first().map(|s| s.points.as_slice());
                Ok(series
                    .buckets
                    .iter()
                    .zip(points.unwrap_or_default())
                    .map(|(start, point)| (*start, point_amount(budget.measure, point)))
                    .collect())
            }
            Period::Day | Period::Week | Period::Month => {
                let metrics = self.metrics(filter).await?;
                Ok(vec![(
                    window.from,
                    metrics_amount(budget.measure, &metrics),
                )])
            }
        }
    }

    /// The mean amount of `budget`'s measure per record of its scope over the last
    /// `hours`, for requests whose own use is not known in advance; `None` without
    /// records. (Refused records are few next to the rest, and spend nothing: they
    /// lower the mean slightly, never raise it.)
    pub(crate) async fn budget_mean(
        &self,
        budget: &Budget,
        now: DateTime<Utc>,
        hours: i64,
    ) -> Result<Option<u64>, StoreError> {
        let window = Window {
            from: now - Duration::hours(hours),
            until: now + Duration::seconds(1),
        };
        let metrics = self.metrics(&scope_filter(budget, window)).await?;
        let amount = metrics_amount(budget.measure, &metrics);
        Ok((metrics.requests > 0).then(|| amount.div_ceil(metrics.requests)))
    }
}

fn scope_filter(budget: &Budget, window: Window) -> Filter {
    let mut filter = Filter::new(TimeRange::between(window.from, window.until));
    filter.user.clone_from(&budget.scope.user);
    filter.service.clone_from(&budget.scope.service);
    filter.model.clone_from(&budget.scope.model);
    filter.provider.clone_from(&budget.scope.provider);
    filter
}

/// Negative costs (credits given back) spend nothing.
fn metrics_amount(measure: Measure, m: &Metrics) -> u64 {
    match measure {
        Measure::Cost => u64::try_from(m.cost_micros).unwrap_or(0),
        Measure::Tokens => m.tokens.total,
        Measure::Requests => m.requests,
    }
}

fn point_amount(measure: Measure, p: &Point) -> u64 {
    match measure {
        Measure::Cost => u64::try_from(p.cost_micros).unwrap_or(0),
        Measure::Tokens => p.tokens.total,
        Measure::Requests => p.requests,
    }
}
