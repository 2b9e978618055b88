//! What operators watch: `GET /health` over every backend (and PostgreSQL taken away
//! through a proxy), and the Prometheus and OpenTelemetry metrics of a recorder writing
//! into a real store.
#![cfg(all(feature = "prometheus", feature = "sqlite", feature = "axum"))]

mod common;

use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use tower_usage::ops::{Health, HealthCheck, Metrics, Unhealthy};
use tower_usage::query::{Filter, TimeRange};
use tower_usage::recorder::Retry;
use tower_usage::store::{AnswerCache, DieselStore};
use tower_usage::{MemorySink, Outcome, Recorder, SinkError, TokenUsage, UsageRecord, UsageSink};

/// `GET path` on `app`: the status, the content type and the body.
async fn get(app: &Router, path: &str) -> (StatusCode, String, String) {
    let request = Request::get(path).body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

async fn health_json(app: &Router) -> (StatusCode, Value) {
    let (status, content_type, body) = get(app, "/health").await;
    assert_eq!(content_type, "application/json");
    (status, serde_json::from_str(&body).unwrap())
}

fn record(user: &str, service: &str, model: &str, tokens: (u64, u64), cost: i64) -> UsageRecord {
    UsageRecord::builder()
        .user(user)
        .service(service)
        .model(model)
        .tokens(TokenUsage::new(tokens.0, tokens.1))
        .cost_micros(cost)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_200_on_every_backend_and_503_with_the_reason_when_the_store_fails() {
    for db in common::db::fresh("health").await {
        let cache = AnswerCache::new(1 << 20);
        let store = DieselStore::builder(&db.url)
            .answer_cache(cache.clone())
            .connect()
            .await
            .unwrap();
        let recorder = Recorder::builder(store.clone()).spawn();
        let health = Health::new()
            .check(store.clone())
            .check(recorder.watch())
            .check(cache);
        let app: Router = health.router();

        let (status, report) = health_json(&app).await;
        assert_eq!(status, StatusCode::OK, "{}: {report}", db.backend);
        assert_eq!(report["status"], "ok");
        assert_eq!(report["reasons"], serde_json::json!([]));
        assert_eq!(report["checks"]["store"]["backend"], db.backend);
        assert_eq!(report["checks"]["store"]["status"], "ok");
        assert_eq!(report["checks"]["recorder"]["status"], "ok");
        assert_eq!(report["checks"]["recorder"]["capacity"], 16_384);
        assert_eq!(report["checks"]["answer_cache"]["capacity_bytes"], 1 << 20);

        // The records table gone: the store answers no longer.
        store.revert_migrations().await.unwrap();
        let (status, report) = health_json(&app).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}: {report}",
            db.backend
        );
        assert_eq!(report["status"], "unavailable");
        let reasons = report["reasons"].as_array().unwrap();
        assert_eq!(reasons.len(), 1, "{}: {report}", db.backend);
        assert!(
            reasons[0]
                .as_str()
                .unwrap()
                .starts_with("store: the store does not answer: "),
            "{}: {report}",
            db.backend
        );
        assert_eq!(report["checks"]["store"]["status"], "unavailable");
        assert_eq!(report["checks"]["recorder"]["status"], "ok");

        recorder.shutdown().await;
        let (status, report) = health_json(&app).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(report["reasons"]
            .as_array()
            .unwrap()
            .contains(&Value::from("recorder: the recorder's worker has stopped")));
        db.cleanup().await;
    }
}

