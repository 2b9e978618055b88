//! Alert rules on every backend: stored and checked, fired once per crossing, resolved,
//! claimed once when several evaluators see the same crossing, and their history.
#![cfg(feature = "sqlite")]

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::db::fresh;
use tower_usage::alert::{Alerts, Condition, EventKind, Rule, RuleStoreError, Signal};
use tower_usage::query::TimeRange;
use tower_usage::store::{DieselStore, StoreError};
use tower_usage::{UsageRecord, UsageSink};

fn call(at: DateTime<Utc>, status: u16, millis: u64) -> UsageRecord {
    UsageRecord::builder()
        .started_at(at)
        .service("chat")
        .model("gpt-4o")
        .status(http::StatusCode::from_u16(status).unwrap())
        .duration(Duration::from_millis(millis))
        .build()
}

fn minutes(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

#[tokio::test]
async fn a_crossing_fires_once_resolves_once_and_is_claimed_by_one_evaluator() {
    for db in fresh("alerts_fire").await {
        let store = DieselStore::connect(&db.url).await.unwrap();
        let errors = Rule::new("chat-errors", Signal::ErrorRate, Condition::Above, 0.2)
            .window_minutes(10)
            .min_requests(5);
        store.put_rule(errors).await.unwrap();
        let t0 = Utc::now() - chrono::Duration::hours(2);
        let batch: Vec<UsageRecord> = (0..10)
            .map(|i| call(t0 - minutes(2), if i % 2 == 0 { 500 } else { 200 }, 100))
            .collect();
        store.write_batch(&batch).await.unwrap();

        // Two processes evaluate the same rules at the same moment: one event.
        let other = DieselStore::connect(&db.url).await.unwrap();
        let (a, b) = (Alerts::new(store.clone()), Alerts::new(other));
        let (x, y) = tokio::join!(a.evaluate(t0), b.evaluate(t0));
        let fired: Vec<_> = x.unwrap().into_iter().chain(y.unwrap()).collect();
        assert_eq!(fired.len(), 1, "{}: {fired:?}", db.backend);
        assert_eq!(
            (fired[0].kind, fired[0].value, fired[0].requests),
            (EventKind::Fired, 0.5, 10)
        );
        // Still past the threshold a minute later: nothing new.
        assert!(
            a.evaluate(t0 + minutes(1)).await.unwrap().is_empty(),
            "{}",
            db.backend
        );
        // Too few records to say anything: it stays as it is.
        assert!(a.evaluate(t0 + minutes(30)).await.unwrap().is_empty());
        assert_eq!(
            store.firing_alerts().await.unwrap().len(),
            1,
            "{}",
            db.backend
        );

        // Healthy traffic: it resolves, once.
        let healthy: Vec<UsageRecord> = (0..20).map(|_| call(t0 + minutes(40), 200, 100)).collect();
        store.write_batch(&healthy).await.unwrap();
        let (x, y) = tokio::join!(a.evaluate(t0 + minutes(45)), b.evaluate(t0 + minutes(45)));
        let resolved: Vec<_> = x.unwrap().into_iter().chain(y.unwrap()).collect();
        assert_eq!(resolved.len(), 1, "{}", db.backend);
        assert_eq!(
            (resolved[0].kind, resolved[0].seq),
            (EventKind::Resolved, 2)
        );
        assert!(store.firing_alerts().await.unwrap().is_empty());

        let history = store
            .alert_events(&TimeRange::last_hours(6), None, 10)
            .await
            .unwrap();
        let kinds: Vec<EventKind> = history.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [EventKind::Resolved, EventKind::Fired],
            "{}",
            db.backend
        );
        assert_ne!(history[0].id, history[1].id);
        let one = store
            .alert_events(&TimeRange::last_hours(6), Some("chat-errors"), 1)
            .await;
        assert_eq!(one.unwrap().len(), 1);
        assert_eq!(a.stats().events + b.stats().events, 2);
        db.cleanup().await;
    }
}

#[tokio::test]
async fn traffic_that_stops_and_latency_that_climbs_fire_for_their_filter_only() {
    for db in fresh("alerts_signals").await {
        let store = DieselStore::connect(&db.url).await.unwrap();
        let mut stopped = Rule::new("chat-stopped", Signal::Requests, Condition::Below, 1.0);
        stopped.filter.service = Some("chat".into());
        store.put_rule(stopped).await.unwrap();
        let mut slow = Rule::new(
            "gpt4o-slow",
            Signal::LatencyP95,
            Condition::Above,
            1_000_000.0,
        )
        .window_minutes(15);
        slow.filter.model = Some("gpt-4o".into());
        store.put_rule(slow).await.unwrap();
        let alerts = Alerts::new(store.clone());
        let t0 = Utc::now() - chrono::Duration::hours(3);

        // Nothing at all: the traffic rule fires; a percentile of nothing says nothing.
        let fired = alerts.evaluate(t0).await.unwrap();
        let names: Vec<&str> = fired.iter().map(|e| e.rule.as_str()).collect();
        assert_eq!(names, ["chat-stopped"], "{}", db.backend);

        // Slow gpt-4o calls: the traffic rule resolves, the latency rule fires.
        let slow_calls: Vec<UsageRecord> = (0..20)
            .map(|i| call(t0 + minutes(1), 200, 900 + 100 * i))
            .collect();
        store.write_batch(&slow_calls).await.unwrap();
        let events = alerts.evaluate(t0 + minutes(3)).await.unwrap();
        let seen: Vec<(&str, EventKind)> =
            events.iter().map(|e| (e.rule.as_str(), e.kind)).collect();
        assert_eq!(
            seen,
            [
                ("chat-stopped", EventKind::Resolved),
                ("gpt4o-slow", EventKind::Fired)
            ],
            "{}",
            db.backend
        );
        assert!(events[1].value > 1_000_000.0);
        // Slow calls of another model do not touch the latency rule's filter.
        let firing = store.firing_alerts().await.unwrap();
        assert_eq!(firing.len(), 1);
        assert_eq!(firing[0].rule, "gpt4o-slow");
        db.cleanup().await;
    }
}

#[tokio::test]
async fn bad_rules_and_broken_rows_are_clear_errors() {
    for db in fresh("alerts_bad").await {
        let store = DieselStore::connect(&db.url).await.unwrap();
        let bad = Rule::new("rate", Signal::ErrorRate, Condition::Above, 2.0);
        match store.put_rule(bad).await {
            Err(RuleStoreError::Invalid(e)) => assert!(e.to_string().contains("threshold"), "{e}"),
            other => panic!("{other:?}"),
        }
        let nameless = Rule::new("", Signal::Requests, Condition::Below, 1.0);
        assert!(matches!(
            store.put_rule(nameless).await,
            Err(RuleStoreError::Invalid(_))
        ));
        assert!(store.rules().await.unwrap().is_empty());
        db.execute("INSERT INTO usage_alert_events (rule, seq, at_us, kind, detail) VALUES ('x', 1, 1, 'fired', 'not json')")
            .await;
        match store.firing_alerts().await {
            Err(StoreError::Corrupt(why)) => assert!(why.contains("not json"), "{why}"),
            other => panic!("{other:?}"),
        }
        db.cleanup().await;
    }
}
