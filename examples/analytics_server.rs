//! The quick start's server with the analytics API mounted at `/api/analytics`.
//!
//! ```sh
//! JWT_SECRET=$(openssl rand -hex 32) cargo run --example analytics_server --features api
//! ```
//!
//! With `--features dashboard` the dashboard page is served at `/api/analytics` too:
//! open it in a browser and paste a token the example prints.
//!
//! Tokens are HS256 JWTs signed with `JWT_SECRET` (without it a throwaway secret is made
//! and the example says so). The subject is the `sub` claim and the role the `role` claim
//! (`admin` or `user`); `exp` is checked, no issuer or audience. At start the example
//! prints an admin token, a user token (`alice`) and curl lines to try.
//!
//! `ADDR` (default 127.0.0.1:3000) and `DATABASE_URL` (default `sqlite://usage.db`) work
//! as in the quick start; `ANALYTICS_RATE_LIMIT=off` turns the rate limits off (for load
//! tests). `WEBHOOK_URL` and `WEBHOOK_SECRET` send the alert events to a webhook (with
//! `--features webhooks`; `examples/webhook_receiver.rs` receives them).
//! `DEMO_DAYS=30` fills a database without records with 30 days of generated
//! demo usage (seven users, three services, five models), so that the page has
//! something to show at once; requests to the example are recorded on top.
//! `KEEP_RECORDS_DAYS=90` removes records older than that (by whole 7-day blocks, at start
//! and then hourly) while the rollups keep their sums.
//! `ANSWER_CACHE_MB` sizes the answer cache the analytics read through (64 by default,
//! 0 for none; with `--features redis` and `REDIS_URL`, several servers over one database
//! share the cache's write log and the API's rate limits there). `GET /health` answers 200, or 503 with the reasons (store, recorder,
//! cache); with `--features prometheus`, `GET /metrics` serves the Prometheus exposition.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use axum::Router;
use jsonwebtoken::{EncodingKey, Header};
use tower_usage::alert::{
    Alerts, Budget, Budgets, Condition, Measure, Period, Rule, Scope, Signal,
};
use tower_usage::api::{self, ApiConfig, Jwt, Role};
use tower_usage::recorder::Overflow;
use tower_usage::store::{DieselStore, RetentionPolicy};
use tower_usage::Recorder;

