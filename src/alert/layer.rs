//! [`BudgetLayer`]: refuses a request whose scope has spent a hard budget, before the
//! service runs, and reserves what a request it lets through is expected to use until
//! its record says what it did use.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use chrono::{SecondsFormat, Utc};
use http::{header, HeaderValue, Request, Response, StatusCode};
use tower::{Layer, Service};

use super::budget::ScopeValues;
use super::budgets::Budgets;
use super::ledger::{Estimate, Refusal};
use crate::{Outcome, UsageHandle};

/// Enforces the hard budgets of a [`Budgets`] in front of a service.
///
/// It goes inside a [`UsageLayer`](crate::UsageLayer): the scope of a request (its
/// user, service, model and provider) is what the usage layer's extractors and the
/// [`UsageHandle`] say when the request reaches this layer, and what the request used is
/// read from its finished record. A budget that names a model therefore holds requests
/// whose model is known from the request head; the records of others still count
/// toward it once they finish.
///
/// A request is let through if every hard budget that covers it has room for what it
/// is expected to use: the estimate configured for its route, else the mean of the
/// scope's recent requests (1 for a request budget). That amount is reserved until the
/// record settles, so concurrent requests cannot all read the same old total. A refused
/// request gets `429 Too Many Requests` (see [`status`](Self::status)) with
/// `Retry-After` and a JSON body that names the budget, what was spent and when it
/// resets. It is still metered by the usage layer, as a record with that status and the
/// outcome [`Refused`](crate::Outcome::Refused), which counts toward no budget (a client
/// that keeps retrying does not keep its own budget spent).
///
/// ```
/// use axum::{routing::post, Router};
/// use tower_usage::alert::{BudgetLayer, Budgets, Estimate};
/// use tower_usage::{extract, store::DieselStore, Recorder, UsageLayer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = DieselStore::connect("sqlite::memory:").await?;
/// let budgets = Budgets::open(store.clone()).await?;
/// let recorder = Recorder::builder(store).spawn();
/// let app: Router = Router::new()
///     .route("/chat", post(|| async { "hi" }))
///     .layer(
///         BudgetLayer::new(budgets)
///             .estimate("/chat", Estimate { cost_micros: Some(2_000), tokens: Some(1_500) }),
///     )
///     .layer(UsageLayer::new(recorder).user(extract::header("x-user-id")));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BudgetLayer {
    budgets: Budgets,
    estimates: Arc<HashMap<String, Estimate>>,
    status: StatusCode,
}

