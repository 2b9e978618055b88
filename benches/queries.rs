//! The analytics queries over 1,000,000 records (30 days, 10,000 users with a skewed
//! share of the traffic), on SQLite and PostgreSQL, each against one hand-written SQL
//! statement over the raw table computing the same aggregate, in the same run:
//!
//! | query | raw-SQL baseline |
//! |---|---|
//! | `dashboard`, 30 days | the headline totals alone: count, distinct users, sums, mean |
//! | `time_series` by day in Asia/Kolkata | `GROUP BY` day of the time shifted by +05:30 |
//! | `top_users` by requests, 10 | `GROUP BY user_id ORDER BY count DESC LIMIT 10` |
//! | `user_usage` of the heaviest user | that user's sums per UTC day, service and model, through the user index |
//!
//! On PostgreSQL it runs twice: over a plain records table and over one partitioned by
//! day (`postgres_daily`).
//!
//! `RECORDS=10000000 cargo bench --bench queries --features postgres` for the large run.
//! The data is generated once per size and kept (a SQLite file under the target
//! directory, a PostgreSQL database named after the size) for later runs.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use criterion::{criterion_group, Criterion};
use diesel::{Connection, QueryableByName};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tower_usage::query::{Filter, Granularity, RankBy, TimeRange, Tz};
use tower_usage::store::{DieselStore, Partitions};
use tower_usage::{ClientPlatform, Outcome, TokenUsage, UsageRecord, UsageSink};

const USERS: u64 = 10_000;
const DAYS: i64 = 30;
const SERVICES: &[&str] = &["chat", "embeddings", "images", "mcp"];
const MODELS: &[(&str, &str)] = &[
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("claude-sonnet", "anthropic"),
    ("claude-haiku", "anthropic"),
    ("llama-70b", "groq"),
    ("text-embedding-3", "openai"),
];

fn end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
}

fn start() -> DateTime<Utc> {
    end() - chrono::Duration::days(DAYS)
}

/// SplitMix64: reproducible data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn user(i: u64) -> String {
    format!("user-{i:05}")
}

/// Record `i` of `n`: spread evenly over the 30 days; user 0 is the heaviest.
fn record(rng: &mut Rng, i: u64, n: u64) -> UsageRecord {
    let span = (end() - start()).num_microseconds().unwrap() as u64;
    let at =
        start() + chrono::Duration::microseconds((i * (span / n) + rng.below(span / n)) as i64);
    // A cube skews traffic: the first 1% of users make about a fifth of the requests.
    let u = (rng.unit().powi(3) * USERS as f64) as u64;
    let (model, provider) = MODELS[rng.below(MODELS.len() as u64) as usize];
    let service = SERVICES[(rng.below(10) as usize).min(SERVICES.len() - 1)];
    let roll = rng.below(100);
    let status = match roll {
        0..=1 => http::StatusCode::INTERNAL_SERVER_ERROR,
        2..=4 => http::StatusCode::TOO_MANY_REQUESTS,
        _ => http::StatusCode::OK,
    };
    let duration = (20_000.0 * (1.0 + 50.0 * rng.unit().powi(4))) as u64;
    UsageRecord::builder()
        .started_at(at)
        .user(user(u))
        .service(service)
        .model(model)
        .provider(provider)
        .status(status)
        .outcome(Outcome::from_status(status))
        .client(
            [
                ClientPlatform::Sdk,
                ClientPlatform::Browser,
                ClientPlatform::Cli,
            ][rng.below(3) as usize],
        )
        .country(["DE", "US", "IN", "BR"][rng.below(4) as usize])
        .ttfb(Duration::from_micros(duration / 4))
        .duration(Duration::from_micros(duration))
        .response_bytes(200 + rng.below(20_000))
        .tokens(TokenUsage::new(rng.below(4_000), rng.below(1_000)))
        .cost_micros(rng.below(50_000) as i64)
        .build()
}

async fn fill(store: &DieselStore, n: u64) {
    if store.count().await.unwrap() == n {
        return;
    }
    let began = Instant::now();
    let mut rng = Rng(7);
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        batch.push(record(&mut rng, i, n));
        if batch.len() == 10_000 {
            store.write_batch(&batch).await.unwrap();
            batch.clear();
        }
    }
    store.write_batch(&batch).await.unwrap();
    let secs = began.elapsed().as_secs_f64();
    println!(
        "{}: wrote {n} records in {secs:.1} s ({:.0}/s, rollups included)",
        store.backend_name(),
        n as f64 / secs
    );
}

