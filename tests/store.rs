//! The store's conformance suite: every test runs on SQLite, and on PostgreSQL and
//! MySQL/MariaDB when `TOWER_USAGE_POSTGRES_URL` / `TOWER_USAGE_MYSQL_URL` are set.
#![cfg(feature = "store")]

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::db::{fresh, TestDb};
use tower_usage::store::{DieselStore, StoreError};
use tower_usage::{
    ClientPlatform, Outcome, Recorder, SinkError, TokenUsage, UsageRecord, UsageSink,
};

/// Storage keeps microseconds.
fn at_micros(record: &UsageRecord) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(record.started_at.timestamp_micros()).unwrap()
}

fn full_record(i: u32) -> UsageRecord {
    let mut record = UsageRecord::builder()
        .user(format!("user-{i}"))
        .service("chat")
        .model("gpt-4o")
        .requested_model("gpt-4o-latest")
        .provider("openai")
        .country("DE")
        .route("/v1/chat/completions")
        .method(http::Method::POST)
        .status(http::StatusCode::OK)
        .ttfb(Duration::from_micros(1_500 + u64::from(i)))
        .duration(Duration::from_micros(250_000))
        .request_bytes(321)
        .response_bytes(4_096)
        .client(ClientPlatform::Sdk)
        .tokens(
            TokenUsage::new(1_000, 100)
                .with_cached_input(10)
                .with_cache_write_input(20),
        )
        .cost_micros(2_500)
        .metadata(serde_json::json!({"i": i, "tags": ["a", "b"]}))
        .build();
    record.started_at = at_micros(&record);
    record
}

async fn each_backend(test: &str, f: impl AsyncFn(&TestDb, DieselStore)) {
    for db in fresh(test).await {
        let store = DieselStore::connect(&db.url)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", db.backend));
        assert_eq!(store.backend_name(), db.backend);
        f(&db, store).await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn every_field_survives_the_round_trip() {
    each_backend("roundtrip", async |db, store| {
        let mut records: Vec<_> = (0..3).map(full_record).collect();
        let mut bare = UsageRecord::builder().build();
        bare.started_at = at_micros(&bare);
        records.push(bare);
        store.write_batch(&records).await.unwrap();
        let mut back = store.recent(10).await.unwrap();
        back.sort_by_key(|r| r.id);
        records.sort_by_key(|r| r.id);
        assert_eq!(back, records, "{}", db.backend);
    })
    .await;
}

#[tokio::test]
async fn a_batch_written_twice_counts_once() {
    each_backend("twice", async |db, store| {
        let records: Vec<_> = (0..50).map(full_record).collect();
        store.write_batch(&records).await.unwrap();
        store.write_batch(&records).await.unwrap();
        store.write_batch(&records[10..20]).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 50, "{}", db.backend);
    })
    .await;
}

#[tokio::test]
async fn a_batch_larger_than_one_statement_is_written_whole() {
    each_backend("large", async |db, store| {
        let records: Vec<_> = (0..4_500).map(full_record).collect();
        store.write_batch(&records).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 4_500, "{}", db.backend);
    })
    .await;
}

#[tokio::test]
async fn hostile_and_oversized_text_is_kept_exactly_or_cut_cleanly() {
    each_backend("hostile", async |db, store| {
        let hostile = "'; DROP TABLE usage_records; -- \"ünï€ødé\" 🚀 \\ % _";
        let mut record = UsageRecord::builder()
            .user(hostile)
            .service("ß".repeat(500))
            .metadata(serde_json::json!({"q": hostile}))
            .build();
        record.started_at = at_micros(&record);
        store
            .write_batch(std::slice::from_ref(&record))
            .await
            .unwrap();
        let back = store.recent(1).await.unwrap().remove(0);
        assert_eq!(back.user.as_deref(), Some(hostile), "{}", db.backend);
        assert_eq!(back.service, Some("ß".repeat(128)), "{}", db.backend);
        assert_eq!(back.metadata["q"], hostile);
    })
    .await;
}

