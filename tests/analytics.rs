//! The analytics conformance suite: every query on every backend, with and without the
//! rollups, against the plain-Rust reference in `common/reference.rs`.
#![cfg(feature = "store")]

mod common;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::db::fresh;
use common::reference;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::Value;
use tower_usage::query::{
    Dimension, Filter, Granularity, QueryError, RankBy, StatusClass, TimeRange, Tz,
};
use tower_usage::store::{AnswerCache, DieselStore, StoreError};
use tower_usage::{ClientPlatform, Outcome, TokenUsage, UsageRecord, UsageSink};

/// Names that differ only by a trailing space, case, Unicode normalization form or an
/// invisible character are different names on every backend.
const USERS: &[&str] = &[
    "alice",
    "alice ",
    "Alice",
    "bob",
    "carol",
    "O'Brien; DROP TABLE x",
    "\u{e9}mile",
    "e\u{301}mile",
    "da\u{200b}ve",
    "dave",
];
const SERVICES: &[&str] = &["chat", "chat ", "embed", "mcp"];
const MODELS: &[&str] = &["gpt-4o", "GPT-4o", "claude", "llama"];
const PROVIDERS: &[&str] = &["openai", "anthropic"];
const COUNTRIES: &[&str] = &["DE", "IN", "US"];
const CLIENTS: &[ClientPlatform] = &[
    ClientPlatform::Browser,
    ClientPlatform::Sdk,
    ClientPlatform::Cli,
    ClientPlatform::Unknown,
];
const OUTCOMES: &[Outcome] = &[
    Outcome::Success,
    Outcome::Success,
    Outcome::ClientError,
    Outcome::ServerError,
    Outcome::Cancelled,
];
const STATUSES: &[Option<u16>] = &[Some(200), Some(201), Some(302), Some(404), Some(503), None];
const ZONES: &[&str] = &[
    "UTC",
    "Asia/Kolkata",
    "America/New_York",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    // Midnight comes twice when the clocks go back (late October).
    "Atlantic/Azores",
    // Midnight is skipped in March and comes twice in November.
    "America/Havana",
];
const QUARTER: i64 = 900_000_000;
const DAY: i64 = 86_400_000_000;
/// Each case's records lie in a window of their own, so cases share one database.
const WINDOW: i64 = 10 * DAY;

fn micros(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t).unwrap()
}

/// The start of case `i`'s window: around a daylight-saving change (November or March).
fn window_start(i: usize) -> i64 {
    let year = 2010 + (i / 2) as i32;
    let (month, day) = if i.is_multiple_of(2) {
        (10, 28)
    } else {
        (3, 4)
    };
    Utc.with_ymd_and_hms(year, month, day, 0, 0, 0)
        .unwrap()
        .timestamp_micros()
}

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &'static [T]) -> impl Strategy<Value = T> {
    (0..items.len()).prop_map(move |i| items[i].clone())
}

fn maybe<T: Clone + std::fmt::Debug + 'static>(
    items: &'static [T],
    none_weight: u32,
) -> impl Strategy<Value = Option<T>> {
    prop_oneof![none_weight => Just(None), 3 => pick(items).prop_map(Some)]
}

/// An offset into a window: anywhere, or on (or one microsecond off) a slot or day edge.
fn offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => 0..WINDOW,
        1 => (0..WINDOW / QUARTER, -1i64..=1).prop_map(|(q, d)| (q * QUARTER + d).clamp(0, WINDOW - 1)),
        1 => (0..WINDOW / DAY, -1i64..=1).prop_map(|(q, d)| (q * DAY + d).clamp(0, WINDOW - 1)),
    ]
}

#[derive(Debug, Clone)]
struct Spec {
    at: i64,
    user: Option<&'static str>,
    service: Option<&'static str>,
    model: Option<&'static str>,
    provider: Option<&'static str>,
    country: Option<&'static str>,
    client: ClientPlatform,
    outcome: Outcome,
    status: Option<u16>,
    duration: u64,
    ttfb: Option<u64>,
    tokens: (u64, u64, u64),
    cost: Option<i64>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        offset(),
        (
            maybe(USERS, 1),
            maybe(SERVICES, 1),
            maybe(MODELS, 1),
            maybe(PROVIDERS, 1),
            maybe(COUNTRIES, 1),
        ),
        (pick(CLIENTS), pick(OUTCOMES), pick(STATUSES)),
        (
            prop_oneof![Just(0u64), 1..2_000u64, 1..60_000_000u64],
            proptest::option::of(0..5_000_000u64),
        ),
        (
            (0..5_000u64, 0..2_000u64, 0..100u64),
            proptest::option::of(-100..100_000i64),
        ),
    )
        .prop_map(
            |(
                at,
                (user, service, model, provider, country),
                (client, outcome, status),
                (duration, ttfb),
                (tokens, cost),
            )| Spec {
                at,
                user,
                service,
                model,
                provider,
                country,
                client,
                outcome,
                status,
                duration,
                ttfb,
                tokens: (tokens.0 + tokens.2, tokens.1, tokens.2),
                cost,
            },
        )
}

fn record(base: i64, s: &Spec) -> UsageRecord {
    let mut b = UsageRecord::builder()
        .started_at(micros(base + s.at))
        .outcome(s.outcome)
        .client(s.client)
        .duration(Duration::from_micros(s.duration))
        .tokens(TokenUsage::new(s.tokens.0, s.tokens.1).with_cached_input(s.tokens.2));
    if let Some(v) = s.user {
        b = b.user(v);
    }
    if let Some(v) = s.service {
        b = b.service(v);
    }
    if let Some(v) = s.model {
        b = b.model(v);
    }
    if let Some(v) = s.provider {
        b = b.provider(v);
    }
    if let Some(v) = s.country {
        b = b.country(v);
    }
    if let Some(v) = s.ttfb {
        b = b.ttfb(Duration::from_micros(v));
    }
    match s.cost {
        Some(v) => b = b.cost_micros(v),
        // As the recorder's pricing marks a model it has no price for.
        None if s.duration.is_multiple_of(3) => {
            b = b
                .cost_micros(0)
                .metadata(serde_json::json!({"unpriced": true}));
        }
        None => {}
    }
    let mut r = b.build();
    // The status setter derives the outcome; keep the drawn one.
    r.status = s.status.map(|c| http::StatusCode::from_u16(c).unwrap());
    r
}

#[derive(Debug, Clone)]
struct Query {
    from: i64,
    to: i64,
    user: Option<&'static str>,
    service: Option<&'static str>,
    model: Option<&'static str>,
    provider: Option<&'static str>,
    country: Option<&'static str>,
    client: Option<ClientPlatform>,
    outcome: Option<Outcome>,
    status: Option<StatusClass>,
    zone: &'static str,
    granularity: Granularity,
    limit: usize,
    rank: RankBy,
}

fn query() -> impl Strategy<Value = Query> {
    (
        (offset(), offset(), any::<bool>()),
        (
            maybe(USERS, 8),
            maybe(SERVICES, 4),
            maybe(MODELS, 6),
            maybe(PROVIDERS, 6),
            maybe(COUNTRIES, 8),
        ),
        (
            maybe(CLIENTS, 8),
            maybe(OUTCOMES, 6),
            maybe(
                &[
                    StatusClass::Success,
                    StatusClass::ClientError,
                    StatusClass::None,
                ][..],
                8,
            ),
        ),
        (
            pick(ZONES),
            pick(
                &[
                    Granularity::Hour,
                    Granularity::Day,
                    Granularity::Day,
                    Granularity::Week,
                    Granularity::Month,
                ][..],
            ),
            1..4usize,
            pick(&[RankBy::Requests, RankBy::Tokens, RankBy::Cost][..]),
        ),
    )
        .prop_map(
            |(
                (a, b, whole),
                (user, service, model, provider, country),
                (client, outcome, status),
                (zone, granularity, limit, rank),
            )| {
                let (from, to) = if whole {
                    (0, WINDOW)
                } else {
                    (a.min(b), a.max(b) + 1)
                };
                Query {
                    from,
                    to,
                    user,
                    service,
                    model,
                    provider,
                    country,
                    client,
                    outcome,
                    status,
                    zone,
                    granularity,
                    limit,
                    rank,
                }
            },
        )
}

