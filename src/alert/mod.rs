//! Budgets: limits on the cost, tokens or requests of a scope (a user, a service, a
//! model, a provider, or everything, combined as needed) over a day, week or month in a
//! time zone or a rolling window of hours, kept in the store and enforced in front of a
//! service by [`BudgetLayer`].
//!
//! | piece | what it does |
//! |---|---|
//! | [`Budget`] | one budget, checked by [`Budget::check`] before it is stored or enforced |
//! | [`DieselStore::put_budget`](crate::store::DieselStore::put_budget) and friends | the budgets in the store's `usage_budgets` table, and what the stored records say each has spent ([`BudgetStatus`]) |
//! | [`Budgets`] | the spend as this process knows it: reservations of requests in flight, records settled as they finish, reconciled with the store in the background |
//! | [`BudgetLayer`] | refuses a request whose scope has no room left, before the service runs |
//!
//! A request must fit every hard budget whose scope covers it; where several refuse,
//! the answer names the one that holds the caller back longest (its reset is the
//! latest), so overlapping budgets behave as the strictest of them.
//!
//! ```
//! use tower_usage::alert::{Budget, Budgets, BudgetLayer, Measure, Period, Scope};
//! use tower_usage::store::DieselStore;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = DieselStore::connect("sqlite::memory:").await?;
//! let budgets = Budgets::open(store).await?;
//! let monthly = Budget::new("team-gpt4o", Scope::everything().and_model("gpt-4o"), Measure::Cost, 50_000_000, Period::Month)
//!     .time_zone("America/New_York".parse()?)
//!     .warn_at([50, 80, 100]);
//! budgets.put(monthly).await?;
//! let layer = BudgetLayer::new(budgets); // inside a UsageLayer
//! # Ok(()) }
//! ```

mod alerts;
mod budget;
mod budgets;
mod error;
mod events;
mod layer;
mod ledger;
mod rule;
#[cfg(feature = "redis")]
mod shared;
mod stored;

pub use alerts::{AlertStats, Alerts};
pub use budget::{Budget, BudgetError, Measure, Period, Scope, MAX_NAME_LEN, MAX_ROLLING_HOURS};
pub use budgets::{BudgetStats, Budgets, BudgetsBuilder, Spend};
pub use error::{Error, RuleStoreError};
pub use events::{AlertEvent, EventKind};
pub use layer::{BudgetLayer, BudgetService, ResponseFuture};
pub use ledger::{BudgetWarning, Estimate};
pub use rule::{Condition, Rule, RuleError, RuleFilter, Signal, MAX_WINDOW_MINUTES};
pub use stored::BudgetStatus;
