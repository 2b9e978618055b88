//! How long retention takes to remove about a month of records, and what it costs the
//! writes that go on meanwhile: records over 90 days are written in time order, then
//! `apply_retention` keeps 60 days (the month and more before that goes, by whole
//! 7-day blocks) while a writer stores a batch of 100 current records every 100 ms
//! and times each. Printed per round: the run's time, records removed per second, and
//! the writer's batch latencies before and during the run. On SQLite, and on
//! PostgreSQL when `TOWER_USAGE_POSTGRES_URL` is set, plain and with daily partitions
//! (where whole days are dropped).
//!
//! `RETENTION_RECORDS` sets the records written (default 1,000,000), `RETENTION_ROUNDS`
//! the rounds (default 1; each writes the records again), and `RETENTION_ONLY` a text
//! the names of the cases to run contain (`daily` for partitioned PostgreSQL alone).
//!
//! `cargo bench --bench retention --features postgres`
#![allow(missing_docs)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "shared/pump.rs"]
mod pump;

use chrono::Utc;
use pump::pump;
use tower_usage::store::{DieselStore, Partitions, RetentionPolicy};
use tower_usage::{Recorder, TokenUsage, UsageRecord, UsageSink};

const DAYS: i64 = 90;
const KEEP_DAYS: u32 = 60;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn record(i: u64) -> UsageRecord {
    UsageRecord::builder()
        .user(format!("user-{}", i % 10_000))
        .service(["chat", "embeddings", "mcp"][(i % 3) as usize])
        .model(["gpt-4o", "gpt-4o-mini", "claude-sonnet"][(i % 3) as usize])
        .provider("openai")
        .duration(Duration::from_micros(50_000 + i % 100_000))
        .tokens(TokenUsage::new(1_000 + i % 500, 200))
        .cost_micros(1_234)
        .build()
}

/// `n` records spread evenly over the 90 days before now, in time order.
fn history(n: u64) -> Vec<UsageRecord> {
    let start = Utc::now() - chrono::Duration::days(DAYS);
    let span = DAYS * 86_400_000_000;
    (0..n)
        .map(|i| {
            let mut record = record(i);
            let at = (span as i128 * i as i128 / n as i128) as i64;
            record.started_at = start + chrono::Duration::microseconds(at);
            record
        })
        .collect()
}

/// Writes a batch of 100 current records every 100 ms until `stop`; each batch's time.
async fn writer(store: DieselStore, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut times = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let batch: Vec<UsageRecord> = (i..i + 100).map(record).collect();
        i += 100;
        let started = Instant::now();
        store.write_batch(&batch).await.unwrap();
        times.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    times
}

fn summary(mut times: Vec<Duration>) -> String {
    if times.is_empty() {
        return "no batches".to_owned();
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    format!(
        "{} batches, median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        times.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

async fn round(name: &str, url: &str, n: u64, partitions: Option<Partitions>) {
    let store = DieselStore::connect(url).await.unwrap();
    store.revert_migrations().await.unwrap();
    store.migrate().await.unwrap();
    let mut builder = DieselStore::builder(url);
    if let Some(layout) = partitions {
        builder = builder.partition_records(layout);
    }
    let store = builder.connect().await.unwrap();
    let recorder = Recorder::builder(store.clone()).spawn();
    pump(&recorder, history(n)).await;
    recorder.shutdown().await;

    let stop = Arc::new(AtomicBool::new(false));
    let idle = tokio::spawn(writer(store.clone(), Arc::clone(&stop)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let idle = idle.await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let during = tokio::spawn(writer(store.clone(), Arc::clone(&stop)));
    let policy = RetentionPolicy::keep_records_days(KEEP_DAYS).unwrap();
    let started = Instant::now();
    let report = store.apply_retention(&policy).await.unwrap();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let during = during.await.unwrap();
    println!(
        "{name}: removed {} of {n} records in {:.2} s ({:.0} records/s, {} partitions dropped)",
        report.records_removed,
        took.as_secs_f64(),
        report.records_removed as f64 / took.as_secs_f64(),
        report.partitions_dropped
    );
    println!("{name}: writer before: {}", summary(idle));
    println!("{name}: writer during: {}", summary(during));
}

/// Whether the case `name` runs (see `RETENTION_ONLY`).
fn wanted(name: &str) -> bool {
    std::env::var("RETENTION_ONLY").map_or(true, |only| name.contains(&only))
}

#[tokio::main]
async fn main() {
    let n = env("RETENTION_RECORDS", 1_000_000);
    let rounds = env("RETENTION_ROUNDS", 1);
    println!("{n} records over {DAYS} days; retention keeps {KEEP_DAYS} days");
    let dir = std::env::temp_dir().join("tower-usage-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("retention-{}.db", std::process::id()));
    for _ in 0..rounds {
        if wanted("sqlite") {
            round("sqlite", &format!("sqlite://{}", path.display()), n, None).await;
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    match std::env::var("TOWER_USAGE_POSTGRES_URL") {
        Ok(url) if cfg!(feature = "postgres") => {
            for _ in 0..rounds {
                if wanted("postgres") {
                    round("postgres", &url, n, None).await;
                }
                let (name, daily) = ("postgres, daily partitions", Some(Partitions::Daily));
                if wanted(name) {
                    round(name, &url, n, daily).await;
                }
            }
        }
        Ok(_) => println!("built without feature `postgres`: PostgreSQL skipped"),
        Err(_) => println!("TOWER_USAGE_POSTGRES_URL is not set: PostgreSQL skipped"),
    }
}
