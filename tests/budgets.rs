//! Budgets: stored and checked on every backend, what the store says they spent, and
//! `BudgetLayer` in front of a real axum app: concurrency, settlement, reconciliation,
//! dropped records and a store that goes away.
#![cfg(all(feature = "sqlite", feature = "axum"))]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::routing::post;
use axum::{Extension, Router};
use chrono::{TimeZone, Utc};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use common::db::fresh;
use tower_usage::alert::{self, Budget, BudgetLayer, Budgets, Estimate, Measure, Period, Scope};
use tower_usage::recorder::Overflow;
use tower_usage::store::{DieselStore, StoreError};
use tower_usage::{extract, Recorder, UsageHandle, UsageLayer, UsageRecord, UsageSink};

fn spent(user: &str, cost: i64, at: chrono::DateTime<Utc>) -> UsageRecord {
    UsageRecord::builder()
        .user(user)
        .model("gpt-4o")
        .started_at(at)
        .cost_micros(cost)
        .build()
}

#[tokio::test]
async fn budgets_are_stored_checked_and_their_spend_is_the_records() {
    for db in fresh("budgets_stored").await {
        let store = DieselStore::connect(&db.url).await.unwrap();
        let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
        let monthly = Budget::new(
            "alice-month",
            Scope::user("alice"),
            Measure::Cost,
            1_000,
            Period::Month,
        )
        .time_zone(ny)
        .warn_at([80, 50]);
        let stored = store.put_budget(monthly.clone()).await.unwrap();
        assert_eq!(stored.warn_at, [50, 80], "{}", db.backend);
        let rolling = Budget::new(
            "all-4h",
            Scope::everything().and_model("gpt-4o"),
            Measure::Requests,
            5,
            Period::Rolling { hours: 4 },
        );
        store.put_budget(rolling.clone()).await.unwrap();
        // Nonsense is refused with what is wrong, and nothing is written.
        let bad = Budget::new(
            "no spaces",
            Scope::everything(),
            Measure::Cost,
            1,
            Period::Day,
        );
        let err = store.put_budget(bad).await.unwrap_err();
        assert!(matches!(err, alert::Error::Invalid(_)), "{err}");
        assert!(err.to_string().contains("name"), "{err}");
        let zero = Budget::new("zero", Scope::everything(), Measure::Cost, 0, Period::Day);
        assert!(store
            .put_budget(zero)
            .await
            .unwrap_err()
            .to_string()
            .contains("limit"));
        let names: Vec<String> = store
            .budgets()
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(names, ["alice-month", "all-4h"], "{}", db.backend);
        // Replacing keeps one budget of the name.
        store.put_budget(monthly.clone().soft()).await.unwrap();
        assert!(!store.budget("alice-month").await.unwrap().unwrap().enforce);
        assert_eq!(store.budgets().await.unwrap().len(), 2);

        // 03:30 UTC on 1 December is still November in New York: it counts in
        // November's window, not in December's.
        let late_november = Utc.with_ymd_and_hms(2026, 12, 1, 3, 30, 0).unwrap();
        let december = Utc.with_ymd_and_hms(2026, 12, 1, 5, 30, 0).unwrap();
        store
            .write_batch(&[
                spent("alice", 300, late_november),
                spent("alice", 200, december),
                spent("alice", 100, december + chrono::Duration::hours(2)),
                spent("bob", 900, december),
            ])
            .await
            .unwrap();
        let now = december + chrono::Duration::hours(3);
        let status = store.budget_status(&monthly, now).await.unwrap();
        assert_eq!(
            (status.spent, status.remaining),
            (300, 700),
            "{}",
            db.backend
        );
        assert_eq!(
            status.resets_at,
            Utc.with_ymd_and_hms(2027, 1, 1, 5, 0, 0).unwrap()
        );
        let november = store.budget_status(&monthly, late_november).await.unwrap();
        assert_eq!(november.spent, 300, "{}", db.backend);
        // The rolling window holds 05:00 to 09:00 at 08:30: three of the four records.
        let status = store.budget_status(&rolling, now).await.unwrap();
        assert_eq!(status.spent, 3, "{}", db.backend);

        assert!(store.delete_budget("all-4h").await.unwrap());
        assert!(!store.delete_budget("all-4h").await.unwrap());
        // A definition broken by hand is a clear error, never a panic.
        db.execute("INSERT INTO usage_budgets (name, definition, updated_at_us) VALUES ('broken', '{\"limit\":-1}', 0)")
            .await;
        match store.budgets().await {
            Err(StoreError::Corrupt(why)) => {
                assert!(why.contains("broken") || why.contains("-1"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        db.cleanup().await;
    }
}

/// The app the layer guards: `/chat` waits `millis`, then says it cost `cost`.
fn app(
    budgets: Budgets,
    recorder: Recorder,
    estimate: Option<Estimate>,
    millis: u64,
    cost: i64,
) -> Router {
    let mut layer = BudgetLayer::new(budgets);
    if let Some(estimate) = estimate {
        layer = layer.estimate("/chat", estimate);
    }
    Router::new()
        .route(
            "/chat",
            post(move |Extension(usage): Extension<UsageHandle>| async move {
                tokio::time::sleep(Duration::from_millis(millis)).await;
                usage.set_cost_micros(cost);
                usage.add_tokens(10, 5);
                "hi"
            }),
        )
        .layer(layer)
        .layer(UsageLayer::new(recorder).user(extract::header("x-user-id")))
}

async fn chat(app: &Router, user: &str) -> (StatusCode, http::HeaderMap, Value) {
    let request = Request::post("/chat")
        .header("x-user-id", user)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn recorder(store: &DieselStore) -> Recorder {
    Recorder::builder(store.clone())
        .flush_interval(Duration::from_millis(20))
        .spawn()
}

async fn budgets_with(store: &DieselStore, budget: Budget) -> Budgets {
    let budgets = Budgets::builder(store.clone())
        .reconcile_every(None)
        .open()
        .await
        .unwrap();
    budgets.put(budget).await.unwrap();
    budgets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_requests_get_only_the_room_there_is() {
    let store = DieselStore::connect("sqlite::memory:").await.unwrap();
    let daily = Budget::new(
        "alice-daily",
        Scope::user("alice"),
        Measure::Requests,
        10,
        Period::Day,
    );
    let budgets = budgets_with(&store, daily).await;
    let recorder = recorder(&store);
    let app = app(budgets.clone(), recorder.clone(), None, 200, 0);
    let calls: Vec<_> = (0..1000)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { chat(&app, "alice").await })
        })
        .collect();
    let mut ok = 0;
    let mut refused = Vec::new();
    for call in calls {
        let (status, headers, body) = call.await.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => refused.push((headers, body)),
            other => panic!("{other}"),
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(refused.len(), 990);
    let (headers, body) = &refused[0];
    assert_eq!(body["error"], "budget_spent");
    assert_eq!(body["budget"], "alice-daily");
    assert_eq!(body["limit"], 10);
    let retry: i64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    // Someone else is not held back.
    assert_eq!(chat(&app, "bob").await.0, StatusCode::OK);
    recorder.flush().await;
    let spend = budgets.spend();
    assert_eq!((spend[0].spent, spend[0].reserved), (10, 0));
    let stats = budgets.stats();
    assert_eq!((stats.admitted, stats.refused), (11, 990));
    // The refused requests are in the store, as refused, and spend nothing there either:
    // a client that keeps retrying does not keep its budget spent.
    let mut refused = tower_usage::query::Filter::new(tower_usage::query::TimeRange::last_hours(1));
    refused.outcome = Some(tower_usage::Outcome::Refused);
    assert_eq!(store.metrics(&refused).await.unwrap().requests, 990);
    budgets.reconcile().await.unwrap();
    assert_eq!(budgets.spend()[0].spent, 10);
    recorder.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cost_overshoots_at_most_by_what_requests_in_flight_used_beyond_their_estimate() {
    let store = DieselStore::connect("sqlite::memory:").await.unwrap();
    let limit = 10_000;
    let budget = Budget::new(
        "alice-cost",
        Scope::user("alice"),
        Measure::Cost,
        limit,
        Period::Day,
    );
    let budgets = budgets_with(&store, budget).await;
    let recorder = recorder(&store);
    let estimate = Estimate {
        cost_micros: Some(1_000),
        tokens: None,
    };
    let app = app(
        budgets.clone(),
        recorder.clone(),
        Some(estimate),
        100,
        1_500,
    );
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { chat(&app, "alice").await.0 })
        })
        .collect();
    let mut admitted = 0u64;
    for call in calls {
        if call.await.unwrap() == StatusCode::OK {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 10, "room for ten estimates");
    recorder.flush().await;
    let spent = budgets.spend()[0].spent;
    assert_eq!(spent, admitted * 1_500);
    assert!(spent <= limit + admitted * 500);
    // Spent: the next request is refused, until the day ends.
    let (status, _, body) = chat(&app, "alice").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["spent"], 15_000);
    recorder.shutdown().await;
}

#[tokio::test]
async fn spend_written_by_another_process_is_seen_at_the_next_reconciliation() {
    let store = DieselStore::connect("sqlite::memory:").await.unwrap();
    let budget = Budget::new(
        "alice-cost",
        Scope::user("alice"),
        Measure::Cost,
        10_000,
        Period::Rolling { hours: 24 },
    );
    let budgets = budgets_with(&store, budget).await;
    let recorder = recorder(&store);
    let estimate = Estimate {
        cost_micros: Some(100),
        tokens: None,
    };
    let app = app(budgets.clone(), recorder.clone(), Some(estimate), 0, 100);
    assert_eq!(chat(&app, "alice").await.0, StatusCode::OK);
    // Another replica's records, straight into the store.
    store
        .write_batch(&[spent("alice", 9_950, Utc::now())])
        .await
        .unwrap();
    assert_eq!(chat(&app, "alice").await.0, StatusCode::OK);
    budgets.reconcile().await.unwrap();
    recorder.flush().await;
    let (status, _, body) = chat(&app, "alice").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(budgets.stats().reconciled, 1);
    recorder.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_never_arrive_give_their_reservations_back() {
    let store = DieselStore::connect("sqlite::memory:").await.unwrap();
    let budget = Budget::new(
        "alice-requests",
        Scope::user("alice"),
        Measure::Requests,
        1_000,
        Period::Day,
    );
    let budgets = budgets_with(&store, budget).await;
    // A queue of one that drops what does not fit: most records are lost.
    let tiny = Recorder::builder(store.clone())
        .queue_capacity(1)
        .overflow(Overflow::Drop)
        .flush_interval(Duration::from_millis(500))
        .spawn();
    let app = app(budgets.clone(), tiny.clone(), None, 50, 0);
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { chat(&app, "alice").await.0 })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), StatusCode::OK);
    }
    // And requests whose client went away mid-flight.
    for _ in 0..5 {
        let request = Request::post("/chat")
            .header("x-user-id", "alice")
            .body(Body::empty())
            .unwrap();
        let call = app.clone().oneshot(request);
        let _ = tokio::time::timeout(Duration::from_millis(5), call).await;
    }
    tiny.flush().await;
    tiny.shutdown().await;
    assert!(tiny.stats().dropped > 0, "{:?}", tiny.stats());
    assert_eq!(budgets.spend()[0].reserved, 0);
}

