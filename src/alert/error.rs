//! Why a budget could not be stored.

use super::budget::BudgetError;
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
