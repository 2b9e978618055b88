//! The analytics as HTTP endpoints for axum (feature `api`).
//!
//! [`router`] serves the [store](crate::store::DieselStore)'s answers as JSON, behind
//! authentication ([`Jwt`] or any [`Authenticator`]), roles, rate limits and an audit
//! trail. Mount it anywhere in an axum 0.8 app:
//!
//! ```no_run
//! use tower_usage::api::{self, ApiConfig, Jwt};
//! use tower_usage::store::DieselStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = DieselStore::connect("sqlite://usage.db").await?;
//! let config = ApiConfig::new(Jwt::hs256(std::env::var("JWT_SECRET")?)?);
//! let app = axum::Router::new().nest("/api/analytics", api::router(store, config));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! # Endpoints
//!
//! All are `GET`; the answers are the [`query`](crate::query) types, serialized as they
//! are. `GET /openapi.json` describes every endpoint, parameter, answer and error
//! (OpenAPI 3.1).
//!
//! | path | role | answer | own parameters |
//! |---|---|---|---|
//! | `/dashboard` | admin | [`Dashboard`](crate::query::Dashboard) | |
//! | `/metrics` | admin | [`Metrics`](crate::query::Metrics) | |
//! | `/services`, `/models`, `/providers`, `/platforms`, `/countries` | admin | [`Breakdown`](crate::query::Breakdown) | `limit` |
//! | `/timeseries` | admin | [`TimeSeries`](crate::query::TimeSeries) | `granularity`, `split`, `top` |
//! | `/latency` | admin | [`LatencySeries`](crate::query::LatencySeries) | `granularity` |
//! | `/users/top` | admin | [`UserRank`](crate::query::UserRank)s | `by`, `limit` |
//! | `/export` | admin | CSV (or `format=jsonl`), streamed as an attachment | `format` |
//! | `/my-usage` | admin, user | [`UserUsage`](crate::query::UserUsage) of the caller | |
//! | `/me` | admin, user | the caller's [`Principal`]: subject and role | none |
//! | `/live` | admin, user | server-sent events: the [`Metrics`](crate::query::Metrics) of the filter (a user's own), at most once a second while records are written | |
//! | `/audit` | admin | [`AuditEntry`](crate::query::AuditEntry)s, newest first | `subject`, `refused`, `limit` |
//!
//! Every endpoint but `/audit` and `/me` takes the filter parameters `from`, `to` (RFC 3339, a date,
//! or Unix seconds; default the last 30 days), `last` (`24h`, `7d`), `user` (admins only),
//! `service`, `model`, `provider`, `outcome`, `status_class`, `platform` and `country`,
//! and `tz` (an IANA zone: where dates in `from`/`to` start, and the buckets of series
//! and peak hours; default UTC).
//!
//! # Refusals
//!
//! | status | when |
//! |---|---|
//! | 400 | an unknown, repeated, empty or bad parameter; the JSON [`ErrorBody`] names it |
//! | 401 | no token or a bad one (expired, not yet valid, wrong signature, issuer, audience or algorithm), with `WWW-Authenticate` |
//! | 403 | a user calling an admin endpoint, or naming a `user` |
//! | 429 | the caller's rate limit is spent, with `Retry-After`; an export costs more than a plain call; requests with missing or bad credentials are limited per client address ([`ApiConfig::unauthenticated_limit`]) |
//!
//! A user never sees another user's data: `/my-usage` answers for the subject of the
//! credentials, and a `user` parameter from a non-admin is refused.
//!
//! # Audit
//!
//! Every request to the router, refused or not, is metered by a
//! [`UsageLayer`] whose recorder writes into the store's audit table
//! (see [`DieselStore::audit_sink`](crate::store::DieselStore::audit_sink)): who (subject
//! and role), the endpoint, the query string, the status, the duration and why a request
//! was refused. Read it with `GET /audit` or
//! [`DieselStore::audit_log`](crate::store::DieselStore::audit_log).

mod alerts;
mod audit;
mod auth;
mod budgets;
mod config;
#[cfg(feature = "dashboard")]
mod dashboard;
mod download;
mod endpoint;
mod error;
mod guard;
mod handlers;
mod jwt;
mod limit;
mod live;
mod named;
mod openapi;
mod params;

pub use audit::AuditSink;
pub use auth::{bearer_token, AuthError, Authenticator, Principal, Role};
pub use config::{ApiConfig, UnknownCurrency};
pub use error::ErrorBody;
pub use jwt::{Jwt, JwtAlgorithm, JwtKeyError};
pub use limit::RateLimit;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use limit::{BadRedisUrl, SharedRateLimits};

use std::sync::Arc;

use axum::response::IntoResponse;
use axum::routing::{delete, get, put, MethodRouter};
use axum::Router;

use crate::recorder::Overflow;
use crate::store::DieselStore;
use crate::{Recorder, UsageLayer};
use endpoint::Endpoint;
use limit::Limiter;

/// The router's shared state.
#[derive(Clone)]
pub(crate) struct Api(Arc<Shared>);

struct Shared {
    store: DieselStore,
    authenticator: Arc<dyn Authenticator>,
    limiter: Limiter,
    address_header: Option<http::HeaderName>,
    export_cost: u32,
    /// `/live` waits this many times what an update cost before the next.
    live_spacing: u32,
    max_limit: usize,
    /// Where budget changes take effect at once, if configured.
    budgets: Option<crate::alert::Budgets>,
}

