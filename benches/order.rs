//! Records per second written through `Recorder` + `DieselStore` in time order and in
//! random order: the same records over 90 days, the late ones landing in days and 7-day
//! blocks sealed long before (a history import, a replay, a broker's redelivery).
//! Rounds alternate in order, random, random with late records deferred
//! (`defer_late_records`, timed until `settle` ends), an import of the same records as
//! JSON lines (`DieselStore::import_json_lines`), as the store's CSV export
//! (`import_csv`), and as JSON lines in random order, on a fresh store each; the
//! medians and their
//! ratios are printed, on SQLite, and on PostgreSQL when `TOWER_USAGE_POSTGRES_URL` is
//! set.
//!
//! `ORDER_RECORDS` sets the records a run (default 1,000,000), `ORDER_ROUNDS` the rounds
//! of each order (default 3), `ORDER_CASES` which cases run besides in order, by name,
//! comma-separated (default all: `random,deferred,import,csv-import,random-import`).
//!
//! `cargo bench --bench order --features postgres`
#![allow(missing_docs)]

use std::time::{Duration, Instant};

#[path = "shared/pump.rs"]
mod pump;

use chrono::Utc;
use pump::pump;
use tower_usage::query::{Filter, TimeRange};
use tower_usage::store::{CsvColumns, DieselStore};
use tower_usage::{Recorder, TokenUsage, UsageRecord};

const DAYS: i64 = 90;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// `n` records spread evenly over the last 90 days, 10,000 users; shuffled (by a fixed
/// seed) when `random`.
fn records(n: u64, random: bool) -> Vec<UsageRecord> {
    let start = Utc::now() - chrono::Duration::days(DAYS + 1);
    let span = DAYS * 86_400_000_000;
    let mut records: Vec<UsageRecord> = (0..n)
        .map(|i| {
            let mut record = UsageRecord::builder()
                .user(format!("user-{}", i % 10_000))
                .service(["chat", "embeddings", "mcp"][(i % 3) as usize])
                .model(["gpt-4o", "gpt-4o-mini", "claude-sonnet"][(i % 3) as usize])
                .provider("openai")
                .ttfb(Duration::from_micros(1_000 + i % 5_000))
                .duration(Duration::from_micros(50_000 + i % 100_000))
                .tokens(TokenUsage::new(1_000 + i % 500, 200))
                .cost_micros(1_234)
                .build();
            let at = (span as i128 * i as i128 / n as i128) as i64;
            record.started_at = start + chrono::Duration::microseconds(at);
            record
        })
        .collect();
    if random {
        // Fisher–Yates with xorshift64: the same order every run.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        for i in (1..records.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            records.swap(i, (state % (i as u64 + 1)) as usize);
        }
    }
    records
}

/// Writes `records` into a freshly migrated store at `url`; records/s. With `defer`, the
/// store defers late records, and the time counts until it has settled them.
async fn run(url: &str, records: Vec<UsageRecord>, defer: bool) -> f64 {
    let store = DieselStore::connect(url).await.unwrap();
    store.revert_migrations().await.unwrap();
    store.migrate().await.unwrap();
    let mut builder = DieselStore::builder(url);
    if defer {
        // Settled by hand, inside the time, not by the quiet time.
        builder = builder.defer_late_records(Duration::from_secs(3_600));
    }
    let store = builder.connect().await.unwrap();
    let n = records.len() as u64;
    let recorder = Recorder::builder(store.clone()).spawn();
    let started = Instant::now();
    pump(&recorder, records).await;
    store.settle().await.unwrap();
    let rate = n as f64 / started.elapsed().as_secs_f64();
    recorder.shutdown().await;
    assert_eq!(recorder.stats().written, n);
    assert_eq!(store.count().await.unwrap(), n);
    rate
}

/// Imports `records` as JSON lines (the export's form), in their order, into a freshly
/// migrated store at `url`; the store and records/s, the parsing included.
async fn import_lines(url: &str, records: &[UsageRecord]) -> (DieselStore, f64) {
    let store = DieselStore::connect(url).await.unwrap();
    store.revert_migrations().await.unwrap();
    store.migrate().await.unwrap();
    let mut lines = Vec::new();
    for record in records {
        serde_json::to_writer(&mut lines, record).unwrap();
        lines.push(b'\n');
    }
    let started = Instant::now();
    let report = store.import_json_lines(&lines[..], 0).await.unwrap();
    let rate = report.records as f64 / started.elapsed().as_secs_f64();
    assert_eq!(store.count().await.unwrap(), records.len() as u64);
    (store, rate)
}

