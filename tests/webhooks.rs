//! Alert events sent to real HTTP receivers over loopback, on every backend: signed,
//! retried with backoff, never sent again once answered with a 2xx, given up after a
//! day, and not held back by an endpoint that hangs, fails or does not speak HTTP.
#![cfg(all(feature = "webhooks", feature = "sqlite", feature = "axum"))]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use common::db::fresh;
use serde_json::Value;
use tower_usage::alert::{
    Alerts, Budget, Budgets, Condition, Measure, Period, Rule, Scope, Signal,
};
use tower_usage::notify::{signature, Sender, Webhook};
use tower_usage::store::DieselStore;
use tower_usage::{UsageRecord, UsageSink};

const SECRET: &str = "a shared secret for the receivers";

/// What each path of the receiver was sent: the headers and the body of each call.
type Received = Arc<Mutex<HashMap<String, Vec<(HeaderMap, String)>>>>;

/// A receiver on loopback: `/ok` answers 200, `/flaky` 500 twice and then 200, `/hang`
/// never answers; and a port that closes every connection without a word.
async fn receivers() -> (String, String, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .route(
            "/{path}",
            post(
                |Path(path): Path<String>,
                 State(seen): State<Received>,
                 headers: HeaderMap,
                 body: String| async move {
                    let calls = {
                        let mut seen = seen.lock().unwrap();
                        let calls = seen.entry(path.clone()).or_default();
                        calls.push((headers, body));
                        calls.len()
                    };
                    match path.as_str() {
                        "flaky" if calls <= 2 => StatusCode::INTERNAL_SERVER_ERROR,
                        "hang" => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            StatusCode::OK
                        }
                        _ => StatusCode::OK,
                    }
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mute_addr = mute.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = mute.accept().await {
            drop(socket);
        }
    });
    (
        format!("http://{addr}"),
        format!("http://{mute_addr}/"),
        received,
    )
}

fn calls(received: &Received, path: &str) -> Vec<(HeaderMap, String)> {
    received
        .lock()
        .unwrap()
        .get(path)
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_every_endpoint_once_whatever_the_others_do() {
    for db in fresh("webhooks").await {
        let (base, mute, received) = receivers().await;
        let store = DieselStore::connect(&db.url).await.unwrap();
        for (name, url) in [
            ("ok", format!("{base}/ok")),
            ("flaky", format!("{base}/flaky")),
            ("hang", format!("{base}/hang")),
            ("mute", mute.clone()),
        ] {
            store
                .put_webhook(Webhook::new(name, url, SECRET))
                .await
                .unwrap();
        }
        store
            .put_rule(Rule::new("quiet", Signal::Requests, Condition::Below, 1.0))
            .await
            .unwrap();
        let now = Utc::now();
        let fired = Alerts::new(store.clone()).evaluate(now).await.unwrap();
        assert_eq!(fired.len(), 1, "{}", db.backend);

        // The first pass: the endpoint that answers gets it at once, although another
        // hangs until the timeout and two fail.
        let sender = Sender::with_timeout(store.clone(), Duration::from_millis(800));
        let started = Instant::now();
        assert_eq!(sender.send_due(now).await.unwrap(), 4, "{}", db.backend);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        let ok = calls(&received, "ok");
        assert_eq!(ok.len(), 1, "{}", db.backend);
        let (headers, body) = &ok[0];
        let event: Value = serde_json::from_str(body).unwrap();
        assert_eq!(event["type"], "alert.fired");
        assert_eq!(event["data"]["rule"], "quiet");
        assert_eq!(headers["usage-event-id"], event["id"].as_str().unwrap());
        // The signature is the HMAC of "<t>.<body>" with the shared secret.
        let signed = headers["usage-signature"].to_str().unwrap();
        let t: i64 = signed
            .trim_start_matches("t=")
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(signed, signature(SECRET.as_bytes(), t, body.as_bytes()));
        let stats = sender.stats();
        assert_eq!((stats.delivered, stats.failed), (1, 3), "{}", db.backend);

        // Nothing is due again before its backoff, and what was answered is never sent
        // again. A new sender (a restart) finds the rest in the store.
        assert_eq!(
            sender
                .send_due(now + chrono::Duration::seconds(1))
                .await
                .unwrap(),
            0
        );
        let restarted = Sender::with_timeout(store.clone(), Duration::from_millis(800));
        for minutes in [5, 30] {
            restarted
                .send_due(now + chrono::Duration::minutes(minutes))
                .await
                .unwrap();
        }
        assert_eq!(calls(&received, "ok").len(), 1, "{}", db.backend);
        assert_eq!(calls(&received, "flaky").len(), 3, "{}", db.backend);
        assert_eq!(restarted.stats().delivered, 1, "flaky, on its third try");
        // The same event id on every try.
        let flaky = calls(&received, "flaky");
        assert!(flaky
            .iter()
            .all(|(h, _)| h["usage-event-id"] == headers["usage-event-id"]));

        // A day later the two that never answered are given up.
        let day = now + chrono::Duration::hours(25);
        restarted.send_due(day).await.unwrap();
        assert_eq!(restarted.stats().given_up, 2, "{}", db.backend);
        assert_eq!(
            restarted
                .send_due(day + chrono::Duration::hours(1))
                .await
                .unwrap(),
            0
        );
        db.cleanup().await;
    }
}

/// Spawned, the evaluator and the sender do it all on their own, their handles dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_evaluation_and_sending_deliver_without_being_asked() {
    let (base, _, received) = receivers().await;
    let store = DieselStore::connect("sqlite::memory:").await.unwrap();
    store
        .put_webhook(Webhook::new("ok", format!("{base}/ok"), SECRET))
        .await
        .unwrap();
    store
        .put_rule(Rule::new("quiet", Signal::Requests, Condition::Below, 1.0))
        .await
        .unwrap();
    drop(Alerts::new(store.clone()).spawn(Duration::from_secs(1)));
    drop(Sender::new(store.clone()).spawn(Duration::from_millis(100)));
    let started = Instant::now();
    while calls(&received, "ok").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nothing delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(calls(&received, "ok").len(), 1);
}