#[tokio::test]
async fn records_flow_from_the_recorder_into_the_store() {
    each_backend("recorder", async |db, store| {
        let recorder = Recorder::builder(store.clone())
            .batch_size(128)
            .flush_interval(Duration::from_millis(10))
            .spawn();
        for i in 0..1_000 {
            recorder.record(full_record(i)).unwrap();
        }
        recorder.shutdown().await;
        let stats = recorder.stats();
        assert_eq!((stats.written, stats.failed), (1_000, 0), "{}", db.backend);
        assert_eq!(store.count().await.unwrap(), 1_000, "{}", db.backend);
    })
    .await;
}

#[tokio::test]
async fn one_bad_record_does_not_lose_the_rest_of_its_batch() {
    each_backend("badrecord", async |db, store| {
        let mut records: Vec<_> = (0..10).map(full_record).collect();
        records[4].user = Some("nul\0byte".into());
        let result = store.write_batch(&records).await;
        if db.backend == "postgres" {
            // PostgreSQL refuses NUL in text: that record alone is rejected, with a reason.
            match result {
                Err(SinkError::Rejected { count: 1, reason }) => assert!(!reason.is_empty()),
                other => panic!("expected one rejection, got {other:?}"),
            }
            assert_eq!(store.count().await.unwrap(), 9);
        } else {
            result.unwrap();
            assert_eq!(store.count().await.unwrap(), 10, "{}", db.backend);
        }
    })
    .await;
}

#[tokio::test]
async fn migrations_are_idempotent_and_reversible() {
    each_backend("migrations", async |db, store| {
        store.write_batch(&[full_record(1)]).await.unwrap();
        store.migrate().await.unwrap();
        assert_eq!(store.count().await.unwrap(), 1, "{}", db.backend);
        store.revert_migrations().await.unwrap();
        assert!(
            matches!(store.count().await, Err(StoreError::Query { .. })),
            "{}",
            db.backend
        );
        store.migrate().await.unwrap();
        assert_eq!(store.count().await.unwrap(), 0, "{}", db.backend);
    })
    .await;
}

#[tokio::test]
async fn skipping_migrations_leaves_the_schema_alone() {
    for db in fresh("nomigrate").await {
        let store = DieselStore::builder(&db.url)
            .run_migrations(false)
            .connect()
            .await
            .unwrap();
        assert!(store.count().await.is_err(), "{}: no table yet", db.backend);
        store.migrate().await.unwrap();
        assert_eq!(store.count().await.unwrap(), 0);
        db.cleanup().await;
    }
}

#[tokio::test]
async fn an_in_memory_sqlite_store_is_one_database() {
    let store = DieselStore::builder("sqlite::memory:")
        .pool_size(8)
        .connect()
        .await
        .unwrap();
    store
        .write_batch(&[full_record(1), full_record(2)])
        .await
        .unwrap();
    assert_eq!(store.count().await.unwrap(), 2);
}

#[tokio::test]
async fn bad_urls_give_clear_errors_with_the_password_masked() {
    let err = DieselStore::connect("oracle://scott:tiger@db/orcl")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }));
    let text = err.to_string();
    assert!(
        text.contains("oracle://scott:***@db/orcl") && !text.contains("tiger"),
        "{text}"
    );

    let err = DieselStore::connect("sqlite:///no/such/dir/usage.db")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("/no/such/dir/usage.db"), "{err}");

    #[cfg(feature = "postgres")]
    {
        let err = DieselStore::builder("postgres://app:s3cret@127.0.0.1:1/usage")
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Connect { .. }), "{text}");
        assert!(
            text.contains("postgres://app:***@127.0.0.1:1/usage") && !text.contains("s3cret"),
            "{text}"
        );
    }
    #[cfg(not(feature = "postgres"))]
    {
        let err = DieselStore::connect("postgres://h/db").await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::BackendNotEnabled {
                    feature: "postgres",
                    ..
                }
            ),
            "{err}"
        );
    }
    #[cfg(feature = "mysql")]
    {
        let err = DieselStore::builder("mysql://root:pw@127.0.0.1:1/usage")
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Connect { .. }), "{err}");
        assert!(!err.to_string().contains(":pw@"), "{err}");
    }
}