fn filter(base: i64, q: &Query) -> Filter {
    let mut f = Filter::new(TimeRange::between(
        micros(base + q.from),
        micros(base + q.to),
    ));
    f.user = q.user.map(str::to_owned);
    f.service = q.service.map(str::to_owned);
    f.model = q.model.map(str::to_owned);
    f.provider = q.provider.map(str::to_owned);
    f.country = q.country.map(str::to_owned);
    f.client = q.client;
    f.outcome = q.outcome;
    f.status_class = q.status;
    f
}

fn json<T: serde::Serialize>(value: T) -> Value {
    serde_json::to_value(value).unwrap()
}

/// Checks every query of `q` on `store` against the reference.
async fn check(store: &DieselStore, records: &[UsageRecord], f: &Filter, q: &Query, label: &str) {
    let tz: Tz = q.zone.parse().unwrap();
    let ctx = format!("{label} {q:?}");
    reference::assert_same(
        &json(store.metrics(f).await.unwrap()),
        &reference::metrics(records, f),
        &format!("metrics {ctx}"),
    );
    for d in [
        Dimension::Service,
        Dimension::Model,
        Dimension::Provider,
        Dimension::Client,
        Dimension::Country,
        Dimension::User,
    ] {
        reference::assert_same(
            &json(store.breakdown(f, d, q.limit).await.unwrap()),
            &reference::breakdown(records, f, d, q.limit),
            &format!("breakdown {d:?} {ctx}"),
        );
    }
    reference::assert_same(
        &json(store.time_series(f, q.granularity, tz).await.unwrap()),
        &reference::time_series(records, f, q.granularity, tz, None),
        &format!("series {ctx}"),
    );
    reference::assert_same(
        &json(store.latency_series(f, q.granularity, tz).await.unwrap()),
        &reference::latency_series(records, f, q.granularity, tz),
        &format!("latency series {ctx}"),
    );
    for d in [Dimension::Service, Dimension::User] {
        reference::assert_same(
            &json(
                store
                    .time_series_split(f, q.granularity, tz, d, q.limit)
                    .await
                    .unwrap(),
            ),
            &reference::time_series(records, f, q.granularity, tz, Some((d, q.limit))),
            &format!("split series {d:?} {ctx}"),
        );
    }
    reference::assert_same(
        &json(store.top_users(f, q.rank, q.limit).await.unwrap()),
        &reference::top_users(records, f, q.rank, q.limit),
        &format!("top users {ctx}"),
    );
    reference::assert_same(
        &json(store.peak_hours(f, tz).await.unwrap()),
        &reference::peak_hours(records, f, tz),
        &format!("peak hours {ctx}"),
    );
    let user = q.user.unwrap_or("alice");
    let usage = json(store.user_usage(user, f, tz).await.unwrap());
    let want = user_usage_reference(records, f, user, tz);
    reference::assert_same(&usage, &want, &format!("user usage {ctx}"));
    let dashboard = json(store.dashboard(f, tz).await.unwrap());
    let want = serde_json::json!({
        "metrics": reference::metrics(records, f),
        "by_service": reference::breakdown(records, f, Dimension::Service, 10),
        "by_model": reference::breakdown(records, f, Dimension::Model, 10),
        "daily": reference::time_series(records, f, Granularity::Day, tz, None),
        "top_users": reference::top_users(records, f, RankBy::Requests, 10),
        "peak_hours": reference::peak_hours(records, f, tz),
    });
    reference::assert_same(&dashboard, &want, &format!("dashboard {ctx}"));
    let mut lines = Vec::new();
    let n = store.export_json_lines(f, &mut lines).await.unwrap();
    let exported: Vec<UsageRecord> = String::from_utf8(lines)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut expected: Vec<UsageRecord> =
        reference::select(records, f).into_iter().cloned().collect();
    expected.sort_by_key(|r| (r.started_at, *r.id.as_bytes()));
    assert_eq!(n as usize, expected.len(), "export count {ctx}");
    assert_eq!(exported, expected, "export {ctx}");
}

/// `cases` cases of up to `records` random records, three random queries and a batch
/// size, the same on every run.
fn cases_of(cases: usize, records: usize) -> Vec<(Vec<Spec>, Vec<Query>, usize)> {
    let mut runner = TestRunner::deterministic();
    let data = prop::collection::vec(spec(), 0..records);
    (0..cases)
        .map(|_| {
            let specs = data.new_tree(&mut runner).unwrap().current();
            let queries = prop::collection::vec(query(), 3)
                .new_tree(&mut runner)
                .unwrap()
                .current();
            let batch = (1..20usize).new_tree(&mut runner).unwrap().current();
            (specs, queries, batch)
        })
        .collect()
}

/// Random records, written in random batches with some written twice, then random
/// queries; every answer must equal the reference, read from rollups or raw rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_matches_the_reference_on_every_backend() {
    let cases: usize = std::env::var("TOWER_USAGE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let generated = cases_of(cases, 80);
    for db in fresh("conformance").await {
        // Users with two records in a sealed block get detail rows: most of them.
        let rolled = DieselStore::builder(&db.url)
            .user_detail_min_records(2)
            .connect()
            .await
            .unwrap();
        let raw = DieselStore::builder(&db.url)
            .read_rollups(false)
            .connect()
            .await
            .unwrap();
        for (i, (specs, queries, batch)) in generated.iter().enumerate() {
            let base = window_start(i);
            let records: Vec<UsageRecord> = specs.iter().map(|s| record(base, s)).collect();
            for chunk in records.chunks(*batch) {
                rolled.write_batch(chunk).await.unwrap();
            }
            // A retried batch: nothing may count twice.
            let again: Vec<UsageRecord> = records.iter().step_by(3).cloned().collect();
            rolled.write_batch(&again).await.unwrap();
            for q in queries {
                let f = filter(base, q);
                check(
                    &rolled,
                    &records,
                    &f,
                    q,
                    &format!("{} rollups case {i}", db.backend),
                )
                .await;
                check(
                    &raw,
                    &records,
                    &f,
                    q,
                    &format!("{} raw case {i}", db.backend),
                )
                .await;
            }
        }
        db.cleanup().await;
    }
}

/// The same checks through an answer cache, over windows around the present (so that
/// ranges are cut into settled days, today's closed slots and the open tail): cold,
/// warm, and after each later case wrote records into slots earlier answers were read
/// from, through two stores sharing one cache (two writers of one process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_matches_the_reference_through_the_answer_cache() {
    for db in fresh("answer_cache").await {
        let cache = AnswerCache::new(16 << 20);
        check_through_caches(&db, &cache, &cache, Writers::Both).await;
        db.cleanup().await;
    }
}

/// The same through two replicas, each with its own cache, sharing their write log and
/// their whole answers through the machine's Redis: each one's answers must hold the
/// other's writes, whether read by itself or taken from the other.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_matches_the_reference_across_replicas_sharing_redis() {
    let Some(redis) = common::redis::url() else {
        return;
    };
    for db in fresh("answer_cache_redis").await {
        let prefix = common::redis::prefix("answers");
        let one = AnswerCache::shared(16 << 20, &redis, &prefix).unwrap();
        let two = AnswerCache::shared(16 << 20, &redis, &prefix).unwrap();
        // Only the second replica writes: the first learns of every write from Redis.
        check_through_caches(&db, &one, &two, Writers::SecondOnly).await;
        assert_eq!(one.stats().shared_failures, 0);
        assert_eq!(two.stats().shared_failures, 0);
        assert!(
            two.stats().shared_hits > 0,
            "the second replica takes answers the first kept in Redis: {:?}",
            two.stats()
        );
        db.cleanup().await;
    }
}