/// Imports `records` (in time order) as JSON lines into a freshly migrated store at
/// `url`, then the store's CSV export of them into another; records/s of each, the
/// parsing included.
async fn import(url: &str, records: &[UsageRecord]) -> (f64, f64) {
    let (store, rate) = import_lines(url, records).await;

    let all = Filter::new(TimeRange::last_days(DAYS as u32 + 2));
    let mut csv = Vec::new();
    store.export_csv(&all, &mut csv).await.unwrap();
    store.revert_migrations().await.unwrap();
    store.migrate().await.unwrap();
    let started = Instant::now();
    let columns = CsvColumns::export();
    let report = store
        .import_csv(std::io::Cursor::new(csv), &columns, 0)
        .await
        .unwrap();
    let csv_rate = report.records as f64 / started.elapsed().as_secs_f64();
    assert_eq!(store.count().await.unwrap(), records.len() as u64);
    (rate, csv_rate)
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// The cases a round runs, by the names `ORDER_CASES` takes; "in order" always runs, as
/// the baseline.
const CASES: [&str; 5] = [
    "random",
    "deferred",
    "import",
    "csv-import",
    "random-import",
];

async fn backend(name: &str, url: &str, n: u64, rounds: u64, cases: &[String]) {
    let runs = |case: &str| cases.iter().any(|c| c == case);
    // Case name and its rates, in `CASES` order after the baseline.
    let mut rates: Vec<(&str, Vec<f64>)> = vec![("in order", Vec::new())];
    for round in 1..=rounds {
        let mut line = Vec::new();
        line.push(("in order", run(url, records(n, false), false).await));
        if runs("random") {
            line.push(("random", run(url, records(n, true), false).await));
        }
        if runs("deferred") {
            line.push(("random deferred", run(url, records(n, true), true).await));
        }
        if runs("import") || runs("csv-import") {
            let (c, d) = import(url, &records(n, false)).await;
            line.push(("import", c));
            line.push(("CSV import", d));
        }
        if runs("random-import") {
            let (_, e) = import_lines(url, &records(n, true)).await;
            line.push(("random import", e));
        }
        let shown: Vec<String> = line
            .iter()
            .map(|(case, rate)| format!("{case} {rate:.0}"))
            .collect();
        println!("{name} round {round}: {} records/s", shown.join(", "));
        for (case, rate) in line {
            match rates.iter_mut().find(|(c, _)| *c == case) {
                Some((_, all)) => all.push(rate),
                None => rates.push((case, vec![rate])),
            }
        }
    }
    let medians: Vec<(&str, f64)> = rates
        .into_iter()
        .map(|(case, all)| (case, median(all)))
        .collect();
    let baseline = medians[0].1;
    let shown: Vec<String> = medians
        .iter()
        .map(|(case, rate)| format!("{case} {rate:.0} ({:.2}×)", rate / baseline))
        .collect();
    println!(
        "{name}: medians of {rounds} rounds, records/s (against in order): {}",
        shown.join(", ")
    );
}

#[tokio::main]
async fn main() {
    let n = env("ORDER_RECORDS", 1_000_000);
    let rounds = env("ORDER_ROUNDS", 3);
    let cases: Vec<String> = match std::env::var("ORDER_CASES") {
        Ok(list) => list.split(',').map(|c| c.trim().to_owned()).collect(),
        Err(_) => CASES.iter().map(|c| c.to_string()).collect(),
    };
    println!("{n} records over {DAYS} days, in time order and in random order");
    let dir = std::env::temp_dir().join("tower-usage-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("order-{}.db", std::process::id()));
    backend(
        "sqlite",
        &format!("sqlite://{}", path.display()),
        n,
        rounds,
        &cases,
    )
    .await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    match std::env::var("TOWER_USAGE_POSTGRES_URL") {
        Ok(url) if cfg!(feature = "postgres") => backend("postgres", &url, n, rounds, &cases).await,
        Ok(_) => println!("built without feature `postgres`: PostgreSQL skipped"),
        Err(_) => println!("TOWER_USAGE_POSTGRES_URL is not set: PostgreSQL skipped"),
    }
}
