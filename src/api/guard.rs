//! What every endpoint does before its handler: authenticate, count against the rate
//! limit, check the role, parse the query; and afterwards, note a refusal's reason for
//! the audit trail.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::{Principal, Role};
use super::endpoint::Endpoint;
use super::error::{ApiError, Refusal};
use super::params::Params;
use super::Api;
use crate::UsageHandle;

/// An admitted request: who asked, and what.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) principal: Principal,
    pub(crate) params: Params,
}

pub(crate) async fn guard(
    State((api, endpoint)): State<(Api, Endpoint)>,
    request: Request,
    next: Next,
) -> Response {
    let handle = request.extensions().get::<UsageHandle>().cloned();
    if let (Some(handle), Some(query)) = (&handle, request.uri().query()) {
        handle.insert_metadata("query", query);
    }
    let (mut head, body) = request.into_parts();
    let response = match admit(&api, endpoint, &head, handle.as_ref()).await {
        Ok(call) => {
            head.extensions.insert(call);
            next.run(Request::from_parts(head, body)).await
        }
        Err(error) => error.into_response(),
    };
    if let (Some(handle), Some(Refusal(reason))) = (&handle, response.extensions().get()) {
        handle.insert_metadata("reason", reason.as_str());
    }
    response
}

async fn admit(
    api: &Api,
    endpoint: Endpoint,
    head: &http::request::Parts,
    handle: Option<&UsageHandle>,
) -> Result<Call, ApiError> {
    let principal = api.0.authenticator.authenticate(head).await?;
    if let Some(handle) = handle {
        handle.set_user(principal.subject.as_str());
        handle.insert_metadata("role", principal.role.as_str());
    }
    // Refused calls count too, so that probing is limited like any other use.
    let cost = if endpoint == Endpoint::Export {
        api.0.export_cost
    } else {
        1
    };
    api.0
        .limiter
        .check(&principal, cost)
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    if principal.role != Role::Admin {
        if endpoint.admin_only() {
            return Err(ApiError::Forbidden(format!(
                "{} is for admins; users may call /my-usage",
                endpoint.path()
            )));
        }
        let asks_for_user = head
            .uri
            .query()
            .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "user"));
        if asks_for_user {
            return Err(ApiError::Forbidden(
                "a user sees only their own usage: `user` is not accepted".to_owned(),
            ));
        }
    }
    let params = Params::parse(endpoint, head.uri.query(), api.0.max_limit)?;
    Ok(Call { principal, params })
}
