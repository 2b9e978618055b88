//! Late records deferred (`DieselStoreBuilder::defer_late_records`), on every backend: a
//! replay of history in random order, once settled, answers as the same records written
//! in time order; before it settles, the rollups lag while the records are all there;
//! and a store settles by itself once late batches stop coming.
#![cfg(feature = "sqlite")]

mod common;

use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use common::db::fresh;
use common::history::{answers, builder, history, write};
use tower_usage::query::{Filter, TimeRange};
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
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for i in (1..shuffled.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        shuffled.swap(i, (state % (i as u64 + 1)) as usize);
    }
    (shuffled, expected, range)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shuffled_replay_lags_in_the_rollups_until_it_settles_exactly() {
    let (records, expected, range) = shuffled().await;
    for db in fresh("deferred").await {
        let store = builder(&db.url)
            .defer_late_records(Duration::from_secs(3_600))
            .connect()
            .await
            .unwrap();
        write(&store, &records).await;
        // The records are all there; the rollups miss the deferred ones.
        assert_eq!(store.count().await.unwrap(), 3_000);
        let metrics = store.metrics(&Filter::new(range)).await.unwrap();
        assert!(
            metrics.requests < 2_000,
            "{}: {}",
            db.backend,
            metrics.requests
        );
        let read = store.settle().await.unwrap();
        assert!(read >= 2_000, "{read}");
        assert_eq!(answers(&store, range).await, expected, "{}", db.backend);
        assert_eq!(store.settle().await.unwrap(), 0, "nothing left pending");
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_settles_by_itself_once_late_batches_stop() {
    let (records, expected, range) = shuffled().await;
    for db in fresh("deferredquiet").await {
        let store = builder(&db.url)
            .defer_late_records(Duration::from_millis(200))
            .connect()
            .await
            .unwrap();
        write(&store, &records).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while answers(&store, range).await != expected {
            assert!(Instant::now() < deadline, "{} never settled", db.backend);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        db.cleanup().await;
    }
}
