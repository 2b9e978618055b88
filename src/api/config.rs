//! [`ApiConfig`]: how the analytics API authenticates, limits and audits.

use std::sync::Arc;

use super::auth::{Authenticator, Role};
use super::limit::RateLimit;
use crate::alert::Budgets;
use crate::Recorder;

/// How the [analytics router](super::router) authenticates, limits and audits.
///
/// ```
/// use tower_usage::api::{ApiConfig, Jwt, RateLimit, Role};
///
/// let config = ApiConfig::new(Jwt::hs256("a secret of at least thirty-two bytes!")?)
///     .rate_limit(Role::User, RateLimit::per_minute(30).burst(10))
///     .export_cost(20)
///     .max_limit(500);
/// # Ok::<(), tower_usage::api::JwtKeyError>(())
/// ```
#[derive(Clone)]
#[must_use = "a configuration does nothing until given to `api::router`"]
pub struct ApiConfig {
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) admin_limit: Option<RateLimit>,
    pub(crate) user_limit: Option<RateLimit>,
    pub(crate) unauthenticated_limit: Option<RateLimit>,
    pub(crate) address_header: Option<http::HeaderName>,
    pub(crate) export_cost: u32,
    pub(crate) live_spacing: u32,
    pub(crate) max_limit: usize,
    pub(crate) audit: Option<Recorder>,
    pub(crate) currency: Currency,
    pub(crate) budgets: Option<Budgets>,
    #[cfg(feature = "redis")]
    pub(crate) shared_limits: Option<super::SharedRateLimits>,
}

/// An ISO 4217 currency code: three ASCII capital letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Currency([u8; 3]);

impl Currency {
    #[cfg_attr(not(feature = "dashboard"), allow(dead_code))]
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII capitals are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("USD")
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("admin_limit", &self.admin_limit)
            .field("user_limit", &self.user_limit)
            .field("unauthenticated_limit", &self.unauthenticated_limit)
            .field("address_header", &self.address_header)
            .field("export_cost", &self.export_cost)
            .field("live_spacing", &self.live_spacing)
            .field("max_limit", &self.max_limit)
            .field("audit", &self.audit.is_some())
            .field("budgets", &self.budgets.is_some())
            .finish_non_exhaustive()
    }
}

impl ApiConfig {
    /// Requests are authenticated by `authenticator`. Defaults: admins 600 calls a minute
    /// (burst 100), users 60 (burst 20), requests with missing or bad credentials 60 a
    /// minute (burst 20) per client address, an export costs 10 calls, `limit` at most
    /// 1,000, and the audit trail written by a recorder the router starts on the store's
    /// [audit sink](crate::store::DieselStore::audit_sink).
    pub fn new(authenticator: impl Authenticator) -> Self {
        ApiConfig {
            authenticator: Arc::new(authenticator),
            admin_limit: Some(RateLimit::per_minute(600).burst(100)),
            user_limit: Some(RateLimit::per_minute(60).burst(20)),
            unauthenticated_limit: Some(RateLimit::per_minute(60).burst(20)),
            address_header: None,
            export_cost: 10,
            live_spacing: 100,
            max_limit: 1_000,
            audit: None,
            currency: Currency(*b"USD"),
            budgets: None,
            #[cfg(feature = "redis")]
            shared_limits: None,
        }
    }

