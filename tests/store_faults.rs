//! PostgreSQL taken away while the recorder writes, through a proxy the test controls.
//! Runs when `TOWER_USAGE_POSTGRES_URL` is set (as `.ci/run` does).
#![cfg(feature = "postgres")]

mod common;

use std::time::{Duration, Instant};

use common::proxy::postgres_behind_proxy;
use tower_usage::recorder::Retry;
use tower_usage::store::DieselStore;
use tower_usage::{Recorder, UsageRecord};

fn recorder_for(store: DieselStore) -> Recorder {
    Recorder::builder(store)
        .batch_size(50)
        .flush_interval(Duration::from_millis(20))
        .write_timeout(Duration::from_secs(2))
        .retry(Retry::backoff(
            Duration::from_millis(20),
            Duration::from_millis(200),
        ))
        .spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_and_counts_nothing_twice() {
    let Some((db, proxy, proxied_url)) = postgres_behind_proxy("outage").await else {
        // `fresh` fails under CI without the server, and says the skip otherwise.
        return;
    };
    let store = DieselStore::connect(&proxied_url).await.unwrap();
    let recorder = recorder_for(store);

    const SENT: u32 = 3_000;
    let started = Instant::now();
    let mut slowest_call = Duration::ZERO;
    for i in 0..SENT {
        match i {
            500 => proxy.take_down(),
            2_000 => proxy.bring_back(),
            _ => {}
        }
        let call = Instant::now();
        recorder
            .record(UsageRecord::builder().user(format!("u{i}")).build())
            .unwrap();
        slowest_call = slowest_call.max(call.elapsed());
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    recorder.shutdown().await;

    let stats = recorder.stats();
    assert!(stats.retried > 0, "the outage was felt: {stats:?}");
    assert_eq!(
        (stats.written, stats.failed, stats.dropped),
        (u64::from(SENT), 0, 0),
        "{stats:?}"
    );
    let direct = DieselStore::connect(&db.url).await.unwrap();
    assert_eq!(
        direct.count().await.unwrap(),
        u64::from(SENT),
        "every record once"
    );
    eprintln!(
        "outage test: {SENT} records in {:?}, {} retries, slowest record() call {slowest_call:?}",
        started.elapsed(),
        stats.retried
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_retried_without_double_counting() {
    let Some((db, proxy, proxied_url)) = postgres_behind_proxy("lostcommit").await else {
        // `fresh` fails under CI without the server, and says the skip otherwise.
        return;
    };
    let store = DieselStore::connect(&proxied_url).await.unwrap();
    let recorder = recorder_for(store);
    proxy.lose_next_commit_reply();
    for i in 0..200 {
        recorder
            .record(UsageRecord::builder().user(format!("u{i}")).build())
            .unwrap();
    }
    recorder.shutdown().await;

    let stats = recorder.stats();
    assert_eq!(
        proxy.lost_commits(),
        1,
        "the server committed, the client never heard"
    );
    assert!(
        stats.retried > 0,
        "the lost answer forced a retry: {stats:?}"
    );
    assert_eq!((stats.written, stats.failed), (200, 0), "{stats:?}");
    let direct = DieselStore::connect(&db.url).await.unwrap();
    assert_eq!(
        direct.count().await.unwrap(),
        200,
        "the committed batch was not written twice"
    );
    db.cleanup().await;
}
