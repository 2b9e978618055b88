//! Partitioned records on PostgreSQL: answers equal a plain table's, an existing table
//! is partitioned in place without losing a record, every batch's records land in a
//! partition of their own period (stragglers of other writers leave the default one
//! when it comes), retention drops whole partitions, and SQLite refuses the option.
#![cfg(all(feature = "postgres", feature = "sqlite"))]

mod common;

use chrono::{DateTime, Duration, DurationRound, Utc};
use common::db::{fresh, TestDb};
use common::history::{answers, builder, history, write};
use tower_usage::query::{Filter, TimeRange, Tz};
use tower_usage::store::{DieselStore, Partitions, RetentionPolicy, StoreError};
use tower_usage::{UsageRecord, UsageSink};

/// A fresh PostgreSQL database for `test`, if the tests have a server.
async fn postgres(test: &str) -> Option<TestDb> {
    let mut found = None;
    for db in fresh(test).await {
        if db.backend == "postgres" && found.is_none() {
            found = Some(db);
        } else {
            db.cleanup().await;
        }
    }
    found
}

async fn number(url: &str, query: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.query_one(query, &[]).await.unwrap().get(0)
}

async fn partitions(url: &str) -> i64 {
    number(
        url,
        "SELECT COUNT(*) FROM pg_inherits WHERE inhparent = 'usage_records'::regclass",
    )
    .await
}

async fn in_default(url: &str) -> i64 {
    number(url, "SELECT COUNT(*) FROM usage_records_default").await
}

async fn partitioned(url: &str, layout: Partitions) -> DieselStore {
    builder(url)
        .partition_records(layout)
        .connect()
        .await
        .unwrap()
}

fn whole(now: DateTime<Utc>) -> TimeRange {
    let start = now.duration_trunc(Duration::days(1)).unwrap() - Duration::days(101);
    // Not on a quarter hour: the edges are read from the records.
    TimeRange::between(start + Duration::seconds(7), now + Duration::days(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_store_answers_as_a_plain_one() {
    let (Some(plain_db), Some(split_db)) =
        (postgres("partplain").await, postgres("partsplit").await)
    else {
        return;
    };
    let now = Utc::now();
    let records = history(now);
    let plain = builder(&plain_db.url).connect().await.unwrap();
    let split = partitioned(&split_db.url, Partitions::Daily).await;
    write(&plain, &records).await;
    write(&split, &records).await;
    assert_eq!(
        answers(&split, whole(now)).await,
        answers(&plain, whole(now)).await
    );
    // A partition a day with records, and today's and tomorrow's; the default holds none.
    let days = partitions(&split_db.url).await;
    assert!((100..=104).contains(&days), "{days} partitions");
    assert_eq!(in_default(&split_db.url).await, 0);
    // A record far in the future gets its own partition.
    let later = UsageRecord::builder()
        .started_at(now + Duration::days(400))
        .build();
    split.write_batch(&[later]).await.unwrap();
    assert_eq!(partitions(&split_db.url).await, days + 1);
    assert_eq!(in_default(&split_db.url).await, 0);
    plain_db.cleanup().await;
    split_db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_table_is_partitioned_in_place() {
    let Some(db) = postgres("partconvert").await else {
        return;
    };
    let now = Utc::now();
    let records = history(now);
    let plain = builder(&db.url).connect().await.unwrap();
    write(&plain, &records).await;
    let before = answers(&plain, whole(now)).await;

    let split = partitioned(&db.url, Partitions::Monthly).await;
    assert_eq!(split.count().await.unwrap(), records.len() as u64);
    assert_eq!(answers(&split, whole(now)).await, before);
    // The old table, the default partition, and next month's.
    assert_eq!(partitions(&db.url).await, 3);
    let legacy = number(&db.url, "SELECT COUNT(*) FROM usage_records_legacy").await;
    assert_eq!(legacy, records.len() as i64);
    // Connecting again changes nothing.
    let again = partitioned(&db.url, Partitions::Monthly).await;
    assert_eq!(partitions(&db.url).await, 3);

    // A writer that does not partition puts a record of a month without a partition
    // into the default one; the first partitioned batch of that month moves it out.
    let far = now + Duration::days(100);
    plain
        .write_batch(&[UsageRecord::builder().started_at(far).build()])
        .await
        .unwrap();
    assert_eq!(in_default(&db.url).await, 1);
    again
        .write_batch(&[UsageRecord::builder()
            .started_at(far + Duration::seconds(1))
            .build()])
        .await
        .unwrap();
    assert_eq!(in_default(&db.url).await, 0);
    assert_eq!(partitions(&db.url).await, 4);
    assert_eq!(again.count().await.unwrap(), records.len() as u64 + 2);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_whole_partitions() {
    let Some(db) = postgres("partretention").await else {
        return;
    };
    let now = Utc::now();
    let records = history(now);
    let store = partitioned(&db.url, Partitions::Daily).await;
    write(&store, &records).await;
    let range = TimeRange::between(whole(now).from - Duration::seconds(7), whole(now).to);
    let utc: Tz = "UTC".parse().unwrap();
    let dashboard = store.dashboard(&Filter::new(range), utc).await.unwrap();
    let days = partitions(&db.url).await;

    let policy = RetentionPolicy::keep_records_days(30).unwrap();
    let report = store.apply_retention(&policy).await.unwrap();
    let horizon = report.retained.records_before.unwrap();
    let gone = records.iter().filter(|r| r.started_at < horizon).count() as u64;
    assert_eq!(report.records_removed, gone);
    // The horizon starts a day: every day before it went whole.
    let days_gone = days - partitions(&db.url).await;
    assert_eq!(report.partitions_dropped, days_gone as u64);
    assert!(days_gone >= 60, "{days_gone}");
    assert_eq!(store.count().await.unwrap(), records.len() as u64 - gone);
    assert_eq!(
        store.dashboard(&Filter::new(range), utc).await.unwrap(),
        dashboard
    );
    db.cleanup().await;
}

#[tokio::test]
async fn sqlite_refuses_partitioned_records() {
    let refused = DieselStore::builder("sqlite::memory:")
        .partition_records(Partitions::Daily)
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::UnsupportedUrl { reason, .. } if reason.contains("PostgreSQL")),
        "{refused}"
    );
}