#[path = "shared/demo.rs"]
mod demo;
#[path = "shared/history.rs"]
mod history;
#[path = "shared/signal.rs"]
mod signal;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://usage.db".to_owned());
    let secret = match std::env::var("JWT_SECRET") {
        Ok(secret) => secret,
        Err(_) => {
            eprintln!("!!! JWT_SECRET is not set: using a throwaway development secret.");
            eprintln!("!!! Tokens signed with it stop working when this process exits;");
            eprintln!("!!! set JWT_SECRET (32 bytes or more) for anything but a demo.");
            dev_secret()
        }
    };
    let limits = std::env::var("ANALYTICS_RATE_LIMIT").map_or(true, |v| v != "off");

    let (store, recorder, ops) = demo::open(&database_url).await?;
    if let Ok(days) = std::env::var("DEMO_DAYS") {
        let days = days
            .parse::<u32>()
            .ok()
            .filter(|d| (1..=366).contains(d))
            .ok_or_else(|| format!("DEMO_DAYS={days:?}: give a number of days from 1 to 366"))?;
        history::fill(&store, days).await?;
    }
    if let Ok(days) = std::env::var("KEEP_RECORDS_DAYS") {
        let policy = days
            .parse::<u32>()
            .map_err(|e| format!("KEEP_RECORDS_DAYS={days:?}: {e}"))
            .and_then(|d| RetentionPolicy::keep_records_days(d).map_err(|e| e.to_string()))
            .map_err(|e| format!("KEEP_RECORDS_DAYS: {e}"))?;
        // At once, then hourly; the rollups keep their sums.
        store.spawn_retention(policy, Duration::from_secs(3_600));
    }
    // The audit trail waits for room rather than dropping an entry.
    let audit = Recorder::builder(store.audit_sink())
        .overflow(Overflow::Wait)
        .spawn();

    let budgets = demo_budgets(&store).await?;
    demo_alerts(&store).await?.spawn(Duration::from_secs(15));
    demo_webhook(&store).await?;
    let app = app(
        store.clone(),
        recorder.clone(),
        audit.clone(),
        budgets,
        &secret,
        limits,
    )?
    .merge(ops);

    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let day = Duration::from_secs(86_400);
    let admin = token(&secret, "admin", Role::Admin, day)?;
    let user = token(&secret, "alice", Role::User, day)?;
    eprintln!("listening on http://{addr}; analytics at http://{addr}/api/analytics");
    if cfg!(feature = "dashboard") {
        eprintln!(
            "dashboard page at http://{addr}/api/analytics (paste ADMIN_TOKEN or USER_TOKEN)"
        );
    }
    println!("ADMIN_TOKEN={admin}");
    println!("USER_TOKEN={user}");
    eprintln!("try (tokens valid for 24 hours):");
    eprintln!("  curl -X POST -H 'x-user-id: alice' {addr}/chat");
    eprintln!("  for i in 1 2 3 4 5 6; do curl -s -X POST -H 'x-user-id: alice' {addr}/chat; done   # the 6th is over alice's budget");
    eprintln!(
        "  curl -H \"Authorization: Bearer $ADMIN_TOKEN\" '{addr}/api/analytics/budgets/status'"
    );
    eprintln!(
        "  curl -H \"Authorization: Bearer $ADMIN_TOKEN\" '{addr}/api/analytics/alerts/firing'   # within 15 s of that loop"
    );
    eprintln!("  curl -H \"Authorization: Bearer $ADMIN_TOKEN\" '{addr}/api/analytics/dashboard?last=24h'");
    eprintln!("  curl -H \"Authorization: Bearer $ADMIN_TOKEN\" '{addr}/api/analytics/timeseries?granularity=hour&last=24h&split=model'");
    eprintln!("  curl -OJ -H \"Authorization: Bearer $ADMIN_TOKEN\" '{addr}/api/analytics/export?last=7d'");
    eprintln!("  curl -H \"Authorization: Bearer $USER_TOKEN\" '{addr}/api/analytics/my-usage'");
    eprintln!("  curl -H \"Authorization: Bearer $ADMIN_TOKEN\" '{addr}/api/analytics/audit?refused=true'");
    eprintln!("  curl '{addr}/api/analytics/openapi.json'");
    eprintln!("  curl {addr}/health");

    // The peer's address limits requests with bad credentials, per client.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(signal::shutdown_signal())
        .await?;

    recorder.shutdown().await;
    audit.shutdown().await;
    eprintln!("stopped; {} records in the database", store.count().await?);
    Ok(())
}

/// A demo budget for each of two users on the demo routes (service `quickstart`): alice
/// may call them five times an hour, bob spend 500 tokens a day. Generated demo records
/// are of other services, so they do not count. Kept in the store, so a budget changed
/// through the API stays changed until the next start.
async fn demo_budgets(store: &DieselStore) -> Result<Budgets, Box<dyn std::error::Error>> {
    let budgets = Budgets::open(store.clone()).await?;
    let demo = Scope::user("alice").and_service("quickstart");
    let alice = Budget::new(
        "alice-demo",
        demo,
        Measure::Requests,
        5,
        Period::Rolling { hours: 1 },
    )
    .warn_at([80, 100]);
    let demo = Scope::user("bob").and_service("quickstart");
    let bob = Budget::new("bob-demo", demo, Measure::Tokens, 500, Period::Day).warn_at([50, 100]);
    for budget in [alice, bob] {
        if store.budget(&budget.name).await?.is_none() {
            budgets.put(budget).await?;
        }
    }
    Ok(budgets)
}

