//! What `BudgetLayer` adds to a request, and how far concurrent requests overshoot a
//! small budget.
//!
//! Run with `cargo bench --bench budget --features sqlite`.
//!
//! 1. Cost per request: a bare service, the same under a `UsageLayer`, and under a
//!    `UsageLayer` with a `BudgetLayer` inside (one hard budget in scope, spend kept in
//!    memory, each record settled by the recorder's worker). The three are timed in
//!    alternating rounds, and the medians compared: what the budget layer adds, as a
//!    ratio to what the usage layer itself adds (the target is under 1.5).
//! 2. Overshoot: 1,000 concurrent requests through an axum app against a cost budget
//!    with room for ten estimates, each request using half as much again as its
//!    estimate: how many got through and how far the spend went past the limit, against
//!    the bound of what the requests let through used beyond their estimates.
//! 3. Alert evaluation: 1,000 rules (services, models, both, users and everything;
//!    windows of 5 minutes to a day; every signal) over the 1,000,000 records of
//!    `benches/queries.rs`, one round at the data's last moment, on SQLite and (with
//!    `TOWER_USAGE_POSTGRES_URL`) PostgreSQL; the target is under a second a round. The
//!    data is the queries bench's: run that first (`bash benches/dashboard_load.sh`
//!    makes the SQLite file). The rules are removed afterwards.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Empty, Full};
use tower::{Layer, Service, ServiceExt};
use tower_usage::alert::{
    Alerts, Budget, BudgetLayer, Budgets, Condition, Estimate, Measure, Period, Rule, Scope, Signal,
};
use tower_usage::store::DieselStore;
use tower_usage::{extract, Recorder, SinkError, UsageHandle, UsageLayer, UsageRecord, UsageSink};

type Req = Request<Empty<Bytes>>;
type Res = Response<Full<Bytes>>;
type Answer = std::future::Ready<Result<Res, Infallible>>;

/// A sink that throws records away, so the worker drains as fast as it can.
#[derive(Debug)]
struct Discard;

#[async_trait]
impl UsageSink for Discard {
    async fn write_batch(&self, _: &[UsageRecord]) -> Result<(), SinkError> {
        Ok(())
    }
}

fn request() -> Req {
    Request::post("/v1/chat/completions")
        .header("x-user-id", "user-123456")
        .header("x-model", "gpt-4o-mini")
        .body(Empty::new())
        .unwrap()
}

fn bare() -> impl Service<Req, Response = Res, Error = Infallible, Future = Answer> + Clone {
    tower::service_fn(|_req: Req| {
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(
            b"{\"ok\":true}",
        )))))
    })
}

/// Calls the service once and polls the response body to its end; every future here
/// is ready at once.
fn run<S, B>(svc: &mut S, req: Req) -> u64
where
    S: Service<Req, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body + Unpin,
{
    let mut cx = Context::from_waker(Waker::noop());
    let future = pin!(svc.call(req));
    let Poll::Ready(response) = future.poll(&mut cx) else {
        unreachable!("the benchmarked services answer at once")
    };
    let mut body = response.unwrap().into_body();
    let mut frames = 0;
    while let Poll::Ready(Some(_)) = std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
        frames += 1;
    }
    frames
}

