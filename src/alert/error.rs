//! Why a budget or a rule could not be stored.

use super::budget::BudgetError;
use super::rule::RuleError;
use crate::store::StoreError;

/// Why a budget could not be stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The budget makes no sense.
    #[error(transparent)]
    Invalid(#[from] BudgetError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
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
