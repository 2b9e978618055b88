//! The dashboard page over the 1,000,000-record SQLite data of `benches/queries.rs`, in
//! headless Chromium through chromedriver:
//!
//! * the time from navigation to the first complete render of the 30-day admin view
//!   (the page's `first-render` mark), over several loads;
//! * the bytes the first load downloads: the page itself and its API calls;
//! * the server's CPU per second with one live client (`GET /live`) connected while
//!   1,000 records a second are written, against the same writes with none.
//!
//! `bash benches/dashboard_load.sh` makes the data first when it is missing; this binary
//! expects it at `$CARGO_TARGET_DIR/bench-queries-1000000.db` (or `DASHBOARD_DB`).
#![allow(missing_docs)]

#[path = "../tests/common/webdriver.rs"]
#[allow(dead_code, unreachable_pub)]
mod webdriver;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use tower_usage::api::{self, ApiConfig, Jwt};
use tower_usage::store::DieselStore;
use tower_usage::{UsageRecord, UsageSink};

const SECRET: &str = "a bench secret of at least thirty-two bytes";
/// The data set's 30 days, as the page's custom range (the browser's zone is UTC here).
const VIEW: &str = "#last=custom&from=2026-10-02T00%3A00&to=2026-11-01T00%3A00&tz=UTC";

fn token() -> String {
    let claims = json!({"sub": "ops", "role": "admin", "exp": Utc::now().timestamp() + 3_600});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// CPU time this process has used (user and system), from `/proc/self/stat`.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |s| s.1)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are the 14th and 15th fields, 12th and 13th after the name; the
    // clock runs at 100 ticks a second on Linux.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Writes 1,000 records a second (ten batches of 100) for `length`; returns the CPU this
/// process used meanwhile.
async fn write_for(store: &DieselStore, length: Duration) -> Duration {
    let before = cpu();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while started.elapsed() < length {
        tick.tick().await;
        let batch: Vec<UsageRecord> = (0..100)
            .map(|_| UsageRecord::builder().user("load").service("chat").build())
            .collect();
        store.write_batch(&batch).await.unwrap();
    }
    cpu() - before
}

fn main() {
    let db = std::env::var("DASHBOARD_DB").unwrap_or_else(|_| {
        let target = std::env::var("CARGO_TARGET_DIR")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target").to_owned());
        format!("{target}/bench-queries-1000000.db")
    });
    if !std::path::Path::new(&db).exists() {
        eprintln!("no data at {db}: run `bash benches/dashboard_load.sh`, which makes it");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // A copy, so that the records written here do not change the shared data set.
        let copy = std::env::temp_dir().join("tower-usage-bench-dashboard.db");
        // With its write-ahead log, which may hold committed pages not yet in the file.
        for suffix in ["", "-wal", "-shm"] {
            let from = format!("{db}{suffix}");
            let to = format!("{}{suffix}", copy.display());
            let _ = std::fs::remove_file(&to);
            if std::path::Path::new(&from).exists() {
                std::fs::copy(&from, &to).unwrap();
            }
        }
        let store = DieselStore::connect(&format!("sqlite://{}", copy.display())).await.unwrap();
        let config = ApiConfig::new(Jwt::hs256(SECRET).unwrap())
            .unlimited(tower_usage::api::Role::Admin);
        let app = axum::Router::new().nest("/api/analytics", api::router(store.clone(), config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .await
                .unwrap();
        });
        let url = format!("http://{addr}/api/analytics");
        let downloads = std::env::temp_dir().join("tower-usage-bench-downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let Some(browser) = webdriver::Browser::start(&downloads).await else {
            std::process::exit(2);
        };

        // The token goes into the tab's session storage once; each load then starts from
        // navigation, as a returning user's would.
        browser.goto(&url).await;
        browser
            .run("sessionStorage.setItem('tower-usage-token', arguments[0])", json!([token()]))
            .await;
        let mut renders = Vec::new();
        let mut first_bytes = None;
        let mut calls = Vec::new();
        for _ in 0..7 {
            browser.goto("about:blank").await;
            browser.goto(&format!("{url}{VIEW}")).await;
            let at = browser
                .wait_for(
                    "const m = performance.getEntriesByName('first-render')[0]; return m && m.startTime",
                    "the first render",
                )
                .await;
            renders.push(at.as_f64().unwrap());
            let timed = browser
                .run(
                    "return performance.getEntriesByType('resource')
                       .filter(e => !e.name.includes('/live'))
                       .map(e => [new URL(e.name).pathname.split('/').pop(), e.duration])",
                    json!([]),
                )
                .await;
            calls.push(timed);
            if first_bytes.is_none() {
                let bytes = browser
                    .run(
                        "const nav = performance.getEntriesByType('navigation')[0];
                         const api = performance.getEntriesByType('resource')
                           .filter(e => !e.name.includes('/live'));
                         return [nav.transferSize, nav.encodedBodySize,
                                 api.reduce((s, e) => s + e.transferSize, 0), api.length];",
                        json!([]),
                    )
                    .await;
                first_bytes = Some(bytes);
            }
        }
        renders.sort_by(f64::total_cmp);
        println!(
            "first complete render of the 30-day admin view over 1,000,000 records: median {:.0} ms (min {:.0}, max {:.0}; {} loads)",
            renders[renders.len() / 2],
            renders[0],
            renders[renders.len() - 1],
            renders.len()
        );
        // The API calls of the first load (cold caches) and of a later one, slowest first.
        for (which, i) in [("first", 0), ("later", calls.len() - 1)] {
            let Some(serde_json::Value::Array(timed)) = calls.get(i) else {
                continue;
            };
            let mut timed: Vec<(String, f64)> = timed
                .iter()
                .map(|t| (t[0].as_str().unwrap_or("?").to_owned(), t[1].as_f64().unwrap_or(0.0)))
                .collect();
            timed.sort_by(|a, b| b.1.total_cmp(&a.1));
            let listed: Vec<String> = timed.iter().map(|(n, d)| format!("{n} {d:.0} ms")).collect();
            println!("  API calls of the {which} load, slowest first: {}", listed.join(", "));
        }
        let b = first_bytes.unwrap();
        println!(
            "first load: the page {} bytes over the wire ({} bytes of HTML), its {} API calls {} bytes",
            b[0], b[1], b[3], b[2]
        );

        // One live client against none, the same writes.
        let length = Duration::from_secs(10);
        browser.goto("about:blank").await;
        let idle = write_for(&store, length).await;
        browser.goto(&format!("{url}{VIEW}")).await;
        browser
            .wait_for("return document.getElementById('live').className === 'on'", "the live stream")
            .await;
        let watched = write_for(&store, length).await;
        let per_second = |d: Duration| d.as_secs_f64() / length.as_secs_f64() * 100.0;
        println!(
            "server CPU while 1,000 records/s are written: {:.1}% of a core with no client, {:.1}% with one live client (+{:.1} points)",
            per_second(idle),
            per_second(watched),
            per_second(watched.saturating_sub(idle))
        );
        drop(browser);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", copy.display()));
        }
    });
}
