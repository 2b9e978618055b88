//! The dashboard page in headless Chromium (through chromedriver): an admin's headline
//! numbers equal the API's, a click on a service filters the page and the URL, a user
//! sees only their own usage and never calls an admin endpoint, and a bad token gets a
//! message. A screenshot of the admin view is saved under the target directory.
#![cfg(all(feature = "dashboard", feature = "sqlite"))]

mod common;

use std::net::SocketAddr;

use chrono::Utc;
use serde_json::{json, Value};
use tower_usage::alert::{Alerts, Budget, Condition, Measure, Period, Rule, Scope, Signal};
use tower_usage::api::{self, ApiConfig, AuthError, Authenticator, Jwt, Principal, Role};
use tower_usage::query::{Filter, Granularity, TimeRange, Tz};
use tower_usage::store::{DieselStore, RetentionPolicy};
use tower_usage::{Recorder, TokenUsage, UsageRecord, UsageSink};

use common::webdriver::Browser;

const SECRET: &str = "a test secret of at least thirty-two bytes";

fn token(subject: &str, role: &str) -> String {
    token_for(subject, role, 600)
}

/// A token that expires `seconds` from now (in the past when negative).
fn token_for(subject: &str, role: &str, seconds: i64) -> String {
    let claims = json!({"sub": subject, "role": role, "exp": Utc::now().timestamp() + seconds});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// Signs in with `token` and returns the message the page shows for its refusal.
async fn refusal(browser: &Browser, token: &str) -> String {
    browser
        .run(
            "document.getElementById('message').textContent = ''",
            json!([]),
        )
        .await;
    browser.run(SIGN_IN, json!([token])).await;
    let message = browser
        .wait_for(
            "return document.getElementById('message').textContent",
            "the refusal",
        )
        .await;
    message.as_str().unwrap().to_owned()
}

/// Callers named by a `session` cookie, as a host application's own sign-in would.
struct CookieSession;

#[async_trait::async_trait]
impl Authenticator for CookieSession {
    async fn authenticate(&self, head: &http::request::Parts) -> Result<Principal, AuthError> {
        let cookies = head.headers.get_all(http::header::COOKIE);
        let known = cookies
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .any(|c| c.trim() == "session=ops-admin");
        if known {
            Ok(Principal::new("ops", Role::Admin))
        } else {
            Err(AuthError::Missing)
        }
    }
}

/// The API and its page on a loopback port, over a store with two weeks of records.
async fn serve() -> (String, DieselStore, Recorder) {
    serve_with(ApiConfig::new(Jwt::hs256(SECRET).unwrap())).await
}

async fn serve_with(config: ApiConfig) -> (String, DieselStore, Recorder) {
    let store = DieselStore::connect("sqlite::memory:").await.unwrap();
    let now = Utc::now();
    let mut records = Vec::new();
    for i in 0..400i64 {
        let (user, service, model) = match i % 4 {
            0 => ("alice", "chat", "gpt-4o"),
            1 => ("bob", "chat", "gpt-4o-mini"),
            2 => ("alice", "embeddings", "text-embedding-3"),
            _ => ("carol", "images", "dall-e"),
        };
        let status = if i % 13 == 0 { 500 } else { 200 };
        records.push(
            UsageRecord::builder()
                .started_at(now - chrono::Duration::minutes(53 * i + 1))
                .user(user)
                .service(service)
                .model(model)
                .provider("openai")
                .status(http::StatusCode::from_u16(status).unwrap())
                .duration(std::time::Duration::from_millis(40 + 17 * (i as u64 % 9)))
                .tokens(TokenUsage::new(100 * (i as u64 + 1), 10 * (i as u64 + 1)))
                .cost_micros(250 * (i + 1))
                .build(),
        );
    }
    store.write_batch(&records).await.unwrap();
    let alice = Budget::new(
        "alice-month",
        Scope::user("alice"),
        Measure::Cost,
        5_000_000,
        Period::Month,
    );
    store.put_budget(alice).await.unwrap();
    let everyone = Budget::new(
        "all-tokens",
        Scope::everything(),
        Measure::Tokens,
        1_000_000,
        Period::Rolling { hours: 24 },
    );
    store.put_budget(everyone.soft()).await.unwrap();
    // An alert that fires at once: fewer than a million requests in the last hour.
    let quiet =
        Rule::new("traffic-low", Signal::Requests, Condition::Below, 1e6).window_minutes(60);
    store.put_rule(quiet).await.unwrap();
    Alerts::new(store.clone())
        .evaluate(Utc::now())
        .await
        .unwrap();
    let audit = Recorder::builder(store.audit_sink()).spawn();
    // Debug builds compute the metrics slowly: let live updates cost more, so that
    // they come every second here as they do in a release build.
    let config = config
        .audit(audit.clone())
        .currency("EUR")
        .unwrap()
        .live_share(0.2);
    let app = axum::Router::new().nest("/api/analytics", api::router(store.clone(), config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (format!("http://{addr}/api/analytics"), store, audit)
}

const SIGN_IN: &str = "document.getElementById('token').value = arguments[0];
     document.querySelector('#sign-in button').click();";
const RENDERED: &str = "return document.body.dataset.rendered";
const BUDGETS: &str =
    "return [...document.querySelectorAll('#budgets tbody tr')].map(tr => tr.dataset.budget)";
const HEADLINE: &str = "return Object.fromEntries([...document.querySelectorAll('#headline .card')]
     .map(c => [c.dataset.metric, Number(c.dataset.value)]))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_what_the_api_answers_to_each_role() {
    let downloads = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-downloads");
    let _ = std::fs::remove_dir_all(&downloads);
    std::fs::create_dir_all(&downloads).unwrap();
    let Some(browser) = Browser::start(&downloads).await else {
        return;
    };
    let (url, store, audit) = serve().await;

    // A bad token, and an expired one: a clear message, and the sign-in form again.
    browser.goto(&url).await;
    let message = refusal(&browser, "not-a-token").await;
    assert!(message.contains("refused"), "{message}");
    let message = refusal(&browser, &token_for("ops", "admin", -3_600)).await;
    assert!(message.contains("expired"), "{message}");
    let form = browser
        .run(
            "return document.getElementById('sign-in').hidden",
            json!([]),
        )
        .await;
    assert_eq!(form, json!(false));

    // An admin: every headline number is the API's (the store's) for the same range.
    browser.run(SIGN_IN, json!([token("ops", "admin")])).await;
    browser.wait_for(RENDERED, "the admin view").await;
    let shown = browser.run(HEADLINE, json!([])).await;
    let metrics = store
        .metrics(&Filter::new(TimeRange::last_hours(30 * 24)))
        .await
        .unwrap();
    assert_eq!(shown["requests"], json!(metrics.requests));
    assert_eq!(shown["users"], json!(metrics.unique_users));
    assert_eq!(shown["tokens"], json!(metrics.tokens.total));
    assert_eq!(shown["cost"], json!(metrics.cost_micros));
    assert_eq!(shown["p95"], json!(metrics.latency.p95_us));
    let rate = shown["error_rate"].as_f64().unwrap();
    assert!(
        (rate - metrics.error_rate).abs() < 1e-9,
        "{rate} {}",
        metrics.error_rate
    );
    // A batch written while the page is open shows within two seconds, without a reload,
    // in the headline numbers and in the chart's current bucket.
    let before = shown["requests"].as_u64().unwrap();
    const LAST_BUCKET: &str = "return document.querySelector('#chart details tbody tr:last-child td:last-child').textContent";
    let bucket_before: u64 = browser
        .run(LAST_BUCKET, json!([]))
        .await
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let batch: Vec<UsageRecord> = (0..3)
        .map(|_| UsageRecord::builder().user("dave").service("chat").build())
        .collect();
    let written = std::time::Instant::now();
    store.write_batch(&batch).await.unwrap();
    browser
        .wait_for(
            &format!("return document.querySelector('#headline [data-metric=requests]').dataset.value == {}", before + 3),
            "the live update",
        )
        .await;
    let took = written.elapsed();
    assert!(
        took < std::time::Duration::from_secs(2),
        "live update after {took:?}"
    );
    let live = browser
        .run(
            "return document.getElementById('live').className",
            json!([]),
        )
        .await;
    assert_eq!(live, json!("on"));
    let bucket_after: u64 = browser
        .run(LAST_BUCKET, json!([]))
        .await
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(bucket_after, bucket_before + 3);
    // The last hour per minute counts the new records too (the test's records are 53
    // minutes apart, so the hour held one or two before them).
    let hour = browser
        .wait_for(
            "return document.getElementById('last-hour').dataset.total",
            "the last hour",
        )
        .await;
    let in_hour = store
        .metrics(&Filter::new(TimeRange::last_hours(1)))
        .await
        .unwrap()
        .requests;
    assert_eq!(hour.as_str().unwrap().parse::<u64>().unwrap(), in_hour);
    let metrics = store
        .metrics(&Filter::new(TimeRange::last_hours(30 * 24)))
        .await
        .unwrap();
    let screenshot = browser.screenshot().await;
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-admin.png");
    std::fs::write(&path, screenshot).unwrap();
    eprintln!("screenshot: {}", path.display());

    // The budgets, each with what the store says it spent.
    let shown = browser.run(BUDGETS, json!([])).await;
    assert_eq!(shown, json!(["alice-month", "all-tokens"]));
    let firing = browser
        .run(
            "return [...document.querySelectorAll('#alerts tbody tr')].map(tr => tr.dataset.alert)",
            json!([]),
        )
        .await;
    assert_eq!(firing, json!(["traffic-low"]));

    // The breakdowns read from raw records come when asked for.
    browser
        .run(
            "document.querySelector('[data-extra=countries]').click()",
            json!([]),
        )
        .await;
    browser
        .wait_for(
            "return document.querySelector('#by-country table')",
            "the countries",
        )
        .await;

    // The p95 chart draws, bucket by bucket, what `/latency` answers for the query the
    // page made.
    browser
        .run(
            "const m = document.getElementById('measure'); m.value = 'p95';
             m.dispatchEvent(new Event('change'));",
            json!([]),
        )
        .await;
    let asked = browser
        .wait_for(
            "const legend = document.querySelector('#chart .legend');
             const asked = performance.getEntriesByType('resource').map(e => e.name)
                 .filter(n => n.includes('/latency?')).pop();
             return legend && legend.textContent.includes('Latency p95') && asked
                 && document.getElementById('split').disabled
                 && Object.fromEntries(new URL(asked).searchParams)",
            "the p95 chart",
        )
        .await;
    let param = |name: &str| asked[name].as_str().unwrap().to_owned();
    let seconds =
        |name: &str| chrono::DateTime::from_timestamp(param(name).parse().unwrap(), 0).unwrap();
    let granularity: Granularity = serde_json::from_value(json!(param("granularity"))).unwrap();
    let tz: Tz = param("tz").parse().unwrap();
    let series = store
        .latency_series(
            &Filter::new(TimeRange::between(seconds("from"), seconds("to"))),
            granularity,
            tz,
        )
        .await
        .unwrap();
    let want: Vec<Value> = series
        .latency
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.p95_us.map(|p| json!([i, p])))
        .collect();
    let drawn = browser
        .run(
            "return [...document.querySelectorAll('#chart rect.bar[data-series=\"0\"]')]
                 .map(b => [Number(b.dataset.bucket), Number(b.dataset.value)])",
            json!([]),
        )
        .await;
    assert!(!want.is_empty());
    assert_eq!(drawn, json!(want));
    let chart = browser.screenshot().await;
    std::fs::write(path.with_file_name("dashboard-p95.png"), chart).unwrap();
    browser
        .run(
            "const m = document.getElementById('measure'); m.value = 'requests';
             m.dispatchEvent(new Event('change'));",
            json!([]),
        )
        .await;

    // The export downloads the records the page selects, as CSV.
    browser
        .run("document.getElementById('export').click()", json!([]))
        .await;
    let csv = downloads.join("usage.csv");
    let started = std::time::Instant::now();
    let text = loop {
        if let Ok(text) = std::fs::read_to_string(&csv) {
            if text.ends_with('\n') && text.lines().count() as u64 == metrics.requests + 1 {
                break text;
            }
        }
        assert!(
            started.elapsed().as_secs() < 10,
            "no usage.csv in {}",
            downloads.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        text.starts_with("id,started_at,"),
        "{}",
        &text[..80.min(text.len())]
    );

    // On a phone's width the page stacks its panels.
    browser.resize(390, 1600).await;
    let phone = browser.screenshot().await;
    std::fs::write(path.with_file_name("dashboard-phone.png"), phone).unwrap();
    browser.resize(1280, 2200).await;

    // A click on a service filters the whole page, and the URL says so.
    let rendered = browser.run(RENDERED, json!([])).await;
    browser
        .run(
            "document.querySelector('#by-service .clickable').click()",
            json!([]),
        )
        .await;
    let hash = browser
        .wait_for(
            "return location.hash.includes('service=') && location.hash",
            "the filter in the URL",
        )
        .await;
    let service = hash
        .as_str()
        .unwrap()
        .split("service=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    browser
        .wait_for(
            &format!(
                "return Number(document.body.dataset.rendered) > {}",
                rendered.as_str().unwrap()
            ),
            "the filtered view",
        )
        .await;
    let shown = browser.run(HEADLINE, json!([])).await;
    let filtered = store
        .metrics(&Filter::new(TimeRange::last_hours(30 * 24)).service(service.as_str()))
        .await
        .unwrap();
    assert_eq!(
        shown["requests"],
        json!(filtered.requests),
        "service {service}"
    );
    assert!(filtered.requests < metrics.requests);

    // A user: only their own usage, and no admin endpoint is ever asked.
    browser
        .run("document.getElementById('sign-out').click()", json!([]))
        .await;
    browser.goto("about:blank").await;
    browser.goto(&url).await;
    browser.run(SIGN_IN, json!([token("alice", "user")])).await;
    browser.wait_for(RENDERED, "the user view").await;
    let shown = browser.run(HEADLINE, json!([])).await;
    let mine = store
        .user_usage(
            "alice",
            &Filter::new(TimeRange::last_hours(30 * 24)),
            Tz::UTC,
        )
        .await
        .unwrap();
    assert_eq!(shown["requests"], json!(mine.metrics.requests));
    let asked: Value = browser
        .run(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)",
            json!([]),
        )
        .await;
    let asked: Vec<&str> = asked
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(asked.iter().any(|p| p.ends_with("/my-usage")), "{asked:?}");
    let budgets = browser.run(BUDGETS, json!([])).await;
    assert_eq!(budgets, json!(["alice-month"]));
    for admin_only in [
        "/alerts/firing",
        "/budgets/status",
        "/dashboard",
        "/metrics",
        "/timeseries",
        "/providers",
        "/users/top",
        "/export",
    ] {
        assert!(
            !asked.iter().any(|p| p.ends_with(admin_only)),
            "{admin_only} in {asked:?}"
        );
    }
    let hidden = browser
        .run("return getComputedStyle(document.querySelector('#top-users').closest('section')).display", json!([]))
        .await;
    assert_eq!(hidden, json!("none"));
    drop(browser);
    audit.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_applications_cookie_signs_the_page_in_without_a_token() {
    let downloads = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-cookie");
    std::fs::create_dir_all(&downloads).unwrap();
    let Some(browser) = Browser::start(&downloads).await else {
        return;
    };
    let (url, store, audit) = serve_with(ApiConfig::new(CookieSession)).await;
    // Without the cookie: the token form, and no error.
    browser.goto(&url).await;
    browser
        .wait_for(
            "return !document.getElementById('sign-in').hidden",
            "the sign-in form",
        )
        .await;
    let message = browser
        .run(
            "return document.getElementById('message').hidden",
            json!([]),
        )
        .await;
    assert_eq!(message, json!(true));
    // With it: the admin view at once.
    browser.set_cookie("session", "ops-admin").await;
    browser.goto("about:blank").await;
    browser.goto(&url).await;
    browser.wait_for(RENDERED, "the admin view").await;
    let shown = browser.run(HEADLINE, json!([])).await;
    let metrics = store
        .metrics(&Filter::new(TimeRange::last_hours(30 * 24)))
        .await
        .unwrap();
    assert_eq!(shown["requests"], json!(metrics.requests));
    drop(browser);
    audit.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_says_where_retention_left_only_the_rollups() {
    let downloads = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-retention");
    std::fs::create_dir_all(&downloads).unwrap();
    let Some(browser) = Browser::start(&downloads).await else {
        return;
    };
    let (url, store, audit) = serve().await;
    let metrics = store
        .metrics(&Filter::new(TimeRange::last_hours(30 * 24)))
        .await
        .unwrap();
    // The records are two weeks deep: a week's policy removes the older ones.
    let policy = RetentionPolicy::keep_records_days(7).unwrap();
    let report = store.apply_retention(&policy).await.unwrap();
    assert!(report.records_removed > 0);
    let before = report.retained.records_before.unwrap();

    browser.goto(&url).await;
    browser.run(SIGN_IN, json!([token("ops", "admin")])).await;
    browser.wait_for(RENDERED, "the admin view").await;
    let note = browser
        .run(
            "const n = document.getElementById('retained'); return [n.hidden, n.dataset.before, n.textContent]",
            json!([]),
        )
        .await;
    assert_eq!(note[0], json!(false), "{note}");
    let said = before.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    assert_eq!(note[1], json!(said));
    assert!(note[2].as_str().unwrap().contains("rollups"), "{note}");
    // The rollups still count every request of the 30 days (the range starts where no
    // record is, so its first quarter hour, read from records, lost none).
    let shown = browser.run(HEADLINE, json!([])).await;
    assert_eq!(shown["requests"], json!(metrics.requests));
    assert_eq!(shown["users"], json!(metrics.unique_users));
    let screenshot = browser.screenshot().await;
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-retention.png");
    std::fs::write(&path, screenshot).unwrap();
    eprintln!("screenshot: {}", path.display());

    // The last 24 hours reach back to no removed record: no note.
    browser.run("location.hash = 'last=24h'", json!([])).await;
    browser
        .wait_for(
            "return document.getElementById('retained').hidden",
            "the note to go",
        )
        .await;
    drop(browser);
    audit.shutdown().await;
}