/// Nanoseconds per request over `n` requests made just before they are served.
fn time<S, B>(svc: &mut S, n: usize) -> f64
where
    S: Service<Req, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body + Unpin,
{
    const BATCH: usize = 64;
    let mut spent = Duration::ZERO;
    for _ in 0..n / BATCH {
        let requests: Vec<Req> = (0..BATCH).map(|_| request()).collect();
        let started = Instant::now();
        for req in requests {
            std::hint::black_box(run(svc, req));
        }
        spent += started.elapsed();
    }
    spent.as_nanos() as f64 / (n / BATCH * BATCH) as f64
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn cost_per_request(runtime: &tokio::runtime::Runtime) {
    let (recorder, budgets) = runtime.block_on(async {
        let store = DieselStore::connect("sqlite::memory:").await.unwrap();
        let budgets = Budgets::builder(store)
            .reconcile_every(None)
            .open()
            .await
            .unwrap();
        let scope = Scope::user("user-123456");
        let limit = tower_usage::UsageRecord::MAX_AMOUNT;
        budgets
            .put(Budget::new(
                "b",
                scope,
                Measure::Requests,
                limit,
                Period::Day,
            ))
            .await
            .unwrap();
        let recorder = Recorder::builder(Discard)
            .queue_capacity(1 << 16)
            .batch_size(512)
            .spawn();
        (recorder, budgets)
    });
    let usage = || {
        UsageLayer::new(recorder.clone())
            .user(extract::header("x-user-id"))
            .model(extract::header("x-model"))
    };
    let mut plain = bare();
    let mut metered = usage().layer(bare());
    let mut budgeted = usage().layer(BudgetLayer::new(budgets.clone()).layer(bare()));
    // Warm up, and let the worker catch up.
    for _ in 0..3 {
        time(&mut plain, 20_000);
        time(&mut metered, 20_000);
        time(&mut budgeted, 20_000);
    }
    const ROUNDS: usize = 15;
    const N: usize = 50_000;
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Each case goes first in turn, so drift favours none.
        for case in 0..3 {
            match (case + round) % 3 {
                0 => a.push(time(&mut plain, N)),
                1 => b.push(time(&mut metered, N)),
                _ => c.push(time(&mut budgeted, N)),
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (bare_ns, usage_ns, both_ns) = (median(&mut a), median(&mut b), median(&mut c));
    let usage_added = usage_ns - bare_ns;
    let budget_added = both_ns - usage_ns;
    println!("cost per request (medians of {ROUNDS} alternating rounds of {N}):");
    println!("  bare service                     {bare_ns:8.0} ns");
    println!("  + UsageLayer                     {usage_ns:8.0} ns  (adds {usage_added:.0} ns)");
    println!(
        "  + UsageLayer + BudgetLayer       {both_ns:8.0} ns  (adds {budget_added:.0} ns more)"
    );
    println!(
        "  BudgetLayer's cost ÷ UsageLayer's: {:.2} (target under 1.5)",
        budget_added / usage_added
    );
    runtime.block_on(recorder.shutdown());
    let stats = budgets.stats();
    println!(
        "  {} requests let through, {} refused; spend settled: {}",
        stats.admitted,
        stats.refused,
        budgets.spend()[0].spent
    );
}

fn overshoot(runtime: &tokio::runtime::Runtime) {
    runtime.block_on(async {
        let store = DieselStore::connect("sqlite::memory:").await.unwrap();
        let budgets = Budgets::builder(store).reconcile_every(None).open().await.unwrap();
        let limit = 10_000;
        let budget = Budget::new("small", Scope::user("alice"), Measure::Cost, limit, Period::Day);
        budgets.put(budget).await.unwrap();
        let recorder = Recorder::builder(Discard)
            .flush_interval(Duration::from_millis(10))
            .spawn();
        let estimate = Estimate { cost_micros: Some(1_000), tokens: None };
        let app = axum::Router::new()
            .route(
                "/chat",
                axum::routing::post(|axum::Extension(usage): axum::Extension<UsageHandle>| async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    usage.set_cost_micros(1_500);
                    "hi"
                }),
            )
            .layer(BudgetLayer::new(budgets.clone()).estimate("/chat", estimate))
            .layer(UsageLayer::new(recorder.clone()).user(extract::header("x-user-id")));
        let started = Instant::now();
        let calls: Vec<_> = (0..1000)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move {
                    let request = Request::post("/chat")
                        .header("x-user-id", "alice")
                        .body(axum::body::Body::empty())
                        .unwrap();
                    let response = app.oneshot(request).await.unwrap();
                    let status = response.status();
                    let _ = response.into_body().collect().await;
                    status
                })
            })
            .collect();
        let mut admitted = 0u64;
        for call in calls {
            if call.await.unwrap() == StatusCode::OK {
                admitted += 1;
            }
        }
        let took = started.elapsed();
        recorder.flush().await;
        let spent = budgets.spend()[0].spent;
        println!("overshoot: 1,000 concurrent requests against a cost budget of {limit} (estimate 1,000, each using 1,500):");
        println!(
            "  {admitted} let through in {took:.2?}; spent {spent}, {} past the limit; bound (use beyond the estimates in flight): {}",
            spent.saturating_sub(limit),
            admitted * 500
        );
        recorder.shutdown().await;
    });
}