impl BudgetLayer {
    /// Enforces `budgets`.
    pub fn new(budgets: Budgets) -> Self {
        BudgetLayer {
            budgets,
            estimates: Arc::default(),
            status: StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// What a request to `route` (axum's route template where the router matched one,
    /// else the path) is expected to use.
    pub fn estimate(mut self, route: impl Into<String>, estimate: Estimate) -> Self {
        Arc::make_mut(&mut self.estimates).insert(route.into(), estimate);
        self
    }

    /// The status of a refusal (default 429).
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

impl<S> Layer<S> for BudgetLayer {
    type Service = BudgetService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BudgetService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`BudgetLayer`] makes.
#[derive(Debug, Clone)]
pub struct BudgetService<S> {
    inner: S,
    layer: BudgetLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BudgetService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let budgets = &self.layer.budgets;
        let Some(usage) = request.extensions().get::<UsageHandle>() else {
            budgets.count_unmetered();
            return ResponseFuture::inner(self.inner.call(request));
        };
        let estimate = self.estimate_of(&request);
        let admitted = usage.with_names(|[user, service, model, provider]| {
            let values = ScopeValues {
                user,
                service,
                model,
                provider,
            };
            budgets.admit(&values, &estimate)
        });
        match admitted {
            #[cfg(feature = "redis")]
            Ok(reservation) if budgets.is_shared() => {
                // Redis answers asynchronously: the request waits for it in the future,
                // with the service that was made ready, a clone left in its place.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let (budgets, usage, status) = (budgets.clone(), usage.clone(), self.layer.status);
                ResponseFuture::checking(Box::pin(async move {
                    match budgets.confirm(reservation).await {
                        Ok((reservation, id)) => {
                            usage.on_recorded(move |record| {
                                budgets.settle_shared(record, reservation, id)
                            });
                            inner.call(request).await
                        }
                        Err(refusal) => Ok(refused(&usage, &refusal, status)),
                    }
                }))
            }
            // With no budget at all, the record has nothing to settle: no function for
            // the worker to run, and nothing allocated for one.
            Ok(reservation) if reservation.is_empty() && budgets.is_empty() => {
                ResponseFuture::inner(self.inner.call(request))
            }
            Ok(reservation) => {
                let budgets = budgets.clone();
                usage.on_recorded(move |record| budgets.settle_reserved(record, reservation));
                ResponseFuture::inner(self.inner.call(request))
            }
            Err(refusal) => ResponseFuture::refused(refused(usage, &refusal, self.layer.status)),
        }
    }
}

/// The answer to a refused request, and its record marked so.
fn refused<B: From<String>>(
    usage: &UsageHandle,
    refusal: &Refusal,
    status: StatusCode,
) -> Response<B> {
    let (name, kind) = match refusal {
        Refusal::Spent { name, .. } => (name, "budget_spent"),
        Refusal::Unknown { name } => (name, "budget_unknown"),
    };
    usage.mark_failed(Outcome::Refused);
    usage.insert_metadata("refused", kind);
    usage.insert_metadata("budget", name.as_str());
    refuse(refusal, status)
}

impl<S> BudgetService<S> {
    fn estimate_of<B>(&self, request: &Request<B>) -> Estimate {
        let estimates = &self.layer.estimates;
        if estimates.is_empty() {
            return Estimate::default();
        }
        #[cfg(feature = "axum")]
        if let Some(matched) = request.extensions().get::<axum::extract::MatchedPath>() {
            if let Some(e) = estimates.get(matched.as_str()) {
                return *e;
            }
        }
        estimates
            .get(request.uri().path())
            .copied()
            .unwrap_or_default()
    }
}

/// The refusal's response: 429 (or the configured status) with `Retry-After`, or 503
/// when the spend is unknown and the budgets fail closed.
fn refuse<B: From<String>>(refusal: &Refusal, status: StatusCode) -> Response<B> {
    let now = Utc::now();
    let (status, body, retry) = match refusal {
        Refusal::Spent {
            name,
            measure,
            limit,
            spent,
            reserved,
            retry_at,
        } => {
            let seconds = (*retry_at - now).num_seconds().max(1);
            let body = serde_json::json!({
                "error": "budget_spent",
                "message": format!("the budget {name:?} has no room left for this request"),
                "budget": name,
                "measure": measure,
                "limit": limit,
                "spent": spent,
                "reserved": reserved,
                "resets_at": retry_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            });
            (status, body, Some(seconds))
        }
        Refusal::Unknown { name } => {
            let body = serde_json::json!({
                "error": "budget_unknown",
                "message": format!("the spend of the budget {name:?} cannot be read now"),
                "budget": name,
            });
            (StatusCode::SERVICE_UNAVAILABLE, body, None)
        }
    };
    let mut response = Response::new(B::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(seconds) = retry {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

pin_project_lite::pin_project! {
    /// The future of [`BudgetService`]: the inner service's, a refusal at once, or (with
    /// the spend shared through Redis) the check and then the inner service's.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

/// A request waiting for the shared spend's answer before it runs.
type Checking<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Inner { #[pin] future: F },
        Refused { response: Option<Response<B>> },
        Checking { future: Checking<B, E> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    #[cfg(feature = "redis")]
    fn checking(future: Checking<B, E>) -> Self {
        ResponseFuture {
            kind: Kind::Checking { future },
        }
    }

    fn inner(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Inner { future },
        }
    }

    fn refused(response: Response<B>) -> Self {
        ResponseFuture {
            kind: Kind::Refused {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled again after it answered: a contract breach, answered in kind
                // rather than with a panic.
                None => Poll::Pending,
            },
            KindProj::Checking { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, B, E> std::fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}
