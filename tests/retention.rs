//! Retention on every backend: old records go in batches while the rollups keep their
//! sums, answers over whole slots stay what they were, a rebuild keeps the sums of what
//! is gone, the rollups' own horizon empties what lies before it, and a cached answer
//! never outlives what it counted.
#![cfg(feature = "sqlite")]

mod common;

use chrono::{DateTime, Duration, DurationRound, Utc};
use common::db::fresh;
use common::history::{builder, history, write};
use tower_usage::query::{Filter, Granularity, TimeRange, Tz};
use tower_usage::store::{AnswerCache, DieselStore, Retained, RetentionPolicy};
use tower_usage::{UsageRecord, UsageSink};

const WEEK_US: i64 = 7 * 86_400_000_000;

async fn connect(url: &str) -> DieselStore {
    builder(url).connect().await.unwrap()
}

fn requests_from(records: &[UsageRecord], from: DateTime<Utc>, country: &str) -> u64 {
    let country = Some(country.to_owned());
    records
        .iter()
        .filter(|r| r.started_at >= from && r.country == country)
        .count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_go_and_their_sums_stay() {
    for db in fresh("retention").await {
        let store = connect(&db.url).await;
        let now = Utc::now();
        let records = history(now);
        write(&store, &records).await;
        let start = now.duration_trunc(Duration::days(1)).unwrap() - Duration::days(101);
        let whole = Filter::new(TimeRange::between(start, now + Duration::days(1)));
        let utc: Tz = "UTC".parse().unwrap();
        let dashboard = store.dashboard(&whole, utc).await.unwrap();
        let services = store.by_service(&whole, 10).await.unwrap();
        let daily = store
            .time_series(&whole, Granularity::Day, utc)
            .await
            .unwrap();
        let mine = store.user_usage("u3", &whole, utc).await.unwrap();

        let policy = RetentionPolicy::keep_records_days(30)
            .unwrap()
            .batch_rows(97)
            .unwrap();
        let report = store.apply_retention(&policy).await.unwrap();
        let horizon = report.retained.records_before.unwrap();
        let horizon_us = horizon.timestamp_micros();
        assert_eq!(horizon_us.rem_euclid(WEEK_US), 0, "{}", db.backend);
        assert!(horizon <= now - Duration::days(30) && horizon > now - Duration::days(37));
        let kept = records.iter().filter(|r| r.started_at >= horizon).count() as u64;
        assert_eq!(report.records_removed, records.len() as u64 - kept);
        assert_eq!(store.count().await.unwrap(), kept, "{}", db.backend);
        assert_eq!(store.retained().await.unwrap(), report.retained);
        assert_eq!(
            report.retained.aggregate_only(&whole.range),
            Some(TimeRange::between(start, horizon))
        );

        // What the rollups keep is answered as before; what only records held is gone.
        let same = |what: &str| format!("{} on {}", what, db.backend);
        assert_eq!(
            store.dashboard(&whole, utc).await.unwrap(),
            dashboard,
            "{}",
            same("dashboard")
        );
        assert_eq!(store.by_service(&whole, 10).await.unwrap(), services);
        let series = store.time_series(&whole, Granularity::Day, utc).await;
        assert_eq!(series.unwrap(), daily, "{}", same("daily series"));
        let own = store.user_usage("u3", &whole, utc).await.unwrap();
        assert_eq!(own, mine, "{}", same("a heavy user's usage"));
        let countries = store.by_country(&whole, 10).await.unwrap();
        for row in &countries.rows {
            let country = row.key.as_deref().unwrap();
            let expected = requests_from(&records, horizon, country);
            assert_eq!(row.requests, expected, "{}", same(country));
        }
        let mut export = Vec::new();
        let exported = store.export_json_lines(&whole, &mut export).await.unwrap();
        assert_eq!(exported, kept);

        // A rebuild replays the records left and keeps the sums before them.
        store.rebuild_rollups().await.unwrap();
        let rebuilt = store.dashboard(&whole, utc).await.unwrap();
        assert_eq!(rebuilt, dashboard, "{}", same("dashboard after a rebuild"));
        let again = store.apply_retention(&policy).await.unwrap();
        assert_eq!((again.records_removed, again.rollup_rows_removed), (0, 0));

        // The rollups' own horizon: nothing before it, all after it.
        let policy = policy.keep_rollups_days(60).unwrap();
        let report = store.apply_retention(&policy).await.unwrap();
        let cut = report.retained.rollups_before.unwrap();
        assert!(report.rollup_rows_removed > 0, "{}", db.backend);
        assert_eq!(report.retained.records_before, Some(horizon));
        let gone = Filter::new(TimeRange::between(start, cut));
        assert_eq!(store.metrics(&gone).await.unwrap().requests, 0);
        let left = Filter::new(TimeRange::between(cut, now + Duration::days(1)));
        let expected = records.iter().filter(|r| r.started_at >= cut).count() as u64;
        assert_eq!(store.metrics(&left).await.unwrap().requests, expected);
        assert_eq!(
            report.retained.removed(&whole.range),
            Some(TimeRange::between(start, cut))
        );
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_sharing_a_start_time_go_together_in_small_batches() {
    for db in fresh("retentionties").await {
        let store = connect(&db.url).await;
        let old = Utc::now() - Duration::days(50);
        let at = |seconds| DateTime::from_timestamp(old.timestamp() + seconds, 0).unwrap();
        let records: Vec<UsageRecord> = (0..120)
            .map(|i| UsageRecord::builder().started_at(at(i / 40)).build())
            .chain(std::iter::once(UsageRecord::builder().build()))
            .collect();
        store.write_batch(&records).await.unwrap();
        let policy = RetentionPolicy::keep_records_days(7)
            .unwrap()
            .batch_rows(7)
            .unwrap();
        let report = store.apply_retention(&policy).await.unwrap();
        assert_eq!(report.records_removed, 120, "{}", db.backend);
        assert_eq!(store.count().await.unwrap(), 1);
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_answer_never_outlives_the_records_it_counted() {
    for db in fresh("retentioncache").await {
        let cached = DieselStore::builder(&db.url)
            .answer_cache(AnswerCache::new(16 << 20))
            .connect()
            .await
            .unwrap();
        let plain = DieselStore::connect(&db.url).await.unwrap();
        let now = Utc::now();
        // Starts inside a quarter hour, weeks before the horizon: that edge is read from
        // the records, five of which are there.
        let quarter = Duration::minutes(15);
        let from = (now - Duration::days(60)).duration_trunc(quarter).unwrap()
            + Duration::seconds(3 * 60 + 3);
        let mut records = history(now);
        records.extend((0..5).map(|i| {
            UsageRecord::builder()
                .started_at(from + Duration::minutes(i))
                .build()
        }));
        records.sort_by_key(|r| r.started_at);
        write(&cached, &records).await;
        let filter = Filter::new(TimeRange::between(from, now));
        let before = cached.metrics(&filter).await.unwrap();
        assert_eq!(cached.metrics(&filter).await.unwrap(), before);
        let policy = RetentionPolicy::keep_records_days(30).unwrap();
        cached.apply_retention(&policy).await.unwrap();
        let after = cached.metrics(&filter).await.unwrap();
        assert_eq!(
            after,
            plain.metrics(&filter).await.unwrap(),
            "{}",
            db.backend
        );
        let slot_end = from.duration_trunc(quarter).unwrap() + quarter;
        let edge = records
            .iter()
            .filter(|r| r.started_at >= from && r.started_at < slot_end)
            .count() as u64;
        assert!(edge >= 5);
        assert_eq!(before.requests - after.requests, edge, "{}", db.backend);
        db.cleanup().await;
    }
}

#[test]
fn what_is_aggregate_only_and_what_is_gone() {
    let day = |d: i64| DateTime::from_timestamp(d * 86_400, 0).unwrap();
    let range = TimeRange::between(day(0), day(30));
    assert_eq!(Retained::default().aggregate_only(&range), None);
    assert_eq!(Retained::default().removed(&range), None);
    let retained = Retained {
        records_before: Some(day(14)),
        rollups_before: Some(day(7)),
    };
    let between = |a, b| Some(TimeRange::between(day(a), day(b)));
    assert_eq!(retained.aggregate_only(&range), between(7, 14));
    assert_eq!(retained.removed(&range), between(0, 7));
    let late = TimeRange::between(day(10), day(12));
    assert_eq!(retained.aggregate_only(&late), between(10, 12));
    assert_eq!(retained.removed(&late), None);
    let recent = TimeRange::between(day(20), day(30));
    assert_eq!(retained.aggregate_only(&recent), None);
}
