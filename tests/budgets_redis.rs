//! Budgets shared through the machine's Redis (`TOWER_USAGE_REDIS_URL`, which `.ci/run`
//! sets): two replicas hold one budget, reservations of a process that never settles
//! expire, and Redis taken away (through a proxy) leaves every request answered.
#![cfg(all(feature = "redis", feature = "sqlite", feature = "axum"))]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::routing::post;
use axum::Router;
use http::{Request, StatusCode};
use tower::ServiceExt;

use tower_usage::alert::{Budget, BudgetLayer, Budgets, Measure, Period, Scope};
use tower_usage::store::DieselStore;
use tower_usage::{extract, Recorder, UsageLayer};

/// One replica: its budgets (shared through Redis) in front of `/chat`, which waits
/// `wait` before it answers.
async fn replica(
    store: &DieselStore,
    redis: &str,
    prefix: &str,
    ttl: Duration,
    wait: Duration,
) -> (Router, Budgets, Recorder) {
    let budgets = Budgets::builder(store.clone())
        .reconcile_every(None)
        .redis(redis)
        .redis_keys(prefix, ttl)
        .open()
        .await
        .unwrap();
    let recorder = Recorder::builder(store.clone())
        .flush_interval(Duration::from_millis(20))
        .spawn();
    let app = Router::new()
        .route(
            "/chat",
            post(move || async move {
                tokio::time::sleep(wait).await;
                "hi"
            }),
        )
        .layer(BudgetLayer::new(budgets.clone()))
        .layer(UsageLayer::new(recorder.clone()).user(extract::header("x-user-id")));
    (app, budgets, recorder)
}

async fn chat(app: &Router) -> StatusCode {
    let request = Request::post("/chat")
        .header("x-user-id", "alice")
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

async fn shared_store(test: &str) -> (DieselStore, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!(
        "{}.db",
        common::redis::prefix(test).replace(':', "-")
    ));
    let store = DieselStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let budget = Budget::new(
        "alice",
        Scope::user("alice"),
        Measure::Requests,
        10,
        Period::Day,
    );
    store.put_budget(budget).await.unwrap();
    (store, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_hold_one_budget() {
    let Some(redis) = common::redis::url() else {
        return;
    };
    let (store, path) = shared_store("replicas").await;
    let keys = common::redis::prefix("replicas");
    let wait = Duration::from_millis(200);
    let ttl = Duration::from_secs(60);
    let (a, budgets_a, rec_a) = replica(&store, &redis, &keys, ttl, wait).await;
    let (b, budgets_b, rec_b) = replica(&store, &redis, &keys, ttl, wait).await;
    // Each replica alone would let ten through: together, ten in all.
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let app = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { chat(&app).await })
        })
        .collect();
    let mut ok = 0;
    for call in calls {
        match call.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("{other}"),
        }
    }
    assert_eq!(ok, 10);
    rec_a.flush().await;
    rec_b.flush().await;
    // Settled in Redis: a replica that comes later sees the budget spent.
    let (c, _, rec_c) = replica(&store, &redis, &keys, ttl, Duration::ZERO).await;
    assert_eq!(chat(&c).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        budgets_a.stats().shared_failures + budgets_b.stats().shared_failures,
        0
    );
    for r in [rec_a, rec_b, rec_c] {
        r.shutdown().await;
    }
    let _ = std::fs::remove_file(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reservations_of_a_replica_that_never_settles_expire() {
    let Some(redis) = common::redis::url() else {
        return;
    };
    let (store, path) = shared_store("expiry").await;
    let keys = common::redis::prefix("expiry");
    let ttl = Duration::from_secs(1);
    // A replica whose requests hang, as if its process had stopped mid-request.
    let (stuck, _, _rec) = replica(&store, &redis, &keys, ttl, Duration::from_secs(3600)).await;
    for _ in 0..10 {
        let stuck = stuck.clone();
        tokio::spawn(async move { chat(&stuck).await });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (other, _, rec) = replica(&store, &redis, &keys, ttl, Duration::ZERO).await;
    assert_eq!(chat(&other).await, StatusCode::TOO_MANY_REQUESTS);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(chat(&other).await, StatusCode::OK);
    rec.shutdown().await;
    let _ = std::fs::remove_file(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_taken_away_leaves_every_request_answered() {
    let Some(redis) = common::redis::url() else {
        return;
    };
    let (store, path) = shared_store("outage").await;
    let (proxy, through) = common::redis::behind_proxy(&redis).await;
    let keys = common::redis::prefix("outage");
    let (app, budgets, rec) = replica(
        &store,
        &through,
        &keys,
        Duration::from_secs(60),
        Duration::ZERO,
    )
    .await;
    assert_eq!(chat(&app).await, StatusCode::OK);
    proxy.take_down();
    let started = std::time::Instant::now();
    // Checked against this process's own count: nine more fit, the tenth does not.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(chat(&app).await);
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        9,
        "{statuses:?}"
    );
    assert!(budgets.stats().shared_failures > 0);
    proxy.bring_back();
    rec.shutdown().await;
    let _ = std::fs::remove_file(path);
}