/// Redis taken away from one replica (through a proxy) while it writes: its reads are
/// answered uncached and exact, and once Redis is back, the other replica's answers
/// kept from before hold those writes too.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_stay_exact_while_redis_is_away_and_after() {
    let Some(redis) = common::redis::url() else {
        return;
    };
    let (proxy, through) = common::redis::behind_proxy(&redis).await;
    let db = fresh("answer_cache_outage").await.remove(0);
    let prefix = common::redis::prefix("answers-outage");
    let away = AnswerCache::shared(1 << 20, &through, &prefix).unwrap();
    let steady = AnswerCache::shared(1 << 20, &redis, &prefix).unwrap();
    let writer = DieselStore::builder(&db.url)
        .answer_cache(away.clone())
        .connect()
        .await
        .unwrap();
    let reader = DieselStore::builder(&db.url)
        .answer_cache(steady.clone())
        .connect()
        .await
        .unwrap();
    let now = Utc::now();
    let week = Filter::new(TimeRange::between(
        now - chrono::Duration::days(7),
        now + chrono::Duration::days(1),
    ));
    let batch = |n: usize| -> Vec<UsageRecord> {
        (0..n)
            .map(|i| {
                UsageRecord::builder()
                    .started_at(now - chrono::Duration::hours(i as i64 % 100))
                    .user(format!("u{i}"))
                    .build()
            })
            .collect()
    };
    writer.write_batch(&batch(10)).await.unwrap();
    for store in [&writer, &reader] {
        assert_eq!(store.metrics(&week).await.unwrap().requests, 10);
        assert_eq!(store.metrics(&week).await.unwrap().requests, 10);
    }
    assert!(steady.stats().hits > 0);

    proxy.take_down();
    // Late records (hours old, in slots the kept answers read) while the writer cannot
    // stamp them.
    writer.write_batch(&batch(5)).await.unwrap();
    assert_eq!(
        writer.metrics(&week).await.unwrap().requests,
        15,
        "uncached, exact"
    );
    assert!(away.stats().shared_failures > 0);

    proxy.bring_back();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // The writer's first read after the outage tells every replica it lost track.
    assert_eq!(writer.metrics(&week).await.unwrap().requests, 15);
    assert_eq!(
        reader.metrics(&week).await.unwrap().requests,
        15,
        "kept before, stale now"
    );
    assert_eq!(steady.stats().shared_failures, 0);
    db.cleanup().await;
}

/// Which of the two stores write in [`check_through_caches`].
#[derive(Clone, Copy, PartialEq)]
enum Writers {
    Both,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    SecondOnly,
}