/// The 1,000 rules of part 3.
fn rules() -> Vec<Rule> {
    const SERVICES: [&str; 4] = ["chat", "embeddings", "images", "mcp"];
    const MODELS: [&str; 6] = [
        "gpt-4o",
        "gpt-4o-mini",
        "claude-sonnet",
        "claude-haiku",
        "llama-70b",
        "text-embedding-3",
    ];
    const SIGNALS: [(Signal, f64); 6] = [
        (Signal::ErrorRate, 0.5),
        (Signal::LatencyP95, 5_000_000.0),
        (Signal::TtfbP95, 5_000_000.0),
        (Signal::Requests, 1e9),
        (Signal::Tokens, 1e12),
        (Signal::Cost, 1e15),
    ];
    (0..1000)
        .map(|i: usize| {
            let (signal, threshold) = SIGNALS[i % SIGNALS.len()];
            let window = [5, 15, 60, 1440][(i / 5) % 4];
            let mut rule = Rule::new(format!("bench-{i:04}"), signal, Condition::Above, threshold)
                .window_minutes(window);
            let f = &mut rule.filter;
            match i % 5 {
                0 => f.service = Some(SERVICES[i / 20 % 4].to_owned()),
                1 => f.model = Some(MODELS[i / 20 % 6].to_owned()),
                2 => {
                    f.service = Some(SERVICES[i / 20 % 4].to_owned());
                    f.model = Some(MODELS[i / 80 % 6].to_owned());
                }
                3 => f.user = Some(format!("user-{:05}", i / 20 % 50)),
                _ => {}
            }
            rule
        })
        .collect()
}

fn alert_rounds(runtime: &tokio::runtime::Runtime) {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let sqlite = target.join("bench-queries-1000000.db");
    let mut targets = Vec::new();
    if sqlite.exists() {
        targets.push(("sqlite", format!("sqlite://{}", sqlite.display())));
    } else {
        println!(
            "alert evaluation: no {} (make it with the queries bench); skipped",
            sqlite.display()
        );
    }
    if let Ok(admin) = std::env::var("TOWER_USAGE_POSTGRES_URL") {
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        targets.push(("postgres", format!("{base}/tower_usage_bench_1000000")));
    }
    // The queries bench's data ends here.
    let end = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let rules = rules();
    let distinct: std::collections::HashSet<String> = rules
        .iter()
        .map(|r| format!("{}{:?}", r.window_minutes, r.filter))
        .collect();
    for (backend, url) in targets {
        runtime.block_on(async {
            let store = match DieselStore::connect(&url).await {
                Ok(store) => store,
                Err(e) => {
                    println!("alert evaluation on {backend}: {e}; skipped");
                    return;
                }
            };
            for rule in &rules {
                store.put_rule(rule.clone()).await.unwrap();
            }
            let alerts = Alerts::new(store.clone());
            let mut times = Vec::new();
            let mut events = 0;
            for round in 0..5 {
                let started = Instant::now();
                let written = alerts.evaluate(end + chrono::Duration::seconds(round)).await.unwrap();
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                events += written.len();
            }
            println!(
                "alert evaluation on {backend}: 1,000 rules ({} distinct readings) over 1,000,000 records: \
                 median {:.0} ms a round (min {:.0}, max {:.0}; 5 rounds; {events} events)",
                distinct.len(),
                median(&mut times.clone()),
                times.iter().copied().fold(f64::INFINITY, f64::min),
                times.iter().copied().fold(0.0, f64::max),
            );
            for rule in &rules {
                store.delete_rule(&rule.name).await.unwrap();
            }
        });
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    cost_per_request(&runtime);
    overshoot(&runtime);
    alert_rounds(&runtime);
}
