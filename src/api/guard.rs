//! What every endpoint does before its handler: authenticate, count against the rate
//! limit, check the role, parse the query; and afterwards, note a refusal's reason for
//! the audit trail.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::SecondsFormat;

use super::auth::{Principal, Role};
use super::endpoint::Endpoint;
use super::error::{ApiError, Refusal};
use super::params::Params;
use super::Api;
use crate::query::TimeRange;
use crate::UsageHandle;

/// The response header that says, on an answer over usage whose range starts before the
/// records' retention horizon, that horizon (RFC 3339): before it the answer counts what
/// the rollups keep (see [`Retained`](crate::store::Retained)).
pub(crate) const AGGREGATE_ONLY_BEFORE: &str = "usage-aggregate-only-before";

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
            let range = call.params.filter.range;
            head.extensions.insert(call);
            let mut response = next.run(Request::from_parts(head, body)).await;
            if endpoint.reads_usage() && response.status().is_success() {
                mark_aggregate_only(&api, &range, &mut response).await;
            }
            response
        }
        Err(error) => error.into_response(),
    };
    if let (Some(handle), Some(Refusal(reason))) = (&handle, response.extensions().get()) {
        handle.insert_metadata("reason", reason.as_str());
    }
    response
}

/// Says in [`AGGREGATE_ONLY_BEFORE`] where the records of `range` were removed by
/// retention, if they were: the answer rests on the rollups alone before then.
async fn mark_aggregate_only(api: &Api, range: &TimeRange, response: &mut Response) {
    let Some(retained) = api.store().retained_lately().await else {
        return;
    };
    let Some(part) = retained.aggregate_only(range) else {
        return;
    };
    let before = part.to.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    if let Ok(value) = http::HeaderValue::from_str(&before) {
        response.headers_mut().insert(AGGREGATE_ONLY_BEFORE, value);
    }
}

async fn admit(
    api: &Api,
    endpoint: Endpoint,
    head: &http::request::Parts,
    handle: Option<&UsageHandle>,
) -> Result<Call, ApiError> {
    let principal = match api.0.authenticator.authenticate(head).await {
        Ok(principal) => principal,
        Err(error) => {
            // Limited by address, or forged tokens would be free to send without end.
            let address = client_address(head, api.0.address_header.as_ref());
            api.0
                .limiter
                .check_unauthenticated(&address)
                .await
                .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
            return Err(error.into());
        }
    };
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
        .await
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

/// Who sent a request, for the limit on unauthenticated ones: the last address in the
/// configured header (the one the proxy added), else the connection's peer, else one
/// key for all.
fn client_address(head: &http::request::Parts, header: Option<&http::HeaderName>) -> String {
    let forwarded = header.and_then(|name| {
        let last = head.headers.get_all(name).iter().next_back()?;
        let last = last.to_str().ok()?.rsplit(',').next()?.trim();
        (!last.is_empty()).then(|| last.to_owned())
    });
    forwarded
        .or_else(|| {
            head.extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip().to_string())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}
