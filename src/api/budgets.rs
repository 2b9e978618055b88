//! The budget endpoints (admins): list, status, create or replace, delete; and the
//! caller's own budgets in `/my-usage`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use chrono::Utc;
use http::StatusCode;
use serde::Serialize;

use super::error::ApiError;
use super::guard::Call;
use super::named::named_body;
use super::Api;
use crate::alert::{self, Budget, BudgetStatus};
use crate::query::UserUsage;
use crate::store::DieselStore;

type Answer<T> = Result<Json<T>, ApiError>;

/// What `/my-usage` answers: the caller's usage and their own budgets.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct MyUsage {
    #[serde(flatten)]
    pub(crate) usage: UserUsage,
    /// The budgets that name the caller as their user, with what is left of each.
    pub(crate) budgets: Vec<BudgetStatus>,
}

pub(crate) async fn list(State(api): State<Api>) -> Answer<Vec<Budget>> {
    api.store()
        .budgets()
        .await
        .map(Json)
        .map_err(ApiError::store)
}

pub(crate) async fn status(State(api): State<Api>) -> Answer<Vec<BudgetStatus>> {
    let store = api.store();
    let budgets = store.budgets().await.map_err(ApiError::store)?;
    statuses(store, budgets.iter()).await.map(Json)
}

/// The status of each budget in `budgets`, now.
async fn statuses(
    store: &DieselStore,
    budgets: impl Iterator<Item = &Budget>,
) -> Result<Vec<BudgetStatus>, ApiError> {
    let now = Utc::now();
    let mut out = Vec::new();
    for budget in budgets {
        out.push(
            store
                .budget_status(budget, now)
                .await
                .map_err(ApiError::store)?,
        );
    }
    Ok(out)
}

/// The caller's own budgets: those whose scope names them as the user.
pub(crate) async fn own(store: &DieselStore, user: &str) -> Result<Vec<BudgetStatus>, ApiError> {
    let budgets = store.budgets().await.map_err(ApiError::store)?;
    let mine = budgets
        .iter()
        .filter(|b| b.scope.user.as_deref() == Some(user));
    statuses(store, mine).await
}

pub(crate) async fn put(
    State(api): State<Api>,
    Extension(_call): Extension<Call>,
    Path(name): Path<String>,
    body: Bytes,
) -> Answer<Budget> {
    let budget = named_body("budget", &name, &body)?;
    let stored = match &api.0.budgets {
        Some(budgets) => budgets.put(budget).await,
        None => api.store().put_budget(budget).await,
    };
    match stored {
        Ok(budget) => Ok(Json(budget)),
        Err(alert::Error::Invalid(why)) => Err(ApiError::BadBody(why.to_string())),
        Err(alert::Error::Store(e)) => Err(ApiError::store(e)),
        Err(other) => {
            tracing::error!(error = %other, "a budget could not be stored");
            Err(ApiError::Internal)
        }
    }
}

pub(crate) async fn delete(
    State(api): State<Api>,
    Extension(_call): Extension<Call>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let deleted = match &api.0.budgets {
        Some(budgets) => budgets.delete(&name).await,
        None => api.store().delete_budget(&name).await,
    };
    match deleted {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::NotFound(format!("no budget named {name:?}"))),
        Err(e) => Err(ApiError::store(e)),
    }
}