/// Generated cases written through a store over `one` and a store over `two` (by turns,
/// or through the second only); every query asked of both, cold, warm and after the
/// next case's writes, and checked against the reference.
async fn check_through_caches(
    db: &common::db::TestDb,
    one: &AnswerCache,
    two: &AnswerCache,
    writers: Writers,
) {
    let cases: usize = std::env::var("TOWER_USAGE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(4, |n: usize| n.div_ceil(3));
    let generated = cases_of(cases, 60);
    // Every case's window: from eight days ago (midnight UTC) to two days ahead.
    let base = (Utc::now().timestamp_micros().div_euclid(DAY) - 8) * DAY;
    let first = DieselStore::builder(&db.url)
        .user_detail_min_records(2)
        .answer_cache(one.clone())
        .connect()
        .await
        .unwrap();
    let second = DieselStore::builder(&db.url)
        .user_detail_min_records(2)
        .answer_cache(two.clone())
        .connect()
        .await
        .unwrap();
    let stores = [&first, &second];
    let mut all: Vec<UsageRecord> = Vec::new();
    let mut previous: Vec<Query> = Vec::new();
    for (i, (specs, queries, batch)) in generated.iter().enumerate() {
        let records: Vec<UsageRecord> = specs.iter().map(|s| record(base, s)).collect();
        for (n, chunk) in records.chunks(*batch).enumerate() {
            let writer = match writers {
                Writers::Both => stores[n % 2],
                Writers::SecondOnly => stores[1],
            };
            writer.write_batch(chunk).await.unwrap();
        }
        all.extend(records);
        // The last case's questions again: their answers were kept, and this case's
        // records fall into some of the slots they read.
        for q in &previous {
            let f = filter(base, q);
            for (s, store) in stores.iter().enumerate() {
                let label = format!("{} store {s} cached after writes case {i}", db.backend);
                check(store, &all, &f, q, &label).await;
            }
        }
        for q in queries {
            let f = filter(base, q);
            for pass in ["cold", "warm"] {
                for (s, store) in stores.iter().enumerate() {
                    let label = format!("{} store {s} cached {pass} case {i}", db.backend);
                    check(store, &all, &f, q, &label).await;
                }
            }
        }
        previous = queries.clone();
    }
    for cache in [one, two] {
        let stats = cache.stats();
        assert!(stats.hits > 0 && stats.misses > 0, "{stats:?}");
        assert!(stats.entries > 0 && stats.bytes > 0, "{stats:?}");
        if cases > 1 {
            assert!(
                stats.invalidations > 0,
                "later cases write into read slots: {stats:?}"
            );
        }
    }
}

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

/// Records on and around bucket and range edges, checked by hand.
#[tokio::test]
async fn edges_count_once() {
    for db in fresh("edges").await {
        let store = DieselStore::connect(&db.url).await.unwrap();
        let times = [
            at(2026, 3, 1, 0, 0) - chrono::Duration::microseconds(1),
            at(2026, 3, 1, 0, 0),
            at(2026, 3, 1, 23, 59),
            at(2026, 3, 2, 0, 0),
            at(2026, 3, 3, 0, 0),
        ];
        let records: Vec<UsageRecord> = times
            .iter()
            .map(|t| UsageRecord::builder().started_at(*t).user("u").build())
            .collect();
        store.write_batch(&records).await.unwrap();
        let utc: Tz = "UTC".parse().unwrap();
        let f = Filter::new(TimeRange::between(
            at(2026, 3, 1, 0, 0),
            at(2026, 3, 3, 0, 0),
        ));
        let series = store.time_series(&f, Granularity::Day, utc).await.unwrap();
        let counts: Vec<u64> = series.series[0].points.iter().map(|p| p.requests).collect();
        assert_eq!(counts, vec![2, 1], "{}", db.backend);
        assert_eq!(
            store.metrics(&f).await.unwrap().requests,
            3,
            "{}",
            db.backend
        );
        // The same instants seen from Kolkata (+05:30): the first local day starts at
        // 18:30 UTC the day before, and 23:59 UTC is already the next local day.
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let series = store
            .time_series(&f, Granularity::Day, kolkata)
            .await
            .unwrap();
        assert_eq!(series.buckets[0], at(2026, 2, 28, 18, 30), "{}", db.backend);
        let counts: Vec<u64> = series.series[0].points.iter().map(|p| p.requests).collect();
        assert_eq!(counts, vec![1, 2, 0], "{}", db.backend);
        db.cleanup().await;
    }
}

/// In a zone whose day starts inside a 15-minute slot (Monrovia was 44 minutes 30
/// seconds behind UTC until 1972), two records of one slot fall in two local days:
/// the sums and the percentiles of each day hold only its own record.
#[tokio::test]
async fn percentiles_per_bucket_split_a_slot_the_zone_cuts() {
    for db in fresh("odd_zone").await {
        let store = DieselStore::connect(&db.url).await.unwrap();
        // Local midnight is 00:44:30 UTC; the first two records share the slot from 00:30.
        let records = [(40, 0, 100_000), (44, 45, 300_000), (55, 0, 300_000)].map(|(m, s, us)| {
            UsageRecord::builder()
                .started_at(Utc.with_ymd_and_hms(1971, 3, 2, 0, m, s).unwrap())
                .duration(Duration::from_micros(us))
                .build()
        });
        store.write_batch(&records).await.unwrap();
        let monrovia: Tz = "Africa/Monrovia".parse().unwrap();
        let f = Filter::new(TimeRange::between(
            Utc.with_ymd_and_hms(1971, 3, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(1971, 3, 3, 0, 0, 0).unwrap(),
        ));
        let series = store
            .latency_series(&f, Granularity::Day, monrovia)
            .await
            .unwrap();
        let p95: Vec<Option<u64>> = series.latency.iter().map(|l| l.p95_us).collect();
        let day = |us| Some(tower_usage::query::quantize_micros(us));
        assert_eq!(
            p95,
            vec![None, day(100_000), day(300_000)],
            "{}",
            db.backend
        );
        let means: Vec<Option<f64>> = series.latency.iter().map(|l| l.mean_us).collect();
        assert_eq!(
            means,
            vec![None, Some(100_000.0), Some(300_000.0)],
            "{}",
            db.backend
        );
        reference::assert_same(
            &json(&series.buckets),
            &json(
                store
                    .time_series(&f, Granularity::Day, monrovia)
                    .await
                    .unwrap()
                    .buckets,
            ),
            &format!("{} buckets", db.backend),
        );
        db.cleanup().await;
    }
}

/// A batch that holds the same record twice stores it once, and the rollups count it
/// once: the sums from them agree with the raw rows.
#[tokio::test]
async fn a_record_twice_in_one_batch_counts_once() {
    for db in fresh("twice").await {
        let store = DieselStore::connect(&db.url).await.unwrap();
        let day = at(2026, 3, 2, 0, 0);
        let records: Vec<UsageRecord> = (0..3)
            .map(|i| {
                UsageRecord::builder()
                    .started_at(day + chrono::Duration::hours(i))
                    .user("u")
                    .tokens(TokenUsage::new(10, 1))
                    .build()
            })
            .collect();
        let mut batch = records.clone();
        batch.push(records[1].clone());
        store.write_batch(&batch).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 3, "{}", db.backend);
        let f = Filter::new(TimeRange::between(day, day + chrono::Duration::days(1)));
        ranks_and_metrics_agree(&store, &records, &f, db.backend).await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn bad_queries_get_typed_errors() {
    let store = DieselStore::connect("sqlite::memory:").await.unwrap();
    let utc: Tz = "UTC".parse().unwrap();
    let t = at(2026, 1, 1, 0, 0);
    let reversed = Filter::new(TimeRange::between(t, t - chrono::Duration::hours(1)));
    let invalid = |e: StoreError| match e {
        StoreError::Invalid(e) => e,
        other => panic!("not a query error: {other}"),
    };
    assert!(matches!(
        invalid(store.metrics(&reversed).await.unwrap_err()),
        QueryError::EmptyRange { .. }
    ));
    let long = Filter::new(TimeRange::between(t - chrono::Duration::days(4_000), t));
    assert!(matches!(
        invalid(store.metrics(&long).await.unwrap_err()),
        QueryError::RangeTooLong { .. }
    ));
    let decade = Filter::new(TimeRange::between(t - chrono::Duration::days(3_650), t));
    let err = invalid(
        store
            .time_series(&decade, Granularity::Hour, utc)
            .await
            .unwrap_err(),
    );
    assert!(matches!(err, QueryError::TooManyBuckets { .. }), "{err}");
    assert!(err.to_string().contains("at most 10000"), "{err}");
    let day = Filter::new(TimeRange::between(t - chrono::Duration::days(1), t));
    let empty = day.clone().service("  ");
    assert_eq!(
        invalid(store.by_model(&empty, 5).await.unwrap_err()),
        QueryError::EmptyName { field: "service" }
    );
    assert_eq!(
        invalid(store.by_model(&day, 0).await.unwrap_err()),
        QueryError::ZeroLimit
    );
    assert!(matches!(
        invalid(
            store
                .top_users(&day, RankBy::Cost, 1_000_000)
                .await
                .unwrap_err()
        ),
        QueryError::LimitTooLarge { .. }
    ));
    let before_epoch = Filter::new(TimeRange::between(
        DateTime::from_timestamp(-10, 0).unwrap(),
        t,
    ));
    assert_eq!(
        invalid(store.metrics(&before_epoch).await.unwrap_err()),
        QueryError::RangeOutOfBounds
    );
}

#[tokio::test]
async fn rebuilt_rollups_give_the_same_answers() {
    for db in fresh("rebuild").await {
        let store = DieselStore::connect(&db.url).await.unwrap();
        let base = at(2026, 5, 1, 0, 0);
        let records: Vec<UsageRecord> = (0..500i64)
            .map(|i| {
                UsageRecord::builder()
                    .started_at(base + chrono::Duration::minutes(i * 37))
                    .user(format!("u{}", i % 7))
                    .service(SERVICES[(i % 3) as usize])
                    .duration(Duration::from_micros(1_000 + (i as u64 * 7919) % 500_000))
                    .build()
            })
            .collect();
        store.write_batch(&records).await.unwrap();
        let f = Filter::new(TimeRange::between(base, base + chrono::Duration::days(20)));
        let before = json(store.dashboard(&f, "UTC".parse().unwrap()).await.unwrap());
        assert_eq!(
            store.rebuild_rollups().await.unwrap(),
            500,
            "{}",
            db.backend
        );
        let after = json(store.dashboard(&f, "UTC".parse().unwrap()).await.unwrap());
        assert_eq!(before, after, "{}", db.backend);
        assert_eq!(
            before["metrics"],
            reference::metrics(&records, &f),
            "{}",
            db.backend
        );
        db.cleanup().await;
    }
}

/// A 30-day range starting the day after a 7-day block of the per-user sums begins
/// reads that block whole and subtracts its first day: a user seen only on that day is
/// neither counted nor ranked, and the others' sums leave it out.
#[tokio::test]
async fn users_on_subtracted_days_are_left_out() {
    for db in fresh("subtracted").await {
        let store = DieselStore::connect(&db.url).await.unwrap();
        // Blocks count from the epoch in 7 days: day 20727 starts one.
        let block = micros(20_727 * DAY);
        let day = chrono::Duration::days(1);
        let hour = chrono::Duration::hours(1);
        let mut records = vec![
            UsageRecord::builder()
                .started_at(block + hour)
                .user("only-outside")
                .build(),
            UsageRecord::builder()
                .started_at(block + hour * 2)
                .user("both")
                .tokens(TokenUsage::new(1_000, 0))
                .build(),
        ];
        for i in 0..3 {
            records.push(
                UsageRecord::builder()
                    .started_at(block + day + hour * (5 * i + 1))
                    .user("both")
                    .tokens(TokenUsage::new(1, 1))
                    .build(),
            );
        }
        records.push(
            UsageRecord::builder()
                .started_at(block + day * 20)
                .user("inside")
                .build(),
        );
        store.write_batch(&records).await.unwrap();
        let f = Filter::new(TimeRange::between(block + day, block + day * 31));
        let top = store.top_users(&f, RankBy::Tokens, 10).await.unwrap();
        assert_eq!(
            json(&top),
            reference::top_users(&records, &f, RankBy::Tokens, 10)
        );
        let names: Vec<&str> = top.iter().map(|r| r.user.as_str()).collect();
        assert_eq!(names, ["both", "inside"], "{}", db.backend);
        assert_eq!(top[0].tokens.total, 6, "{}", db.backend);
        let metrics = store.metrics(&f).await.unwrap();
        assert_eq!(metrics.unique_users, 2, "{}", db.backend);
        assert_eq!(json(&metrics), reference::metrics(&records, &f));
        db.cleanup().await;
    }
}

/// A 7-day block's per-user sums are written once, when a later block's records arrive;
/// before that its days are read, and a record that arrives for it afterwards is added
/// to the written sums: each is counted once at every stage.
#[tokio::test]
async fn a_block_counts_each_record_once_before_and_after_it_is_sealed() {
    for db in fresh("sealed").await {
        // "a" gets detail rows when the first block is sealed, "b" and "c" do not.
        let store = DieselStore::builder(&db.url)
            .user_detail_min_records(2)
            .connect()
            .await
            .unwrap();
        let block = micros(20_727 * DAY);
        let day = chrono::Duration::days(1);
        let at = |days: i32, user: &str, tokens: u64| {
            UsageRecord::builder()
                .started_at(block + day * days + chrono::Duration::hours(3))
                .user(user)
                .service(if tokens.is_multiple_of(2) {
                    "chat"
                } else {
                    "embed"
                })
                .model("m")
                .duration(Duration::from_micros(tokens * 1_000))
                .ttfb(Duration::from_micros(tokens * 100))
                .tokens(TokenUsage::new(tokens, 0))
                .build()
        };
        // The range reads the first block whole (days 0 to 6) and the next one's days.
        let f = Filter::new(TimeRange::between(block, block + day * 9));
        let mut records = vec![at(0, "a", 5), at(3, "b", 7), at(6, "a", 11)];
        store.write_batch(&records).await.unwrap();
        let what = format!("{}: unsealed", db.backend);
        ranks_and_metrics_agree(&store, &records, &f, &what).await;
        // A record of the next block seals the first, in the same batch as one of it.
        let batch = [at(2, "c", 13), at(8, "b", 17)];
        store.write_batch(&batch).await.unwrap();
        records.extend(batch);
        let what = format!("{}: sealed", db.backend);
        ranks_and_metrics_agree(&store, &records, &f, &what).await;
        // Late records for the sealed block, one of them a user it had not seen.
        let late = [at(1, "a", 19), at(5, "d", 23)];
        store.write_batch(&late).await.unwrap();
        records.extend(late.clone());
        let what = format!("{}: late", db.backend);
        ranks_and_metrics_agree(&store, &records, &f, &what).await;
        // A retried batch adds nothing to the sealed sums.
        store.write_batch(&late).await.unwrap();
        let what = format!("{}: retried", db.backend);
        ranks_and_metrics_agree(&store, &records, &f, &what).await;
        // Rebuilt from the records, the block is sealed again, its detail rows with it.
        store.rebuild_rollups().await.unwrap();
        let what = format!("{}: rebuilt", db.backend);
        ranks_and_metrics_agree(&store, &records, &f, &what).await;
        db.cleanup().await;
    }
}

/// Writers on several connections at once, their batches' records spread over three
/// blocks out of order: blocks are sealed while other transactions write their days and
/// late records arrive for sealed ones, and each record still counts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_seals_count_each_record_once() {
    for db in fresh("concurrent_seals").await {
        // About half the users' blocks get detail rows.
        let store = DieselStore::builder(&db.url)
            .pool_size(4)
            .user_detail_min_records(15)
            .connect()
            .await
            .unwrap();
        let block = micros(20_727 * DAY);
        let hours = 21 * 24;
        let records: Vec<UsageRecord> = (0..600i64)
            .map(|i| {
                // A fixed shuffle of the three blocks' hours.
                let hour = (i * 7_919) % hours;
                UsageRecord::builder()
                    .started_at(block + chrono::Duration::hours(hour))
                    .user(format!("user-{}", i % 13))
                    .tokens(TokenUsage::new(u64::try_from(i).unwrap() + 1, 0))
                    .build()
            })
            .collect();
        let mut writers = tokio::task::JoinSet::new();
        for chunk in records.chunks(20) {
            let (store, chunk) = (store.clone(), chunk.to_vec());
            writers.spawn(async move { store.write_batch(&chunk).await });
        }
        while let Some(written) = writers.join_next().await {
            written.unwrap().unwrap();
        }
        assert_eq!(store.count().await.unwrap(), 600, "{}", db.backend);
        let f = Filter::new(TimeRange::between(
            block,
            block + chrono::Duration::hours(hours),
        ));
        ranks_and_metrics_agree(&store, &records, &f, db.backend).await;
        db.cleanup().await;
    }
}

/// Top users by tokens and the metrics over `f` are the reference's over `records`.
async fn ranks_and_metrics_agree(
    store: &DieselStore,
    records: &[UsageRecord],
    f: &Filter,
    what: &str,
) {
    let top = store.top_users(f, RankBy::Tokens, 20).await.unwrap();
    let want = reference::top_users(records, f, RankBy::Tokens, 20);
    assert_eq!(json(&top), want, "{what}");
    let metrics = store.metrics(f).await.unwrap();
    assert_eq!(json(&metrics), reference::metrics(records, f), "{what}");
    user_usage_agrees(store, records, f, what).await;
}

/// Every user's `user_usage` over `f` is the reference's over `records`, in a zone whose
/// days start at UTC midnight, one whose days start on another hour, and one with a
/// half-hour offset: the per-user detail rows serve the first two, raw rows the last.
async fn user_usage_agrees(store: &DieselStore, records: &[UsageRecord], f: &Filter, what: &str) {
    let users: std::collections::BTreeSet<&str> =
        records.iter().filter_map(|r| r.user.as_deref()).collect();
    for zone in ["UTC", "America/New_York", "Asia/Kolkata"] {
        let tz: Tz = zone.parse().unwrap();
        for user in &users {
            let usage = json(store.user_usage(user, f, tz).await.unwrap());
            let want = user_usage_reference(records, f, user, tz);
            reference::assert_same(&usage, &want, &format!("user usage {user} {zone}: {what}"));
        }
    }
}

/// What `user_usage(user, f, tz)` must answer for `records`.
fn user_usage_reference(records: &[UsageRecord], f: &Filter, user: &str, tz: Tz) -> Value {
    let mine = f.clone().user(user);
    serde_json::json!({
        "user": user,
        "metrics": reference::metrics(records, &mine),
        "daily": reference::time_series(records, &mine, Granularity::Day, tz, None),
        "by_service": reference::breakdown(records, &mine, Dimension::Service, 10),
        "by_model": reference::breakdown(records, &mine, Dimension::Model, 10),
    })
}

/// The per-user sums are written as arrays on PostgreSQL: names with the characters that
/// array literals treat specially come back as they were written.
#[tokio::test]
async fn odd_user_names_survive_the_per_user_sums() {
    const NAMES: &[&str] = &[
        "quote\"inside",
        "back\\slash",
        "{braces}",
        "comma,name",
        "NULL",
        "  spaced  ",
        "ünïcødé ✓",
        "'single'",
    ];
    for db in fresh("odd_names").await {
        let store = DieselStore::connect(&db.url).await.unwrap();
        let day = micros(20_000 * DAY);
        let records: Vec<UsageRecord> = NAMES
            .iter()
            .enumerate()
            .flat_map(|(i, name)| {
                (0..=i).map(move |k| {
                    UsageRecord::builder()
                        .started_at(day + chrono::Duration::hours(k as i64))
                        .user(*name)
                        .build()
                })
            })
            .collect();
        store.write_batch(&records).await.unwrap();
        let f = Filter::new(TimeRange::between(day, day + chrono::Duration::days(1)));
        let top = store.top_users(&f, RankBy::Requests, 20).await.unwrap();
        let names: Vec<&str> = top.iter().map(|r| r.user.as_str()).collect();
        let expected: Vec<&str> = NAMES.iter().rev().copied().collect();
        assert_eq!(names, expected, "{}", db.backend);
        assert_eq!(
            json(&top),
            reference::top_users(&records, &f, RankBy::Requests, 20)
        );
        db.cleanup().await;
    }
}

/// Names that differ only by trailing spaces, case, normalization form or an invisible
/// character are different users, services and models: counted apart in the rankings,
/// the breakdowns and the per-user rollups, and one user never reads another's usage.
#[tokio::test]
async fn names_that_differ_only_in_padding_case_or_form_stay_apart() {
    const NAMES: &[&str] = &[
        "alice",
        "alice ",
        "alice  ",
        "Alice",
        "\u{e9}mile",
        "e\u{301}mile",
        "ali\u{200b}ce",
        "alice\u{a0}",
    ];
    for db in fresh("padded_names").await {
        let store = DieselStore::builder(&db.url)
            .user_detail_min_records(1)
            .connect()
            .await
            .unwrap();
        let day = micros(20_100 * DAY);
        let records: Vec<UsageRecord> = NAMES
            .iter()
            .enumerate()
            .flat_map(|(i, name)| {
                (0..=i).map(move |k| {
                    UsageRecord::builder()
                        .started_at(day + chrono::Duration::hours(k as i64))
                        .user(*name)
                        .service(*name)
                        .model(*name)
                        .tokens(TokenUsage::new(10 * (i as u64 + 1), 1))
                        .build()
                })
            })
            .collect();
        // One batch per name, and a record of a later block that seals the first.
        for name in NAMES {
            let mine: Vec<UsageRecord> = records
                .iter()
                .filter(|r| r.user.as_deref() == Some(*name))
                .cloned()
                .collect();
            store.write_batch(&mine).await.unwrap();
        }
        let mut all = records.clone();
        let later = UsageRecord::builder()
            .started_at(day + chrono::Duration::days(15))
            .user("later")
            .build();
        store
            .write_batch(std::slice::from_ref(&later))
            .await
            .unwrap();
        all.push(later);
        let f = Filter::new(TimeRange::between(day, day + chrono::Duration::days(30)));
        let top = store.top_users(&f, RankBy::Requests, 20).await.unwrap();
        let names: Vec<&str> = top.iter().map(|r| r.user.as_str()).collect();
        let mut expected: Vec<&str> = NAMES.iter().rev().copied().collect();
        expected.push("later");
        assert_eq!(names, expected, "{}", db.backend);
        for dimension in [Dimension::Service, Dimension::Model, Dimension::User] {
            reference::assert_same(
                &json(store.breakdown(&f, dimension, 20).await.unwrap()),
                &reference::breakdown(&all, &f, dimension, 20),
                &format!("{} breakdown by {dimension:?}", db.backend),
            );
        }
        for name in NAMES {
            let only = f.clone().service(*name);
            reference::assert_same(
                &json(store.metrics(&only).await.unwrap()),
                &reference::metrics(&all, &only),
                &format!("{} metrics of service {name:?}", db.backend),
            );
        }
        user_usage_agrees(&store, &all, &f, db.backend).await;
        db.cleanup().await;
    }
}

/// A MySQL database made before text compared without padding: its rollups had merged
/// `alice` and `alice ` into one row. Migrating converts the tables and rebuilds the
/// rollups from the records, which kept both names.
#[tokio::test]
async fn migrating_a_padded_mysql_database_splits_merged_names() {
    let down = include_str!(
        "../src/store/schema/migrations/mysql/2026-12-04-000000_compare_text_without_padding/down.sql"
    );
    for db in fresh("padded_upgrade").await {
        if db.backend != "mysql" {
            db.cleanup().await;
            continue;
        }
        let store = DieselStore::connect(&db.url).await.unwrap();
        db.execute(down).await;
        db.execute("DELETE FROM __diesel_schema_migrations WHERE version = '20261204000000'")
            .await;
        let day = micros(20_200 * DAY);
        let records: Vec<UsageRecord> = ["alice", "alice ", "alice "]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                UsageRecord::builder()
                    .started_at(day + chrono::Duration::minutes(i as i64))
                    .user(*name)
                    .service(*name)
                    .build()
            })
            .collect();
        store.write_batch(&records).await.unwrap();
        let f = Filter::new(TimeRange::between(day, day + chrono::Duration::days(1)));
        let merged = store.breakdown(&f, Dimension::Service, 10).await.unwrap();
        assert_eq!(merged.rows.len(), 1, "padding merged the names before");
        drop(store);
        let store = DieselStore::connect(&db.url).await.unwrap();
        reference::assert_same(
            &json(store.breakdown(&f, Dimension::Service, 10).await.unwrap()),
            &reference::breakdown(&records, &f, Dimension::Service, 10),
            "breakdown after the migration",
        );
        reference::assert_same(
            &json(store.top_users(&f, RankBy::Requests, 10).await.unwrap()),
            &reference::top_users(&records, &f, RankBy::Requests, 10),
            "top users after the migration",
        );
        db.cleanup().await;
    }
}