#[tokio::test]
async fn outcome_and_status_are_stored_independently() {
    each_backend("outcome", async |db, store| {
        let mut record = UsageRecord::builder()
            .status(http::StatusCode::OK)
            .outcome(Outcome::Cancelled)
            .build();
        record.started_at = at_micros(&record);
        store
            .write_batch(std::slice::from_ref(&record))
            .await
            .unwrap();
        let back = store.recent(1).await.unwrap().remove(0);
        assert_eq!(
            (back.status, back.outcome),
            (Some(http::StatusCode::OK), Outcome::Cancelled),
            "{}",
            db.backend
        );
    })
    .await;
}

#[cfg(feature = "api")]
#[tokio::test]
async fn the_audit_trail_keeps_every_access_once_and_reads_back_filtered() {
    use tower_usage::query::{AuditQuery, TimeRange};
    for db in fresh("audit").await {
        let store = DieselStore::connect(&db.url).await.unwrap();
        let sink = store.audit_sink();
        let base = Utc::now() - chrono::Duration::minutes(5);
        let access = |second: i64, subject: Option<&str>, status: u16, reason: Option<&str>| {
            let mut metadata =
                serde_json::json!({"role": "user", "query": "last=24h&service=a%27b"});
            if let Some(reason) = reason {
                metadata["reason"] = reason.into();
            }
            let mut builder = UsageRecord::builder()
                .started_at(base + chrono::Duration::seconds(second))
                .method(http::Method::GET)
                .route("/api/analytics/metrics")
                .status(http::StatusCode::from_u16(status).unwrap())
                .duration(Duration::from_micros(1_234))
                .metadata(metadata);
            if let Some(subject) = subject {
                builder = builder.user(subject);
            }
            builder.build()
        };
        let long = "x".repeat(5_000);
        let batch = vec![
            access(1, Some("alice"), 200, None),
            access(2, Some("bob\0nul"), 403, Some("admins only")),
            access(3, None, 401, Some(&long)),
            access(4, Some("alice"), 429, Some("too many requests")),
        ];
        sink.write_batch(&batch).await.unwrap();
        // A retried batch adds nothing.
        sink.write_batch(&batch).await.unwrap();

        let hour = TimeRange::last(Duration::from_secs(3_600));
        let all = store.audit_log(&AuditQuery::new(hour)).await.unwrap();
        let statuses: Vec<_> = all.iter().map(|e| e.status).collect();
        assert_eq!(
            statuses,
            [Some(429), Some(401), Some(403), Some(200)],
            "{}",
            db.backend
        );
        assert_eq!(all[3].id, batch[0].id);
        assert_eq!(all[3].endpoint, "/api/analytics/metrics");
        assert_eq!(all[3].method, "GET");
        assert_eq!(all[3].role.as_deref(), Some("user"));
        assert_eq!(all[3].query.as_deref(), Some("last=24h&service=a%27b"));
        assert_eq!(all[3].duration_us, 1_234);
        assert_eq!(all[3].outcome, Outcome::Success);
        assert_eq!(all[2].subject.as_deref(), Some("bob\u{FFFD}nul"));
        assert_eq!(all[1].reason.as_deref().map(str::len), Some(512));

        let alice = AuditQuery::new(hour).subject("alice").refused_only();
        let refused = store.audit_log(&alice).await.unwrap();
        assert_eq!(refused.len(), 1, "{}", db.backend);
        assert_eq!(refused[0].reason.as_deref(), Some("too many requests"));
        let newest = store
            .audit_log(&AuditQuery::new(hour).limit(1))
            .await
            .unwrap();
        assert_eq!(newest[0].status, Some(429));
        assert!(store
            .audit_log(&AuditQuery::new(hour).limit(0))
            .await
            .is_err());
        // The audit trail is apart from the usage records.
        assert_eq!(store.count().await.unwrap(), 0);
        db.cleanup().await;
    }
}