/// One demo alert rule: more than one request in ten failing (refusals included) on
/// the demo routes over five minutes, once there are five requests to judge by.
async fn demo_alerts(store: &DieselStore) -> Result<Alerts, Box<dyn std::error::Error>> {
    let mut errors = Rule::new(
        "quickstart-errors",
        Signal::ErrorRate,
        Condition::Above,
        0.1,
    )
    .window_minutes(5)
    .min_requests(5);
    errors.filter.service = Some("quickstart".to_owned());
    if store.rules().await?.iter().all(|r| r.name != errors.name) {
        store.put_rule(errors).await?;
    }
    Ok(Alerts::new(store.clone()))
}

/// With `WEBHOOK_URL` and `WEBHOOK_SECRET` set, sends the alert events there (feature
/// `webhooks`), checking the outbox every second.
async fn demo_webhook(store: &DieselStore) -> Result<(), Box<dyn std::error::Error>> {
    let Ok(url) = std::env::var("WEBHOOK_URL") else {
        return Ok(());
    };
    if !cfg!(feature = "webhooks") {
        return Err("WEBHOOK_URL is set: build the example with `--features webhooks`".into());
    }
    let secret = std::env::var("WEBHOOK_SECRET")
        .map_err(|_| "WEBHOOK_URL is set: set WEBHOOK_SECRET (16 bytes or more) too")?;
    let hook = tower_usage::notify::Webhook::new("demo", url.as_str(), secret);
    store.put_webhook(hook).await?;
    #[cfg(feature = "webhooks")]
    tower_usage::notify::Sender::new(store.clone()).spawn(Duration::from_secs(1));
    eprintln!("alert events go to {url}");
    Ok(())
}

/// The demo routes, held to `budgets`, and the analytics API under `/api/analytics`.
fn app(
    store: DieselStore,
    recorder: Recorder,
    audit: Recorder,
    budgets: Budgets,
    secret: &str,
    limits: bool,
) -> Result<Router, Box<dyn std::error::Error>> {
    let mut config = ApiConfig::new(Jwt::hs256(secret)?)
        .audit(audit)
        .budgets(budgets.clone());
    if !limits {
        config = config
            .unlimited(Role::Admin)
            .unlimited(Role::User)
            .unauthenticated_limit(None);
    }
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var("REDIS_URL") {
        let shared = api::SharedRateLimits::new(&url, "tower-usage-demo:limits")?;
        config = config.shared_rate_limits(shared);
    }
    let routes = demo::routes(store.clone(), recorder, Some(budgets));
    Ok(routes.nest("/api/analytics", api::router(store, config)))
}