#[derive(QueryableByName)]
struct Anything {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Reads the answer, so that nothing is optimized away.
fn total(rows: Vec<Anything>) -> i64 {
    rows.iter().map(|r| r.n).sum()
}

fn baselines(tz_shift_us: i64, from: i64, to: i64) -> [(&'static str, String); 4] {
    let range = format!("started_at_us >= {from} AND started_at_us < {to}");
    [
        (
            "dashboard",
            format!(
                "SELECT COUNT(*) AS n, COUNT(DISTINCT user_id) AS users, SUM(tokens_in) AS ti, \
                 SUM(tokens_out) AS tout, SUM(cost_micros) AS cost, SUM(response_bytes) AS bytes, \
                 AVG(duration_us) AS mean, SUM(CASE WHEN outcome <> 'success' THEN 1 ELSE 0 END) AS errors \
                 FROM usage_records WHERE {range}"
            ),
        ),
        (
            "time_series",
            format!(
                "SELECT COUNT(*) AS n FROM (SELECT (started_at_us + {tz_shift_us}) / 86400000000 AS day, \
                 COUNT(*) AS c, SUM(tokens_in) AS ti, SUM(tokens_out) AS tout, SUM(cost_micros) AS cost \
                 FROM usage_records WHERE {range} GROUP BY 1) t"
            ),
        ),
        (
            "top_users",
            format!(
                "SELECT COUNT(*) AS n FROM (SELECT user_id, COUNT(*) AS c FROM usage_records \
                 WHERE {range} GROUP BY user_id ORDER BY c DESC LIMIT 10) t"
            ),
        ),
        (
            "user_usage",
            format!(
                "SELECT COUNT(*) AS n FROM (SELECT started_at_us / 86400000000 AS day, service, model, \
                 COUNT(*) AS c, SUM(tokens_in) AS ti, SUM(tokens_out) AS tout, SUM(cost_micros) AS cost, \
                 SUM(duration_us) AS d FROM usage_records WHERE user_id = 'user-00000' AND {range} \
                 GROUP BY 1, 2, 3) t"
            ),
        ),
    ]
}

fn queries(c: &mut Criterion) {
    let n: u64 = std::env::var("RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let filter = Filter::new(TimeRange::between(start(), end()));
    let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
    let (from, to) = (start().timestamp_micros(), end().timestamp_micros());
    let shift = 19_800_000_000;

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let sqlite_path = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or(dir)
        .join(format!("bench-queries-{n}.db"));
    let sqlite = format!("sqlite://{}", sqlite_path.display());
    let mut targets = vec![("sqlite", "sqlite", sqlite, None)];
    if let Ok(admin) = std::env::var("TOWER_USAGE_POSTGRES_URL") {
        for (label, suffix, layout) in [
            ("postgres", "", None),
            ("postgres_daily", "_daily", Some(Partitions::Daily)),
        ] {
            let name = format!("tower_usage_bench_{n}{suffix}");
            rt.block_on(async {
                let mut conn = AsyncPgConnection::establish(&admin).await.unwrap();
                let _ = diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await;
            });
            let base = admin.rsplit_once('/').unwrap().0;
            targets.push((label, "postgres", format!("{base}/{name}"), layout));
        }
    }

    for (label, backend, url, layout) in targets {
        let store = rt.block_on(async {
            let mut builder = DieselStore::builder(&url).pool_size(8);
            if let Some(layout) = layout {
                builder = builder.partition_records(layout);
            }
            let store = builder.connect().await.unwrap();
            fill(&store, n).await;
            store
        });
        let mut group = c.benchmark_group(format!("queries/{label}/{n}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(8))
            .warm_up_time(Duration::from_secs(1));
        group.bench_function("dashboard", |b| {
            b.to_async(&rt)
                .iter(|| async { store.dashboard(&filter, Tz::UTC).await.unwrap() })
        });
        group.bench_function("time_series_kolkata", |b| {
            b.to_async(&rt).iter(|| async {
                store
                    .time_series(&filter, Granularity::Day, kolkata)
                    .await
                    .unwrap()
            })
        });
        group.bench_function("top_users", |b| {
            b.to_async(&rt).iter(|| async {
                store
                    .top_users(&filter, RankBy::Requests, 10)
                    .await
                    .unwrap()
            })
        });
        group.bench_function("user_usage_heaviest", |b| {
            b.to_async(&rt).iter(|| async {
                store
                    .user_usage("user-00000", &filter, Tz::UTC)
                    .await
                    .unwrap()
            })
        });
        for (name, sql) in baselines(shift, from, to) {
            group.bench_function(format!("{name}_raw_sql"), |b| match backend {
                "sqlite" => {
                    let path = url.trim_start_matches("sqlite://").to_owned();
                    let mut conn = diesel::SqliteConnection::establish(&path).unwrap();
                    diesel::connection::SimpleConnection::batch_execute(
                        &mut conn,
                        "PRAGMA cache_size = -65536;",
                    )
                    .unwrap();
                    b.iter(|| {
                        total(
                            diesel::RunQueryDsl::load::<Anything>(
                                diesel::sql_query(&sql),
                                &mut conn,
                            )
                            .unwrap(),
                        )
                    })
                }
                _ => {
                    let mut conn = rt.block_on(AsyncPgConnection::establish(&url)).unwrap();
                    b.iter(|| {
                        total(
                            rt.block_on(diesel::sql_query(&sql).load::<Anything>(&mut conn))
                                .unwrap(),
                        )
                    })
                }
            });
        }
        group.finish();
    }
}

criterion_group!(benches, queries);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