#[tokio::test]
async fn bad_json_for_a_budget_says_what_is_wrong() {
    for text in [
        r#"{"name":"a","measure":"cost","limit":-1,"period":"day"}"#,
        r#"{"name":"a","measure":"cost","limit":1,"period":"fortnight"}"#,
        r#"{"name":"a","measure":"cost","limit":1,"period":"day","time_zone":"Nowhere/Land"}"#,
        r#"{"name":"a","scope":{"team":"x"},"measure":"cost","limit":1,"period":"day"}"#,
    ] {
        assert!(serde_json::from_str::<Budget>(text).is_err(), "{text}");
    }
}

/// The store taken away: requests are still checked, from this process's own count, and
/// never wait for it; reconciliation fails, is counted, and works again once it is back.
/// Opening budgets over a store that is down is a clear error.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_goes_away_never_fails_or_holds_a_request() {
    let Some((db, proxy, proxied)) = common::proxy::postgres_behind_proxy("budget_faults").await
    else {
        return;
    };
    let store = DieselStore::connect(&proxied).await.unwrap();
    let budget = Budget::new(
        "alice-requests",
        Scope::user("alice"),
        Measure::Requests,
        5,
        Period::Day,
    );
    let budgets = budgets_with(&store, budget).await;
    let recorder = Recorder::builder(store.clone())
        .flush_interval(Duration::from_millis(20))
        .write_timeout(Duration::from_secs(1))
        .spawn();
    let app = app(budgets.clone(), recorder.clone(), None, 0, 0);
    proxy.take_down();
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(chat(&app, "alice").await.0);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS);
    let err = budgets.reconcile().await.unwrap_err();
    assert!(matches!(err, StoreError::Connect { .. }), "{err}");
    assert_eq!(budgets.stats().reconcile_failures, 1);
    let down = Budgets::open(store.clone()).await;
    assert!(down.is_err());
    proxy.bring_back();
    budgets.reconcile().await.unwrap();
    assert_eq!(budgets.stats().reconciled, 1);
    recorder.shutdown().await;
    db.cleanup().await;
}
