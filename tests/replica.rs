//! Analytics reads on a real PostgreSQL streaming replica: they see the store's own
//! writes at once, go to the primary while the replica is paused or stopped (counted),
//! and come back to it.
#![cfg(all(feature = "postgres", feature = "sqlite"))]

mod common;

use std::time::Duration;

use common::replica::Replicated;
use tower_usage::query::{Filter, RankBy, TimeRange};
use tower_usage::store::{DieselStore, StoreError};
use tower_usage::{UsageRecord, UsageSink};

fn batch(n: usize) -> Vec<UsageRecord> {
    (0..n)
        .map(|i| {
            UsageRecord::builder()
                .user(format!("u{}", i % 5))
                .service("chat")
                .build()
        })
        .collect()
}

fn today() -> Filter {
    Filter::new(TimeRange::last_days(1))
}

async fn connect(clusters: &Replicated) -> DieselStore {
    DieselStore::builder(&clusters.primary_url)
        .read_replica(&clusters.replica_url)
        .connect()
        .await
        .unwrap()
}

async fn sql(url: &str, statement: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.batch_execute(statement).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_replica_and_see_the_stores_own_writes_at_once() {
    let Some(clusters) = Replicated::start("own") else {
        return;
    };
    let store = connect(&clusters).await;
    let mut written = 0;
    for round in 1..=20 {
        let records = batch(10 * round);
        store.write_batch(&records).await.unwrap();
        written += records.len() as u64;
        // Read at once, with no wait for the replica: never a record short.
        let metrics = store.metrics(&today()).await.unwrap();
        assert_eq!(metrics.requests, written, "round {round}");
        let top = store
            .top_users(&today(), RankBy::Requests, 10)
            .await
            .unwrap();
        assert_eq!(top.iter().map(|u| u.requests).sum::<u64>(), written);
    }
    let stats = store.replica_stats().unwrap();
    assert!(stats.reads > 0, "{stats:?}");
    assert_eq!(stats.down, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_replica_sends_reads_to_the_primary_until_it_catches_up() {
    let Some(clusters) = Replicated::start("paused") else {
        return;
    };
    let store = connect(&clusters).await;
    store.write_batch(&batch(50)).await.unwrap();
    sql(&clusters.replica_url, "SELECT pg_wal_replay_pause()").await;
    store.write_batch(&batch(70)).await.unwrap();
    let before = store.replica_stats().unwrap();
    for _ in 0..5 {
        let metrics = store.metrics(&today()).await.unwrap();
        assert_eq!(metrics.requests, 120);
    }
    let paused = store.replica_stats().unwrap();
    assert!(paused.behind >= before.behind + 5, "{paused:?}");
    assert_eq!(paused.reads, before.reads, "{paused:?}");

    sql(&clusters.replica_url, "SELECT pg_wal_replay_resume()").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = store.metrics(&today()).await.unwrap();
        assert_eq!(metrics.requests, 120);
        if store.replica_stats().unwrap().reads > paused.reads {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never back on the replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_under_a_query_load_leaves_every_query_answered() {
    let Some(clusters) = Replicated::start("stopped") else {
        return;
    };
    let store = connect(&clusters).await;
    store.write_batch(&batch(100)).await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answered = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let metrics = store.metrics(&today()).await.unwrap();
                    assert_eq!(metrics.requests, 100);
                    store.dashboard(&today(), chrono_tz::UTC).await.unwrap();
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = store.replica_stats().unwrap();
    assert!(before.reads > 0, "{before:?}");
    clusters.stop_replica();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let stopped = store.replica_stats().unwrap();
    assert!(stopped.down > before.down, "{stopped:?}");
    clusters.start_replica();
    // Past the rest after a failure, reads go back to it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store.replica_stats().unwrap().reads <= stopped.reads + 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never back on the replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        assert!(task.await.unwrap() > 0);
    }
}

#[tokio::test]
async fn a_replica_is_refused_where_it_cannot_keep_its_promise() {
    let error = DieselStore::builder("sqlite::memory:")
        .read_replica("sqlite::memory:")
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::UnsupportedUrl { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("PostgreSQL"), "{error}");
}