/// Records with absurd amounts (every count `u64::MAX`, the cost `i64::MAX` or
/// `i64::MIN`), then enough at the largest amount a record keeps to pass `i64::MAX` in
/// every sum: each query still answers, from rollups and from raw rows, with amounts
/// clamped to [`UsageRecord::MAX_AMOUNT`] and sums saturating; an ordinary record
/// written later into the same rollup cells still counts; rebuilding the rollups gives
/// the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_amounts_never_break_a_query() {
    const MAX: u64 = UsageRecord::MAX_AMOUNT;
    for db in fresh("absurd").await {
        let store = DieselStore::builder(&db.url)
            .user_detail_min_records(1)
            .connect()
            .await
            .unwrap();
        let raw = DieselStore::builder(&db.url)
            .read_rollups(false)
            .connect()
            .await
            .unwrap();
        let day = micros(20_300 * DAY);
        let absurd = |i: i64, cost: i64| {
            UsageRecord::builder()
                .started_at(day + chrono::Duration::seconds(i))
                .user(if cost > 0 { "big" } else { "refund" })
                .service("svc")
                .model(if cost > 0 { "m" } else { "n" })
                .tokens(
                    TokenUsage::new(u64::MAX, u64::MAX)
                        .with_cached_input(u64::MAX)
                        .with_cache_write_input(u64::MAX),
                )
                .cost_micros(cost)
                .response_bytes(u64::MAX)
                .request_bytes(u64::MAX)
                .duration(Duration::MAX)
                .ttfb(Duration::MAX)
                .build()
        };
        store
            .write_batch(&[absurd(0, i64::MAX), absurd(1, i64::MIN)])
            .await
            .unwrap();
        let f = Filter::new(TimeRange::between(day, day + chrono::Duration::days(1)));
        let big = f.clone().user("big");
        for s in [&store, &raw] {
            let m = s.metrics(&big).await.unwrap();
            assert_eq!(m.tokens.input, MAX, "{}", db.backend);
            assert_eq!(m.tokens.cached_input, MAX, "{}", db.backend);
            assert_eq!(m.cost_micros, MAX as i64, "{}", db.backend);
            assert_eq!(m.response_bytes, MAX, "{}", db.backend);
            let m = s.metrics(&f.clone().user("refund")).await.unwrap();
            assert_eq!(m.cost_micros, -(MAX as i64), "{}", db.backend);
        }
        let stored = store.recent(2).await.unwrap();
        assert!(stored
            .iter()
            .all(|r| r.tokens.output == MAX && r.duration.as_micros() == u128::from(MAX)));
        // 2 × 1,100 more at the largest amount: every sum passes i64::MAX (or MIN).
        for chunk in (2..2_202i64).collect::<Vec<_>>().chunks(550) {
            let batch: Vec<UsageRecord> = chunk
                .iter()
                .map(|&i| absurd(i, if i % 2 == 0 { i64::MAX } else { i64::MIN }))
                .collect();
            store.write_batch(&batch).await.unwrap();
        }
        // An ordinary record later, into the same rollup cells.
        let small = UsageRecord::builder()
            .started_at(day + chrono::Duration::seconds(3_000))
            .user("big")
            .service("svc")
            .model("m")
            .tokens(TokenUsage::new(1, 1))
            .cost_micros(1)
            .build();
        store
            .write_batch(std::slice::from_ref(&small))
            .await
            .unwrap();
        // A later block seals the first one.
        let later = UsageRecord::builder()
            .started_at(day + chrono::Duration::days(15))
            .user("big")
            .build();
        store.write_batch(&[later]).await.unwrap();
        let tz: Tz = "UTC".parse().unwrap();
        for (s, path) in [(&store, "rollups"), (&raw, "raw")] {
            let what = format!("{} {path}", db.backend);
            let m = s.metrics(&big).await.unwrap();
            assert_eq!(m.requests, 1_102, "{what}");
            assert_eq!(m.tokens.input, i64::MAX as u64, "{what}");
            assert_eq!(m.cost_micros, i64::MAX, "{what}");
            let m = s.metrics(&f).await.unwrap();
            assert_eq!(m.requests, 2_203, "{what}");
            assert_eq!(m.response_bytes, i64::MAX as u64, "{what}");
            let m = s.metrics(&f.clone().user("refund")).await.unwrap();
            assert_eq!(m.cost_micros, -i64::MAX, "{what}");
            for dimension in [Dimension::Service, Dimension::Model, Dimension::User] {
                s.breakdown(&f, dimension, 10).await.unwrap();
            }
            for granularity in [Granularity::Hour, Granularity::Day] {
                s.time_series(&f, granularity, tz).await.unwrap();
            }
            for rank in [RankBy::Requests, RankBy::Tokens, RankBy::Cost] {
                let top = s.top_users(&f, rank, 10).await.unwrap();
                assert_eq!(top.len(), 2, "{what}");
            }
            s.peak_hours(&f, tz).await.unwrap();
            s.dashboard(&f, tz).await.unwrap();
            let usage = s.user_usage("big", &f, tz).await.unwrap();
            assert_eq!(usage.metrics.cost_micros, i64::MAX, "{what}");
        }
        store.rebuild_rollups().await.unwrap();
        let m = store.metrics(&big).await.unwrap();
        assert_eq!(
            (m.requests, m.cost_micros),
            (1_102, i64::MAX),
            "{}",
            db.backend
        );
        db.cleanup().await;
    }
}