    /// The currency that costs are in, as an ISO 4217 code (default `USD`): the
    /// dashboard page (feature `dashboard`) formats costs with it. A code that is not
    /// three ASCII letters is refused with an error naming it.
    ///
    /// ```
    /// # use tower_usage::api::{ApiConfig, Jwt};
    /// let config = ApiConfig::new(Jwt::hs256("a secret of at least thirty-two bytes!")?).currency("eur")?;
    /// assert!(ApiConfig::new(Jwt::hs256("a secret of at least thirty-two bytes!")?).currency("€").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn currency(mut self, code: &str) -> Result<Self, UnknownCurrency> {
        match <[u8; 3]>::try_from(code.as_bytes()) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_alphabetic) => {
                self.currency = Currency(bytes.map(|b| b.to_ascii_uppercase()));
                Ok(self)
            }
            _ => Err(UnknownCurrency(code.chars().take(16).collect())),
        }
    }

    /// The limit for each subject of `role`.
    pub fn rate_limit(mut self, role: Role, limit: RateLimit) -> Self {
        *self.limit_of(role) = Some(limit);
        self
    }

    /// Keeps the rate limits in Redis (feature `redis`), so that a subject's limit holds
    /// across every replica that shares the server and the key prefix; this process's own
    /// limiter decides while Redis fails. See [`SharedRateLimits`](super::SharedRateLimits).
    #[cfg(feature = "redis")]
    pub fn shared_rate_limits(mut self, limits: super::SharedRateLimits) -> Self {
        self.shared_limits = Some(limits);
        self
    }

    /// No rate limit for `role`.
    pub fn unlimited(mut self, role: Role) -> Self {
        *self.limit_of(role) = None;
        self
    }

    /// The limit for requests whose credentials are missing or refused, per client
    /// address (`None`: no limit). Such requests are refused with 401 until the limit is
    /// spent, then with 429, so that a flood of forged tokens cannot run unchecked or
    /// crowd the audit trail.
    ///
    /// The address is the connection's peer, from axum's
    /// [`ConnectInfo`](axum::extract::ConnectInfo) (serve the app with
    /// `into_make_service_with_connect_info::<SocketAddr>()`), or the last address of
    /// [`client_address_header`](Self::client_address_header) behind a proxy. Requests
    /// with neither share one allowance.
    pub fn unauthenticated_limit(mut self, limit: impl Into<Option<RateLimit>>) -> Self {
        self.unauthenticated_limit = limit.into();
        self
    }

    /// Behind a reverse proxy, the header the proxy puts the client's address in (for
    /// example `x-forwarded-for`). The last comma-separated address counts: the one the
    /// proxy added, not what the client claimed before it. Set it only behind a proxy
    /// that sets the header, or any client can pick its own address.
    pub fn client_address_header(mut self, header: http::HeaderName) -> Self {
        self.address_header = Some(header);
        self
    }

    fn limit_of(&mut self, role: Role) -> &mut Option<RateLimit> {
        match role {
            Role::Admin => &mut self.admin_limit,
            Role::User => &mut self.user_limit,
        }
    }

    /// How many calls an export counts as (default 10; at most the burst).
    pub fn export_cost(mut self, cost: u32) -> Self {
        self.export_cost = cost.max(1);
        self
    }

    /// How much of one core a `/live` client may cost the server, about (default 0.01,
    /// 1%): the updates to a client are spaced by the time their metrics took to
    /// compute divided by this share (and by one to ten seconds). Over a large range,
    /// a larger share means more frequent updates.
    ///
    /// ```
    /// # use tower_usage::api::{ApiConfig, Jwt};
    /// let config = ApiConfig::new(Jwt::hs256("a secret of at least thirty-two bytes!")?)
    ///     .live_share(0.05);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn live_share(mut self, share_of_a_core: f64) -> Self {
        let share = if share_of_a_core.is_finite() {
            share_of_a_core
        } else {
            0.01
        };
        self.live_spacing = (1.0 / share.clamp(0.001, 1.0)).round() as u32;
        self
    }

    /// The largest `limit` a request may ask for (default 1,000; the store's own
    /// maximum still applies).
    pub fn max_limit(mut self, max: usize) -> Self {
        self.max_limit = max.max(1);
        self
    }

    /// Writes the audit trail through `recorder` (for instance one built on
    /// [`DieselStore::audit_sink`](crate::store::DieselStore::audit_sink) with your own
    /// batching, which you flush and shut down yourself). A recorder that drops when its
    /// queue is full ([`Overflow::Drop`](crate::recorder::Overflow::Drop), the recorder's
    /// default) can lose audit entries under a flood; the router's own waits.
    pub fn audit(mut self, recorder: Recorder) -> Self {
        self.audit = Some(recorder);
        self
    }

    /// Makes budget changes through the API (`PUT` and `DELETE /budgets/{name}`) take
    /// effect at once in `budgets`, this process's enforcement. Without it they are
    /// written to the store, and every [`Budgets`] sees them at its next
    /// reconciliation.
    pub fn budgets(mut self, budgets: Budgets) -> Self {
        self.budgets = Some(budgets);
        self
    }
}

/// A currency code that is not three ASCII letters; see [`ApiConfig::currency`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an ISO 4217 currency code (three letters): {0:?}")]
pub struct UnknownCurrency(String);