/// A budget that passes a warning threshold tells the webhooks once, however many
/// processes find it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_warning_reaches_the_webhooks_once() {
    let (base, _, received) = receivers().await;
    let dir = std::env::temp_dir().join(format!("tu-warnings-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let url = format!("sqlite://{}", dir.display());
    let store = DieselStore::connect(&url).await.unwrap();
    store
        .put_webhook(Webhook::new("ok", format!("{base}/ok"), SECRET))
        .await
        .unwrap();
    let budget = Budget::new(
        "alice-day",
        Scope::user("alice"),
        Measure::Cost,
        1_000,
        Period::Day,
    )
    .warn_at([50, 100]);
    store.put_budget(budget).await.unwrap();
    // Alice has spent 600 of 1,000; two processes' budgets find it when they read the
    // store, and again at a reconciliation.
    let spent = UsageRecord::builder()
        .user("alice")
        .cost_micros(600)
        .build();
    store.write_batch(&[spent]).await.unwrap();
    let other = DieselStore::connect(&url).await.unwrap();
    let here = Budgets::builder(store.clone())
        .reconcile_every(None)
        .open()
        .await
        .unwrap();
    let there = Budgets::builder(other)
        .reconcile_every(None)
        .open()
        .await
        .unwrap();
    there.reconcile().await.unwrap();
    let sender = Sender::new(store.clone());
    let started = Instant::now();
    while calls(&received, "ok").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no warning delivered"
        );
        sender.send_due(Utc::now()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Time for a second one to show up, were there one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sender.send_due(Utc::now()).await.unwrap();
    let ok = calls(&received, "ok");
    assert_eq!(ok.len(), 1);
    let warning: Value = serde_json::from_str(&ok[0].1).unwrap();
    assert_eq!(warning["type"], "budget.warning");
    assert_eq!(warning["data"]["budget"], "alice-day");
    assert_eq!(warning["data"]["percent"], 50);
    // Warnings are not alert events.
    let events = store
        .alert_events(&tower_usage::query::TimeRange::last_hours(1), None, 10)
        .await
        .unwrap();
    assert!(events.is_empty());
    drop((here, there));
    let _ = std::fs::remove_file(&dir);
}

#[tokio::test]
async fn bad_webhooks_are_refused_with_what_is_wrong() {
    let store = DieselStore::connect("sqlite::memory:").await.unwrap();
    for (url, secret, says) in [
        ("ftp://example.com/x", SECRET, "URL"),
        ("not a url", SECRET, "URL"),
        ("http://example.com/x", "short", "secret"),
    ] {
        let err = store
            .put_webhook(Webhook::new("w", url, secret))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(says), "{url}: {err}");
    }
    assert!(store.webhooks().await.unwrap().is_empty());
    // An event written before any webhook exists is delivered to none.
    store
        .put_rule(Rule::new("quiet", Signal::Requests, Condition::Below, 1.0))
        .await
        .unwrap();
    Alerts::new(store.clone())
        .evaluate(Utc::now())
        .await
        .unwrap();
    assert_eq!(Sender::new(store).send_due(Utc::now()).await.unwrap(), 0);
}