/// Days, weeks, months and hours across a repeated midnight (the Azores on 2026-10-25,
/// Havana on 2026-11-01) and a skipped one (Havana on 2026-03-08): every backend's
/// series and each user's daily usage match the reference, which finds the buckets
/// from the local calendar on its own.
#[tokio::test]
async fn buckets_across_repeated_and_skipped_midnights() {
    let cases = [
        ("Atlantic/Azores", at(2026, 10, 23, 0, 0)),
        ("America/Havana", at(2026, 10, 30, 0, 0)),
        ("America/Havana", at(2026, 3, 6, 0, 0)),
    ];
    let records: Vec<UsageRecord> = cases
        .iter()
        .flat_map(|&(_, start)| {
            (0..4 * 24 * 3 + 7).map(move |i| {
                UsageRecord::builder()
                    .started_at(start + chrono::Duration::minutes(20 * i + i % 7))
                    .user(["alice", "bob"][(i % 2) as usize])
                    .service("chat")
                    .duration(Duration::from_millis(10 + (i as u64 % 13) * 17))
                    .tokens(TokenUsage::new(i as u64, 1))
                    .build()
            })
        })
        .collect();
    for db in fresh("midnights").await {
        let store = DieselStore::builder(&db.url)
            .user_detail_min_records(1)
            .connect()
            .await
            .unwrap();
        store.write_batch(&records).await.unwrap();
        let raw = DieselStore::builder(&db.url)
            .read_rollups(false)
            .connect()
            .await
            .unwrap();
        for &(zone, start) in &cases {
            let tz: Tz = zone.parse().unwrap();
            for (from, to) in [
                (start, start + chrono::Duration::days(4)),
                (
                    start + chrono::Duration::minutes(50),
                    start + chrono::Duration::hours(61),
                ),
            ] {
                let f = Filter::new(TimeRange::between(from, to));
                for granularity in [
                    Granularity::Hour,
                    Granularity::Day,
                    Granularity::Week,
                    Granularity::Month,
                ] {
                    let want = reference::time_series(&records, &f, granularity, tz, None);
                    for (s, path) in [(&store, "rollups"), (&raw, "raw")] {
                        reference::assert_same(
                            &json(s.time_series(&f, granularity, tz).await.unwrap()),
                            &want,
                            &format!("{} {path} {zone} {granularity:?} from {from}", db.backend),
                        );
                    }
                }
                reference::assert_same(
                    &json(store.peak_hours(&f, tz).await.unwrap()),
                    &reference::peak_hours(&records, &f, tz),
                    &format!("{} peak hours {zone}", db.backend),
                );
                for user in ["alice", "bob"] {
                    reference::assert_same(
                        &json(store.user_usage(user, &f, tz).await.unwrap()),
                        &user_usage_reference(&records, &f, user, tz),
                        &format!("{} user usage {user} {zone}", db.backend),
                    );
                }
            }
        }
        db.cleanup().await;
    }
}

