//! The API's rate limits shared through the machine's Redis (`TOWER_USAGE_REDIS_URL`,
//! which `.ci/run` sets): two replicas hold one allowance per subject, and Redis taken
//! away (through a proxy) leaves each replica limiting on its own, counted.
#![cfg(all(feature = "redis", feature = "api", feature = "sqlite"))]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tower::ServiceExt;

use tower_usage::api::{self, ApiConfig, Jwt, RateLimit, Role, SharedRateLimits};
use tower_usage::store::DieselStore;
use tower_usage::Recorder;

const SECRET: &str = "a test secret of at least thirty-two bytes";

fn token(subject: &str, role: &str) -> String {
    let exp = chrono::Utc::now().timestamp() + 600;
    let claims = json!({"sub": subject, "role": role, "exp": exp});
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

/// One replica of the API over `store`, its user limit (burst 3, then one a minute)
/// kept in `limits`.
fn replica(store: &DieselStore, limits: &SharedRateLimits, audit: &Recorder) -> Router {
    let config = ApiConfig::new(Jwt::hs256(SECRET).unwrap())
        .rate_limit(Role::User, RateLimit::per_minute(1).burst(3))
        .unauthenticated_limit(RateLimit::per_minute(1).burst(2))
        .audit(audit.clone())
        .shared_rate_limits(limits.clone());
    api::router(store.clone(), config)
}

/// `GET /me` as `token` (none: unauthenticated): the status and the `Retry-After`.
async fn me(app: &Router, token: Option<&str>) -> (StatusCode, Option<u64>) {
    let mut request = Request::get("/me");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (response.status(), retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_allowance_per_subject() {
    let Some(redis) = common::redis::url() else {
        return;
    };
    let store = DieselStore::connect("sqlite::memory:").await.unwrap();
    let audit = Recorder::builder(store.audit_sink()).spawn();
    let keys = common::redis::prefix("shared");
    // Each replica has its own handle, as two processes would.
    let a = replica(
        &store,
        &SharedRateLimits::new(&redis, &keys).unwrap(),
        &audit,
    );
    let limits_b = SharedRateLimits::new(&redis, &keys).unwrap();
    let b = replica(&store, &limits_b, &audit);
    let alice = token("alice", "user");
    let bob = token("bob", "user");

    assert_eq!(me(&a, Some(&alice)).await.0, StatusCode::OK);
    assert_eq!(me(&b, Some(&alice)).await.0, StatusCode::OK);
    assert_eq!(me(&a, Some(&alice)).await.0, StatusCode::OK);
    // The burst of three is spent across both replicas: the fourth waits about a minute,
    // on whichever replica it lands.
    for app in [&b, &a] {
        let (status, retry_after) = me(app, Some(&alice)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let retry_after = retry_after.expect("a 429 says when to come back");
        assert!((50..=60).contains(&retry_after), "{retry_after}");
    }
    // Bob has his own allowance; unauthenticated callers theirs, per address.
    assert_eq!(me(&b, Some(&bob)).await.0, StatusCode::OK);
    assert_eq!(me(&a, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&b, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&a, None).await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limits_b.fallbacks(), 0);
    audit.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_taken_away_leaves_each_replica_limiting_on_its_own() {
    let Some(redis) = common::redis::url() else {
        return;
    };
    let (proxy, through) = common::redis::behind_proxy(&redis).await;
    let store = DieselStore::connect("sqlite::memory:").await.unwrap();
    let audit = Recorder::builder(store.audit_sink()).spawn();
    let keys = common::redis::prefix("outage");
    let limits = SharedRateLimits::new(&through, &keys).unwrap();
    let a = replica(&store, &limits, &audit);
    let b = replica(
        &store,
        &SharedRateLimits::new(&through, &keys).unwrap(),
        &audit,
    );
    let alice = token("alice", "user");

    // Two of alice's three spent in Redis.
    assert_eq!(me(&a, Some(&alice)).await.0, StatusCode::OK);
    assert_eq!(me(&b, Some(&alice)).await.0, StatusCode::OK);
    assert_eq!(limits.fallbacks(), 0);

    proxy.take_down();
    let started = std::time::Instant::now();
    // Replica a counts alone now: its own burst of three, then refusals.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(me(&a, Some(&alice)).await.0);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS,
        ]
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "an outage costs one slow call, not one per request: {:?}",
        started.elapsed()
    );
    assert_eq!(limits.fallbacks(), 5, "every call decided here is counted");

    proxy.bring_back();
    // Each replica finds its connection cut by the outage once, decides that call here
    // and pauses a second; after that, Redis decides again for both.
    let warm = token("warm-up", "user");
    for app in [&a, &b] {
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        me(app, Some(&warm)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let before = limits.fallbacks();
    let carol = token("carol", "user");
    let mut statuses = Vec::new();
    for app in [&a, &b, &a, &b, &a] {
        statuses.push(me(app, Some(&carol)).await.0);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS,
        ],
        "one allowance across both replicas again"
    );
    assert_eq!(limits.fallbacks(), before);
    audit.shutdown().await;
}

#[test]
fn a_url_that_is_not_redis_is_refused_with_a_clear_error() {
    let error = SharedRateLimits::new("http://127.0.0.1:6379/", "x").unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("not a usable Redis URL (http://127.0.0.1:6379/)"),
        "{message}"
    );
}