impl Api {
    fn store(&self) -> &DieselStore {
        &self.0.store
    }
}

/// The analytics endpoints over `store`, as an axum router to mount (or serve) where you
/// like; see the [module docs](self).
///
/// Without [`ApiConfig::audit`], the router starts a recorder for its audit trail on the
/// store's [audit sink](DieselStore::audit_sink), which needs a tokio runtime, like
/// [`Recorder`]'s `spawn`; it writes at least once a second. Use [`router_with_audit`]
/// to keep that recorder, to flush it at exit and read its counters.
pub fn router(store: DieselStore, config: ApiConfig) -> Router {
    router_with_audit(store, config).0
}

/// [`router`], and the recorder that writes its audit trail: the one given with
/// [`ApiConfig::audit`], or the one the router starts. The router's own recorder waits
/// for room when its queue is full ([`Overflow::Wait`]) instead of dropping entries;
/// shut it down after the server stops, so that the last entries are written.
///
/// ```no_run
/// use tower_usage::api::{self, ApiConfig, Jwt};
/// use tower_usage::store::DieselStore;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = DieselStore::connect("sqlite://usage.db").await?;
/// let config = ApiConfig::new(Jwt::hs256(std::env::var("JWT_SECRET")?)?);
/// let (router, audit) = api::router_with_audit(store, config);
/// let app = axum::Router::new().nest("/api/analytics", router);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app).await?;
/// audit.shutdown().await;
/// assert_eq!(audit.stats().dropped, 0);
/// # Ok(()) }
/// ```
pub fn router_with_audit(store: DieselStore, config: ApiConfig) -> (Router, Recorder) {
    let audit = config.audit.clone().unwrap_or_else(|| {
        Recorder::builder(store.audit_sink())
            .overflow(Overflow::Wait)
            .spawn()
    });
    let api = Api(Arc::new(Shared {
        limiter: shared_limits(
            Limiter::new(
                config.admin_limit,
                config.user_limit,
                config.unauthenticated_limit,
            ),
            &config,
        ),
        address_header: config.address_header,
        store,
        authenticator: config.authenticator,
        export_cost: config.export_cost,
        live_spacing: config.live_spacing,
        max_limit: config.max_limit,
        budgets: config.budgets,
    }));
    #[cfg(feature = "dashboard")]
    let page = dashboard::page(config.currency.as_str());
    let document = openapi::document()
        .to_json()
        .unwrap_or_else(|_| "{}".to_owned());
    let mut router = Router::new();
    for endpoint in Endpoint::ALL {
        router = router.route(endpoint.path(), route(&api, endpoint));
    }
    let router = router
        .route(
            openapi::PATH,
            get(move || async move {
                ([(http::header::CONTENT_TYPE, "application/json")], document).into_response()
            }),
        )
        .with_state(api);
    #[cfg(feature = "dashboard")]
    let router = router.route("/", get(move || dashboard::serve(page.clone())));
    let router = router.layer(UsageLayer::new(audit.clone()));
    (router, audit)
}

/// `limiter`, keeping its limits in Redis when configured.
#[cfg_attr(not(feature = "redis"), allow(unused_variables))]
fn shared_limits(limiter: Limiter, config: &ApiConfig) -> Limiter {
    #[cfg(feature = "redis")]
    let limiter = limiter.shared(config.shared_limits.clone());
    limiter
}

/// `endpoint`'s handler behind its guard.
fn route(api: &Api, endpoint: Endpoint) -> MethodRouter<Api> {
    use handlers as h;
    let method = match endpoint {
        Endpoint::Dashboard => get(h::dashboard),
        Endpoint::Metrics => get(h::metrics),
        Endpoint::Services => get(h::services),
        Endpoint::Models => get(h::models),
        Endpoint::Providers => get(h::providers),
        Endpoint::Platforms => get(h::platforms),
        Endpoint::Countries => get(h::countries),
        Endpoint::TimeSeries => get(h::time_series),
        Endpoint::LatencySeries => get(h::latency_series),
        Endpoint::TopUsers => get(h::top_users),
        Endpoint::Export => get(h::export),
        Endpoint::MyUsage => get(h::my_usage),
        Endpoint::Me => get(h::me),
        Endpoint::Live => get(live::live),
        Endpoint::Audit => get(h::audit),
        Endpoint::Budgets => get(budgets::list),
        Endpoint::BudgetStatus => get(budgets::status),
        Endpoint::PutBudget => put(budgets::put),
        Endpoint::DeleteBudget => delete(budgets::delete),
        Endpoint::Rules => get(alerts::rules),
        Endpoint::PutRule => put(alerts::put),
        Endpoint::DeleteRule => delete(alerts::delete),
        Endpoint::AlertEvents => get(alerts::events),
        Endpoint::FiringAlerts => get(alerts::firing),
        Endpoint::Webhooks => get(alerts::webhooks),
        Endpoint::PutWebhook => put(alerts::put_webhook),
        Endpoint::DeleteWebhook => delete(alerts::delete_webhook),
    };
    let guard = axum::middleware::from_fn_with_state((api.clone(), endpoint), guard::guard);
    method.route_layer(guard)
}