/// A user id longer than the column is never cut to a name that another user may have:
/// an id equal to its first 256 characters reads nothing of it, and the long id reads
/// its own records.
#[tokio::test]
async fn an_over_long_user_id_is_never_another_users_prefix() {
    let long = format!("{}-the-rest", "x".repeat(256));
    let prefix: String = long.chars().take(256).collect();
    for db in fresh("long_ids").await {
        let store = DieselStore::builder(&db.url)
            .user_detail_min_records(1)
            .connect()
            .await
            .unwrap();
        let day = micros(20_400 * DAY);
        let records: Vec<UsageRecord> = (0..3)
            .map(|i| {
                UsageRecord::builder()
                    .started_at(day + chrono::Duration::hours(i))
                    .user(long.as_str())
                    .build()
            })
            .collect();
        store.write_batch(&records).await.unwrap();
        let later = UsageRecord::builder()
            .started_at(day + chrono::Duration::days(15))
            .user("later")
            .build();
        store.write_batch(&[later]).await.unwrap();
        let f = Filter::new(TimeRange::between(day, day + chrono::Duration::days(1)));
        let tz: Tz = "UTC".parse().unwrap();
        let theirs = store.user_usage(&prefix, &f, tz).await.unwrap();
        assert_eq!(theirs.metrics.requests, 0, "{}", db.backend);
        let m = store
            .metrics(&f.clone().user(prefix.as_str()))
            .await
            .unwrap();
        assert_eq!(m.requests, 0, "{}", db.backend);
        let own = store.user_usage(&long, &f, tz).await.unwrap();
        assert_eq!(own.metrics.requests, 3, "{}", db.backend);
        let m = store.metrics(&f.clone().user(long.as_str())).await.unwrap();
        assert_eq!(m.requests, 3, "{}", db.backend);
        let top = store.top_users(&f, RankBy::Requests, 10).await.unwrap();
        assert_eq!(top.len(), 1, "{}", db.backend);
        assert_ne!(top[0].user, prefix, "{}", db.backend);
        assert!(top[0].user.chars().count() <= 256, "{}", db.backend);
        db.cleanup().await;
    }
}

/// One batch larger than a round of rollup statements, with a key of its own for almost
/// every record and three weeks of time, so that later rounds seal the blocks of
/// earlier ones: written in several rounds of one transaction, it answers as the
/// reference does on every backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_many_distinct_keys_is_written_in_rounds() {
    let start = micros(20_500 * DAY);
    let records: Vec<UsageRecord> = (0..7_000i64)
        .map(|i| {
            UsageRecord::builder()
                .started_at(start + chrono::Duration::seconds(i * 259 % (21 * 86_400)))
                .user(format!("user {}", i % 3_000))
                .service(format!("service {i}"))
                .model(format!("model {}", i % 5))
                .duration(Duration::from_millis(1 + (i as u64 % 97)))
                .tokens(TokenUsage::new(i as u64, 1))
                .build()
        })
        .collect();
    for db in fresh("many_keys").await {
        let store = DieselStore::builder(&db.url)
            .user_detail_min_records(2)
            .connect()
            .await
            .unwrap();
        store.write_batch(&records).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 7_000, "{}", db.backend);
        let f = Filter::new(TimeRange::between(
            start,
            start + chrono::Duration::days(21),
        ));
        let part = Filter::new(TimeRange::between(
            start + chrono::Duration::hours(30),
            start + chrono::Duration::days(16),
        ));
        for f in [&f, &part] {
            reference::assert_same(
                &json(store.metrics(f).await.unwrap()),
                &reference::metrics(&records, f),
                &format!("{} metrics", db.backend),
            );
            for rank in [RankBy::Requests, RankBy::Tokens] {
                reference::assert_same(
                    &json(store.top_users(f, rank, 25).await.unwrap()),
                    &reference::top_users(&records, f, rank, 25),
                    &format!("{} top users", db.backend),
                );
            }
            reference::assert_same(
                &json(store.breakdown(f, Dimension::Model, 10).await.unwrap()),
                &reference::breakdown(&records, f, Dimension::Model, 10),
                &format!("{} models", db.backend),
            );
        }
        let tz: Tz = "UTC".parse().unwrap();
        for user in ["user 0", "user 1234", "user 2999"] {
            reference::assert_same(
                &json(store.user_usage(user, &f, tz).await.unwrap()),
                &user_usage_reference(&records, &f, user, tz),
                &format!("{} user usage {user}", db.backend),
            );
        }
        db.cleanup().await;
    }
}