/// A signed token for `subject` with `role`, valid for `ttl`.
fn token(
    secret: &str,
    subject: &str,
    role: Role,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    let exp = chrono::Utc::now().timestamp() + i64::try_from(ttl.as_secs()).unwrap_or(0);
    let claims = serde_json::json!({"sub": subject, "role": role.as_str(), "exp": exp});
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// 256 bits from the operating system's randomness (through std's hash seeds).
fn dev_secret() -> String {
    (0..4)
        .map(|_| {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u8(0);
            format!("{:016x}", hasher.finish())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    const SECRET: &str = "an example secret that is long enough";

    async fn call(app: &Router, uri: &str, token: Option<&str>) -> (StatusCode, serde_json::Value) {
        let mut request = Request::get(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    /// The example's app over an in-memory store, with its recorders and alerts.
    async fn example() -> (Router, Recorder, Recorder, Alerts) {
        let store = DieselStore::connect("sqlite::memory:").await.unwrap();
        let recorder = Recorder::builder(store.clone()).spawn();
        let audit = Recorder::builder(store.audit_sink()).spawn();
        let budgets = demo_budgets(&store).await.unwrap();
        let alerts = demo_alerts(&store).await.unwrap();
        let app = app(
            store,
            recorder.clone(),
            audit.clone(),
            budgets,
            SECRET,
            true,
        )
        .unwrap();
        (app, recorder, audit, alerts)
    }

    #[tokio::test]
    async fn the_example_serves_the_analytics_to_admins_and_own_usage_to_users() {
        let (app, recorder, audit, _alerts) = example().await;
        let hour = Duration::from_secs(3_600);
        let admin = token(SECRET, "admin", Role::Admin, hour).unwrap();
        let alice = token(SECRET, "alice", Role::User, hour).unwrap();

        for user in ["alice", "bob", "bob"] {
            let chat = Request::post("/chat")
                .header("x-user-id", user)
                .body(Body::empty())
                .unwrap();
            let response = app.clone().oneshot(chat).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.into_body().collect().await.unwrap();
        }
        recorder.flush().await;

        let (status, dashboard) =
            call(&app, "/api/analytics/dashboard?last=1h", Some(&admin)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(dashboard["metrics"]["requests"], 3);
        assert_eq!(dashboard["metrics"]["tokens"]["input"], 3 * 42);

        let (status, mine) = call(&app, "/api/analytics/my-usage?last=1h", Some(&alice)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(mine["user"], "alice");
        assert_eq!(mine["metrics"]["requests"], 1);

        let (status, _) = call(&app, "/api/analytics/dashboard", Some(&alice)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = call(&app, "/api/analytics/my-usage?user=bob", Some(&alice)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = call(&app, "/api/analytics/metrics", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        audit.flush().await;
        let (status, trail) = call(&app, "/api/analytics/audit?refused=true", Some(&admin)).await;
        assert_eq!(status, StatusCode::OK);
        let refused: Vec<_> = trail
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["subject"].as_str(), e["status"].as_u64()))
            .collect();
        assert_eq!(
            refused,
            [
                (None, Some(401)),
                (Some("alice"), Some(403)),
                (Some("alice"), Some(403))
            ]
        );
        recorder.shutdown().await;
        audit.shutdown().await;
    }

    #[tokio::test]
    async fn alices_sixth_chat_in_an_hour_is_over_her_demo_budget() {
        let (app, recorder, audit, alerts) = example().await;
        let mut statuses = Vec::new();
        for _ in 0..6 {
            let chat = Request::post("/chat")
                .header("x-user-id", "alice")
                .body(Body::empty())
                .unwrap();
            let response = app.clone().oneshot(chat).await.unwrap();
            statuses.push(response.status());
            let body = response.into_body().collect().await.unwrap().to_bytes();
            if statuses.len() == 6 {
                let refusal: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(refusal["budget"], "alice-demo");
            }
        }
        assert_eq!(statuses[..5], [StatusCode::OK; 5]);
        assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS);
        // One refusal in six: the demo rule fires.
        recorder.flush().await;
        let fired = alerts.evaluate(chrono::Utc::now()).await.unwrap();
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].rule, "quickstart-errors");
        // Bob's budget is his own.
        let chat = Request::post("/chat")
            .header("x-user-id", "bob")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            app.clone().oneshot(chat).await.unwrap().status(),
            StatusCode::OK
        );
        recorder.shutdown().await;
        audit.shutdown().await;
    }

    #[tokio::test]
    async fn demo_days_fill_an_empty_database_once() {
        let store = DieselStore::connect("sqlite::memory:").await.unwrap();
        let written = history::fill(&store, 3).await.unwrap();
        assert!(written > 100, "{written}");
        assert_eq!(store.count().await.unwrap(), written);
        let last_week =
            tower_usage::query::Filter::new(tower_usage::query::TimeRange::last_days(7));
        let metrics = store.metrics(&last_week).await.unwrap();
        assert_eq!(metrics.requests, written);
        assert_eq!(metrics.unique_users, 7);
        assert!(metrics.cost_micros > 0 && metrics.errors > 0);
        // A database with records is left alone.
        assert_eq!(history::fill(&store, 3).await.unwrap(), 0);
        assert_eq!(store.count().await.unwrap(), written);
    }
}
