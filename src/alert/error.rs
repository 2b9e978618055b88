//! Why a budget or a rule could not be stored.

use super::budget::BudgetError;
use super::rule::RuleError;
use crate::store::StoreError;

/// Why a budget could not be stored, or budgets could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The budget makes no sense.
    #[error(transparent)]
    Invalid(#[from] BudgetError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Redis server that shares the spend could not be reached (feature `redis`).
    #[error("budgets: the Redis server could not be reached: {0}")]
    Shared(String),
}

/// Why an alert rule could not be stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuleStoreError {
    /// The rule makes no sense.
    #[error(transparent)]
    Invalid(#[from] RuleError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