/// Records with a megabyte of metadata each are exported in pages cut by their bytes:
/// every one comes out once, in order, whole, on every backend.
#[tokio::test]
async fn large_records_export_in_pages_of_bounded_bytes() {
    let start = micros(20_600 * DAY);
    let big = |i: i64| serde_json::json!({"i": i, "blob": "é".repeat(1 << 19)});
    let records: Vec<UsageRecord> = (0..12)
        .map(|i| {
            UsageRecord::builder()
                .started_at(start + chrono::Duration::seconds(i / 2))
                .metadata(big(i))
                .build()
        })
        .collect();
    for db in fresh("big_export").await {
        let store = DieselStore::connect(&db.url).await.unwrap();
        store.write_batch(&records).await.unwrap();
        let f = Filter::new(TimeRange::between(
            start,
            start + chrono::Duration::hours(1),
        ));
        let mut out = Vec::new();
        assert_eq!(
            store.export_json_lines(&f, &mut out).await.unwrap(),
            12,
            "{}",
            db.backend
        );
        let mut read: Vec<UsageRecord> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        let mut want = records.clone();
        for list in [&mut read, &mut want] {
            list.sort_by_key(|r| (r.started_at, r.id));
        }
        let ids = |l: &[UsageRecord]| {
            l.iter()
                .map(|r| (r.id, r.metadata.clone()))
                .collect::<Vec<_>>()
        };
        assert!(ids(&read) == ids(&want), "{}", db.backend);
        db.cleanup().await;
    }
}

/// `user_usage` finds each record's day with a binary search written into the statement:
/// ten years of days (3,650 of them, in a zone with daylight saving) still make a
/// statement every backend takes, with the record on the right day.
#[tokio::test]
async fn user_usage_over_ten_years_of_days() {
    for db in fresh("decade_usage").await {
        // The first record's block is sealed by the batch: read from detail rows.
        let store = DieselStore::builder(&db.url)
            .user_detail_min_records(1)
            .connect()
            .await
            .unwrap();
        let to = at(2026, 1, 1, 0, 0);
        let from = to - chrono::Duration::days(3_650);
        let records = vec![
            UsageRecord::builder()
                .started_at(from + chrono::Duration::minutes(1))
                .user("old")
                .duration(Duration::from_micros(1))
                .build(),
            UsageRecord::builder()
                .started_at(at(2021, 7, 4, 3, 30))
                .user("old")
                .duration(Duration::from_secs(3_600))
                .build(),
        ];
        store.write_batch(&records).await.unwrap();
        let tz: Tz = "America/New_York".parse().unwrap();
        let f = Filter::new(TimeRange::between(from, to));
        let usage = store.user_usage("old", &f, tz).await.unwrap();
        assert_eq!(usage.metrics.requests, 2, "{}", db.backend);
        let days = &usage.daily.series[0].points;
        assert_eq!(days.len(), usage.daily.buckets.len());
        let busy: Vec<_> = usage
            .daily
            .buckets
            .iter()
            .zip(days)
            .filter(|(_, p)| p.requests > 0)
            .map(|(b, _)| b.with_timezone(&tz).date_naive().to_string())
            .collect();
        // 03:30 UTC on 4 July is 23:30 on 3 July in New York.
        let first = from.with_timezone(&tz).date_naive().to_string();
        assert_eq!(busy, [first.as_str(), "2021-07-03"], "{}", db.backend);
        db.cleanup().await;
    }
}

#[tokio::test]
async fn csv_export_quotes_and_neutralizes() {
    let store = DieselStore::connect("sqlite::memory:").await.unwrap();
    let t = at(2026, 2, 1, 0, 0);
    let records = vec![
        UsageRecord::builder()
            .started_at(t)
            .user("=HYPERLINK(\"x\")")
            .service("a,b")
            .build(),
        UsageRecord::builder()
            .started_at(t + chrono::Duration::seconds(1))
            .user("line\nbreak")
            .model("@model")
            .metadata(serde_json::json!({"k": "v"}))
            .build(),
    ];
    store.write_batch(&records).await.unwrap();
    let mut out = Vec::new();
    let f = Filter::new(TimeRange::between(t, t + chrono::Duration::hours(1)));
    assert_eq!(store.export_csv(&f, &mut out).await.unwrap(), 2);
    let mut reader = csv::Reader::from_reader(out.as_slice());
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[0], "id");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    let user = header.iter().position(|h| h == "user").unwrap();
    let model = header.iter().position(|h| h == "model").unwrap();
    let service = header.iter().position(|h| h == "service").unwrap();
    assert_eq!(&rows[0][user], "'=HYPERLINK(\"x\")");
    assert_eq!(&rows[0][service], "a,b");
    assert_eq!(&rows[1][user], "line\nbreak");
    assert_eq!(&rows[1][model], "'@model");
}

/// A batch whose histograms would merge into one the store cannot read is refused, on
/// every backend (PostgreSQL merges them in SQL, the others in Rust): nothing of it is
/// stored, and once the row is mended the same batch goes in.
#[tokio::test]
async fn a_batch_onto_an_unreadable_histogram_fails_whole() {
    for db in fresh("hist_write").await {
        let store = DieselStore::connect(&db.url).await.unwrap();
        let at = micros(20_000 * DAY);
        let record = || UsageRecord::builder().started_at(at).user("u").build();
        store.write_batch(&[record(), record()]).await.unwrap();
        db.execute("UPDATE usage_rollup_15m SET latency_hist = '7:x'")
            .await;
        let third = record();
        let failed = store.write_batch(std::slice::from_ref(&third)).await;
        let message = format!("{:?}", failed.expect_err(db.backend));
        assert!(message.contains("histogram"), "{}: {message}", db.backend);
        let raw = DieselStore::builder(&db.url)
            .read_rollups(false)
            .connect()
            .await
            .unwrap();
        let f = Filter::new(TimeRange::between(at, at + chrono::Duration::days(1)));
        assert_eq!(raw.metrics(&f).await.unwrap().requests, 2, "{}", db.backend);
        // Mended, the same batch goes in.
        db.execute("UPDATE usage_rollup_15m SET latency_hist = ''")
            .await;
        store.write_batch(&[third]).await.unwrap();
        assert_eq!(raw.metrics(&f).await.unwrap().requests, 3, "{}", db.backend);
        db.cleanup().await;
    }
}

/// A stored histogram the crate cannot read is reported as corrupt data, not read as
/// zeros and not a panic, also on a current-thread runtime (where cancelling the
/// dashboard's other SQLite queries in flight panicked inside diesel-async).
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn an_unreadable_rollup_histogram_is_an_error() {
    use diesel::{Connection, RunQueryDsl};
    let dir = std::env::temp_dir().join(format!("tower-usage-hist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("usage.db");
    let _ = std::fs::remove_file(&path);
    let store = DieselStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let day = micros(20_000 * DAY);
    let records: Vec<UsageRecord> = (0..3)
        .map(|d| {
            UsageRecord::builder()
                .started_at(day + chrono::Duration::days(d) + chrono::Duration::hours(1))
                .user("u")
                .build()
        })
        .collect();
    store.write_batch(&records).await.unwrap();
    let f = Filter::new(TimeRange::between(day, day + chrono::Duration::days(3)));
    assert_eq!(store.metrics(&f).await.unwrap().requests, 3);

    let mut conn = diesel::SqliteConnection::establish(&path.display().to_string()).unwrap();
    diesel::sql_query("UPDATE usage_rollup_1d SET latency_hist = '7:x'")
        .execute(&mut conn)
        .unwrap();
    let metrics = store.metrics(&f).await;
    assert!(
        matches!(metrics, Err(StoreError::Corrupt(_))),
        "{metrics:?}"
    );
    let dashboard = store.dashboard(&f, Tz::UTC).await;
    assert!(
        matches!(dashboard, Err(StoreError::Corrupt(_))),
        "{dashboard:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