/// Polls `app`'s health until `want(status, report)` or ten seconds pass.
async fn health_until(app: &Router, want: impl Fn(StatusCode, &Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, report) = health_json(app).await;
        if want(status, &report) {
            return report;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "health never turned as expected: {status} {report}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_taken_away_turns_health_to_503_and_back_without_losing_a_record() {
    let Some((db, proxy, proxied_url)) = common::proxy::postgres_behind_proxy("healthout").await
    else {
        // `fresh` fails under CI without the server, and says the skip otherwise.
        return;
    };
    let store = DieselStore::connect(&proxied_url).await.unwrap();
    let metrics = Metrics::new();
    let recorder = Recorder::builder(store.clone())
        .batch_size(10)
        .flush_interval(Duration::from_millis(20))
        .write_timeout(Duration::from_millis(500))
        .retry(Retry::backoff(
            Duration::from_millis(20),
            Duration::from_millis(100),
        ))
        .observer(metrics.clone())
        .spawn();
    metrics.watch(recorder.watch());
    let health = Health::new()
        .timeout(Duration::from_millis(500))
        .check(store.clone())
        .check(recorder.watch());
    let app: Router = health.router();
    assert_eq!(health_json(&app).await.0, StatusCode::OK);

    proxy.take_down();
    for i in 0..20 {
        recorder
            .record(record(&format!("u{i}"), "chat", "m", (1, 1), 1))
            .unwrap();
    }
    let report = health_until(&app, |status, report| {
        let reasons = report["reasons"].to_string();
        status == StatusCode::SERVICE_UNAVAILABLE
            && reasons.contains("store: ")
            && reasons.contains("recorder: the sink has failed")
    })
    .await;
    assert!(
        report["checks"]["recorder"]["failing_attempts"]
            .as_u64()
            .unwrap()
            >= 3
    );
    let text = metrics.render();
    assert!(
        text.contains(r#"tower_usage_write_duration_seconds_count{result="failed"}"#),
        "{text}"
    );

    proxy.bring_back();
    health_until(&app, |status, _| status == StatusCode::OK).await;
    recorder.shutdown().await;
    assert_eq!(store.count().await.unwrap(), 20);
    let stats = recorder.stats();
    assert_eq!((stats.written, stats.failed, stats.dropped), (20, 0, 0));
    drop(proxy);
    db.cleanup().await;
}

/// A sink that never answers.
#[derive(Debug)]
struct Hung;

#[async_trait]
impl UsageSink for Hung {
    async fn write_batch(&self, _records: &[UsageRecord]) -> Result<(), SinkError> {
        std::future::pending().await
    }
}

#[derive(Debug)]
struct Slow;

#[async_trait]
impl HealthCheck for Slow {
    fn name(&self) -> &str {
        "slow"
    }
    async fn check(&self) -> Result<Value, Unhealthy> {
        std::future::pending().await
    }
}

#[derive(Debug)]
struct Panics;

#[async_trait]
impl HealthCheck for Panics {
    fn name(&self) -> &str {
        "panics"
    }
    async fn check(&self) -> Result<Value, Unhealthy> {
        panic!("a check of the user's that panics")
    }
}

#[tokio::test]
async fn a_full_queue_a_hung_check_and_a_panicking_check_are_reasons_not_failures() {
    // The worker takes one record and hangs writing it; the next nine wait in the queue.
    let recorder = Recorder::builder(Hung)
        .queue_capacity(10)
        .batch_size(1)
        .spawn();
    recorder
        .record(record("first", "chat", "m", (1, 1), 1))
        .unwrap();
    while recorder.watch().queue_len() > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for i in 0..9 {
        recorder
            .record(record(&format!("u{i}"), "chat", "m", (1, 1), 1))
            .unwrap();
    }
    let health = Health::new()
        .timeout(Duration::from_millis(100))
        .check(recorder.watch())
        .check(Slow)
        .check(Panics);
    let report = health.report().await;
    assert_eq!(
        report.reasons,
        [
            "recorder: the recorder's queue is nearly full (9 of 10 records)",
            "slow: no answer within 100ms",
            "panics: the check panicked",
        ]
    );
    assert_eq!(report.checks["recorder"]["in_queue"], 9);
    assert_eq!(report.checks["recorder"]["queued"], 10);
    assert!(!report.healthy());
    assert!(
        Health::new().report().await.healthy(),
        "no checks, nothing wrong"
    );
}

/// The value of the exposition's line for `series` (name and labels, as written).
fn value_of(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exposition_counts_what_the_recorder_wrote_into_a_real_store() {
    let cache = AnswerCache::new(1 << 20);
    let store = DieselStore::builder("sqlite::memory:")
        .answer_cache(cache.clone())
        .connect()
        .await
        .unwrap();
    let metrics = Metrics::new();
    let recorder = Recorder::builder(store.clone())
        .observer(metrics.clone())
        .spawn();
    metrics.watch(recorder.watch());
    metrics.watch_cache(cache);

    recorder
        .record(record("alice", "chat", "gpt-4o", (1_000, 100), 2_500))
        .unwrap();
    recorder
        .record(record("bob", "chat", "gpt-4o", (500, 50), 1_250))
        .unwrap();
    let failed = UsageRecord::builder()
        .user("bob")
        .service("embed")
        .model("e-3")
        .tokens(TokenUsage::new(7, 0))
        .outcome(Outcome::ServerError)
        .build();
    recorder.record(failed).unwrap();
    recorder.record(UsageRecord::builder().build()).unwrap();
    recorder.flush().await;
    let week = Filter::new(TimeRange::last_days(7));
    store.metrics(&week).await.unwrap();
    store.metrics(&week).await.unwrap();

    let app: Router = metrics.router();
    let (status, content_type, text) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    let chat = r#"service="chat",model="gpt-4o",outcome="success""#;
    let embed = r#"service="embed",model="e-3",outcome="server_error""#;
    let expected = [
        (format!("tower_usage_requests_total{{{chat}}}"), 2.0),
        (format!("tower_usage_requests_total{{{embed}}}"), 1.0),
        (
            r#"tower_usage_requests_total{service="",model="",outcome="success"}"#.to_owned(),
            1.0,
        ),
        (
            format!("tower_usage_tokens_total{{{chat},direction=\"input\"}}"),
            1_500.0,
        ),
        (
            format!("tower_usage_tokens_total{{{chat},direction=\"output\"}}"),
            150.0,
        ),
        (
            format!("tower_usage_tokens_total{{{embed},direction=\"input\"}}"),
            7.0,
        ),
        (format!("tower_usage_cost_micros_total{{{chat}}}"), 3_750.0),
        ("tower_usage_recorder_recorded_total".to_owned(), 4.0),
        ("tower_usage_recorder_written_total".to_owned(), 4.0),
        ("tower_usage_recorder_dropped_total".to_owned(), 0.0),
        ("tower_usage_recorder_queued".to_owned(), 0.0),
        ("tower_usage_recorder_spilled_total".to_owned(), 0.0),
        ("tower_usage_recorder_spill_bytes".to_owned(), 0.0),
        ("tower_usage_recorder_queue_capacity".to_owned(), 16_384.0),
        ("tower_usage_recorder_running".to_owned(), 1.0),
        (
            r#"tower_usage_write_duration_seconds_count{result="written"}"#.to_owned(),
            1.0,
        ),
    ];
    for (series, want) in expected {
        assert_eq!(value_of(&text, &series), Some(want), "{series} in\n{text}");
    }
    assert!(
        value_of(&text, "tower_usage_answer_cache_hits_total").unwrap() >= 1.0,
        "{text}"
    );
    assert!(
        value_of(&text, "tower_usage_answer_cache_misses_total").unwrap() >= 1.0,
        "{text}"
    );
    assert!(
        text.contains("# TYPE tower_usage_write_duration_seconds histogram"),
        "{text}"
    );

    // Names come from requests: past a thousand label sets, the rest is counted as one.
    for i in 0..1_100 {
        recorder
            .record(record("u", &format!("svc-{i}"), "m", (1, 0), 0))
            .unwrap();
    }
    recorder.shutdown().await;
    let text = metrics.render();
    let series = text
        .lines()
        .filter(|l| l.starts_with("tower_usage_requests_total{"))
        .count();
    assert!(series <= 1_001, "{series} series");
    let other = value_of(
        &text,
        r#"tower_usage_requests_total{service="(other)",model="(other)",outcome="success"}"#,
    );
    let counted: f64 = text
        .lines()
        .filter(|l| l.starts_with("tower_usage_requests_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(other.unwrap() >= 100.0, "{other:?}");
    assert_eq!(counted, 1_104.0, "nothing is lost past the bound");
    assert_eq!(value_of(&text, "tower_usage_recorder_running"), Some(0.0));
}

#[tokio::test]
async fn metrics_register_into_a_registry_of_the_service() {
    let metrics = Metrics::new();
    let recorder = Recorder::builder(MemorySink::new())
        .observer(metrics.clone())
        .spawn();
    recorder
        .record(record("a", "chat", "m", (3, 4), 5))
        .unwrap();
    recorder.shutdown().await;
    let mut registry = prometheus_client::registry::Registry::default();
    let own = prometheus_client::metrics::counter::Counter::<u64>::default();
    own.inc();
    registry.register("my_own", "A counter of the service's", own);
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("my_own_total 1"), "{text}");
    assert!(
        text.contains(
            r#"tower_usage_requests_total{service="chat",model="m",outcome="success"} 1"#
        ),
        "{text}"
    );
    assert!(
        !text.contains("tower_usage_recorder_"),
        "nothing watched, nothing shown: {text}"
    );
}

#[cfg(feature = "otel")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_counters_reach_an_opentelemetry_meter() {
    use opentelemetry::metrics::MeterProvider;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let store = DieselStore::connect("sqlite::memory:").await.unwrap();
    let metrics = Metrics::new();
    let recorder = Recorder::builder(store).observer(metrics.clone()).spawn();
    metrics.watch(recorder.watch());
    metrics.export_to(&provider.meter("test"));
    metrics.export_to(&provider.meter("test")); // a second call does nothing

    recorder
        .record(record("alice", "chat", "gpt-4o", (1_000, 100), 2_500))
        .unwrap();
    recorder
        .record(record("bob", "chat", "gpt-4o", (10, 1), 25))
        .unwrap();
    recorder.flush().await;
    provider.force_flush().unwrap();

    // A point's attributes as `k=v` sorted by name: the SDK keeps no order.
    fn attributes<'a>(kvs: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> String {
        let mut kvs: Vec<String> = kvs.map(|kv| format!("{}={}", kv.key, kv.value)).collect();
        kvs.sort();
        kvs.join(",")
    }
    // Every figure by name: the sum of its points (the count, for a histogram), and the
    // attributes of its points.
    let mut figures = std::collections::BTreeMap::new();
    for resource in exporter.get_finished_metrics().unwrap() {
        for scope in resource.scope_metrics() {
            for metric in scope.metrics() {
                let mut points = Vec::new();
                match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                        for p in sum.data_points() {
                            points.push((attributes(p.attributes()), p.value() as f64));
                        }
                    }
                    AggregatedMetrics::U64(MetricData::Gauge(gauge)) => {
                        for p in gauge.data_points() {
                            points.push((String::new(), p.value() as f64));
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
                        for p in histogram.data_points() {
                            points.push((attributes(p.attributes()), p.count() as f64));
                        }
                    }
                    other => panic!("unexpected data for {}: {other:?}", metric.name()),
                }
                figures.insert(metric.name().to_owned(), points);
            }
        }
    }
    let one = |name: &str| -> Vec<(String, f64)> {
        figures
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {figures:?}"))
    };
    // Attributes sorted by name.
    let chat = "model=gpt-4o,outcome=success,service=chat";
    assert_eq!(one("tower_usage.requests"), [(chat.to_owned(), 2.0)]);
    assert_eq!(one("tower_usage.cost"), [(chat.to_owned(), 2_525.0)]);
    let mut tokens = one("tower_usage.tokens");
    tokens.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        tokens,
        [
            (format!("direction=input,{chat}"), 1_010.0),
            (format!("direction=output,{chat}"), 101.0),
        ]
    );
    assert_eq!(one("tower_usage.recorder.written"), [(String::new(), 2.0)]);
    assert_eq!(
        one("tower_usage.recorder.queue_capacity"),
        [(String::new(), 16_384.0)]
    );
    let writes = one("tower_usage.write.duration");
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].0, "result=written");
    assert!(writes[0].1 >= 1.0);
    assert!(
        !figures.contains_key("tower_usage.answer_cache.hits")
            || one("tower_usage.answer_cache.hits").is_empty(),
        "the cache is not watched: {figures:?}"
    );
    recorder.shutdown().await;
    provider.shutdown().unwrap();
}
