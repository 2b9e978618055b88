//! Records spread thin over time deferred (`DieselStoreBuilder::defer_late_records`), on
//! every backend: a replay of history in random order, once settled, answers as the same
//! records written in time order; before it settles, every answer lags alike; a store
//! settles by itself once such batches stop coming; and retention counts the deferred
//! records into the sums it keeps.
#![cfg(feature = "sqlite")]

mod common;

use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use common::db::fresh;
use common::history::{answers, builder, history, shuffle, write};
use tower_usage::query::{Filter, TimeRange};
use tower_usage::store::{DieselStore, RetentionPolicy};
use tower_usage::UsageRecord;

/// The history in a fixed random order, its answers written in time order, and the
/// range they cover.
async fn shuffled() -> (Vec<UsageRecord>, String, TimeRange) {
    let now = Utc::now();
    let records = history(now);
    let source = builder("sqlite::memory:").connect().await.unwrap();
    write(&source, &records).await;
    let start =
        now.duration_trunc(chrono::Duration::days(1)).unwrap() - chrono::Duration::days(101);
    let range = TimeRange::between(start, now + chrono::Duration::days(1));
    let expected = answers(&source, range).await;
    let mut shuffled = records;
    shuffle(&mut shuffled);
    (shuffled, expected, range)
}

/// A store at `url` that defers records spread thin, settling after `quiet`, with
/// `records` written into it.
async fn replayed(url: &str, quiet: Duration, records: &[UsageRecord]) -> DieselStore {
    let store = builder(url)
        .defer_late_records(quiet)
        .connect()
        .await
        .unwrap();
    write(&store, records).await;
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shuffled_replay_lags_until_it_settles_exactly() {
    let (records, expected, range) = shuffled().await;
    for db in fresh("deferred").await {
        let store = replayed(&db.url, Duration::from_secs(3_600), &records).await;
        // The records and the rollups both miss the deferred ones.
        let count = store.count().await.unwrap();
        let metrics = store.metrics(&Filter::new(range)).await.unwrap();
        assert!(count < 2_000, "{}: {count}", db.backend);
        assert_eq!(metrics.requests, count, "{}", db.backend);
        let read = store.settle().await.unwrap();
        assert!(read >= 2_000, "{read}");
        assert_eq!(answers(&store, range).await, expected, "{}", db.backend);
        assert_eq!(store.settle().await.unwrap(), 0, "nothing left pending");
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_settles_by_itself_once_thin_batches_stop() {
    let (records, expected, range) = shuffled().await;
    for db in fresh("deferredquiet").await {
        let store = replayed(&db.url, Duration::from_millis(200), &records).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while answers(&store, range).await != expected {
            assert!(Instant::now() < deadline, "{} never settled", db.backend);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_counts_deferred_records_into_the_sums_it_keeps() {
    let (records, _, range) = shuffled().await;
    let policy = RetentionPolicy::keep_records_days(30).unwrap();
    let source = builder("sqlite::memory:").connect().await.unwrap();
    let mut in_order = records.clone();
    in_order.sort_by_key(|r| r.started_at);
    write(&source, &in_order).await;
    source.apply_retention(&policy).await.unwrap();
    let expected = answers(&source, range).await;
    for db in fresh("deferredretention").await {
        let store = replayed(&db.url, Duration::from_secs(3_600), &records).await;
        // Most records wait for their rollups in blocks retention is about to cut.
        let report = store.apply_retention(&policy).await.unwrap();
        assert!(report.records_removed > 1_000, "{report:?}");
        assert_eq!(answers(&store, range).await, expected, "{}", db.backend);
        db.cleanup().await;
    }
}
