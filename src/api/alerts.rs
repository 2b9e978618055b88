//! The alert endpoints (admins): rules to list, create or replace and delete, the
//! events, the rules firing now, and the webhooks the events are sent to.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use http::StatusCode;

use super::error::ApiError;
use super::guard::Call;
use super::named::named_body;
use super::Api;
use crate::alert::{AlertEvent, Rule, RuleStoreError};
use crate::notify::{Webhook, WebhookError, WebhookView};

type Answer<T> = Result<Json<T>, ApiError>;

/// Events when the request names no `limit`.
const DEFAULT_EVENTS: usize = 100;

pub(crate) async fn rules(State(api): State<Api>) -> Answer<Vec<Rule>> {
    api.store().rules().await.map(Json).map_err(ApiError::store)
}

pub(crate) async fn put(
    State(api): State<Api>,
    Extension(_call): Extension<Call>,
    Path(name): Path<String>,
    body: Bytes,
) -> Answer<Rule> {
    let rule: Rule = named_body("rule", &name, &body)?;
    match api.store().put_rule(rule).await {
        Ok(rule) => Ok(Json(rule)),
        Err(RuleStoreError::Invalid(why)) => Err(ApiError::BadBody(why.to_string())),
        Err(RuleStoreError::Store(e)) => Err(ApiError::store(e)),
    }
}

pub(crate) async fn delete(
    State(api): State<Api>,
    Extension(_call): Extension<Call>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    match api.store().delete_rule(&name).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::NotFound(format!("no alert rule named {name:?}"))),
        Err(e) => Err(ApiError::store(e)),
    }
}

pub(crate) async fn events(
    State(api): State<Api>,
    Extension(call): Extension<Call>,
) -> Answer<Vec<AlertEvent>> {
    let p = &call.params;
    api.store()
        .alert_events(&p.filter.range, None, p.limit.unwrap_or(DEFAULT_EVENTS))
        .await
        .map(Json)
        .map_err(ApiError::store)
}

pub(crate) async fn firing(State(api): State<Api>) -> Answer<Vec<AlertEvent>> {
    api.store()
        .firing_alerts()
        .await
        .map(Json)
        .map_err(ApiError::store)
}

pub(crate) async fn webhooks(State(api): State<Api>) -> Answer<Vec<WebhookView>> {
    let hooks = api.store().webhooks().await.map_err(ApiError::store)?;
    Ok(Json(hooks.iter().map(Webhook::view).collect()))
}

pub(crate) async fn put_webhook(
    State(api): State<Api>,
    Extension(_call): Extension<Call>,
    Path(name): Path<String>,
    body: Bytes,
) -> Answer<WebhookView> {
    let hook: Webhook = named_body("webhook", &name, &body)?;
    match api.store().put_webhook(hook).await {
        Ok(hook) => Ok(Json(hook.view())),
        Err(WebhookError::Store(e)) => Err(ApiError::store(e)),
        Err(why) => Err(ApiError::BadBody(why.to_string())),
    }
}

pub(crate) async fn delete_webhook(
    State(api): State<Api>,
    Extension(_call): Extension<Call>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    match api.store().delete_webhook(&name).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::NotFound(format!("no webhook named {name:?}"))),
        Err(e) => Err(ApiError::store(e)),
    }
}
