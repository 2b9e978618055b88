//! The quick start's demo routes, store and recorder, shared by the examples that
//! serve them (`quickstart`, `analytics_server`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::{routing::get, routing::post, Extension, Json, Router};
use tower_usage::alert::{BudgetLayer, Budgets};
use tower_usage::ops::Health;
use tower_usage::query::{Dashboard, Filter, TimeRange, Tz};
use tower_usage::recorder::{Spill, SpillError};
use tower_usage::store::{AnswerCache, DieselStore};
use tower_usage::{extract, FanoutSink, JsonLinesSink, Recorder, UsageHandle, UsageLayer};

/// Connects to `database_url` and starts a recorder that writes there, through a spill on
/// disk while the database is away, and prints each record as a JSON line on stdout. The analytics read through an answer cache of
/// `ANSWER_CACHE_MB` megabytes (64 by default; 0 turns it off). It sees this process's
/// writes; for several processes over one database, build with `redis` and set
/// `REDIS_URL`, so that each sees the others' writes through Redis.
///
/// Also returns what operators watch, to serve outside the usage layer: `GET /health`
/// (the store, the recorder, the cache) and, with feature `prometheus`, `GET /metrics`.
pub(crate) async fn open(
    database_url: &str,
) -> Result<(DieselStore, Recorder, Router), Box<dyn std::error::Error>> {
    let megabytes = match std::env::var("ANSWER_CACHE_MB") {
        Ok(mb) => mb
            .parse::<u64>()
            .map_err(|_| format!("ANSWER_CACHE_MB={mb:?}: give a number of megabytes"))?,
        Err(_) => 64,
    };
    let mut builder = DieselStore::builder(database_url);
    if megabytes > 0 {
        builder = builder.answer_cache(answer_cache(megabytes << 20)?);
    }
    let store = builder.connect().await?;
    eprintln!(
        "recording into {} ({} records so far)",
        store.backend_name(),
        store.count().await?
    );
    let sink = FanoutSink::new()
        .with(store.clone())
        .with(JsonLinesSink::stdout());
    let recorder = Recorder::builder(sink)
        .flush_interval(Duration::from_millis(200))
        .spill(spill()?);
    #[cfg(feature = "prometheus")]
    let metrics = tower_usage::ops::Metrics::new();
    #[cfg(feature = "prometheus")]
    let recorder = recorder.observer(metrics.clone());
    let recorder = recorder.spawn();

    let mut health = Health::new().check(store.clone()).check(recorder.watch());
    if let Some(cache) = store.answer_cache() {
        health = health.check(cache.clone());
    }
    let ops = health.router();
    #[cfg(feature = "prometheus")]
    let ops = {
        metrics.watch(recorder.watch());
        if let Some(cache) = store.answer_cache() {
            metrics.watch_cache(cache.clone());
        }
        ops.merge(metrics.router())
    };
    Ok((store, recorder, ops))
}

/// The recorder's spill: the folder `SPILL_DIR` names, `usage.spill` (beside `usage.db`) by
/// default. While the database is down, records wait there instead of being dropped from a
/// full queue, and what a stopped or killed process left there is written at the next start.
fn spill() -> Result<Spill, Box<dyn std::error::Error>> {
    let dir = std::env::var("SPILL_DIR").unwrap_or_else(|_| "usage.spill".to_owned());
    let spill = Spill::open(&dir).map_err(|e| match e {
        SpillError::Locked(_) => format!("{e}: give each process its own SPILL_DIR"),
        e => e.to_string(),
    })?;
    if spill.bytes() > 0 {
        eprintln!(
            "{dir} holds {} bytes of records left by an earlier run; writing them first",
            spill.bytes()
        );
    }
    Ok(spill)
}

/// An in-process cache of `bytes`, or with feature `redis` and `REDIS_URL` set, one
/// whose write log is shared with every other process of the demo on that server.
fn answer_cache(bytes: u64) -> Result<AnswerCache, Box<dyn std::error::Error>> {
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var("REDIS_URL") {
        eprintln!("the answer cache shares its write log through {url}");
        return Ok(AnswerCache::shared(
            bytes,
            &url,
            "tower-usage-demo:answers",
        )?);
    }
    Ok(AnswerCache::new(bytes))
}

/// `/`, `/stream`, `/chat` and `/usage`, metered into `recorder`, and held to
/// `budgets` when given.
pub(crate) fn routes(store: DieselStore, recorder: Recorder, budgets: Option<Budgets>) -> Router {
    let router = Router::new()
        .route("/", get(|| async { "Hello from tower-usage!\n" }))
        .route("/stream", get(stream))
        .route("/chat", post(chat))
        .route("/usage", get(usage))
        .with_state(store);
    // Inside the usage layer, which names the user and the service it checks.
    let router = match budgets {
        Some(budgets) => router.layer(BudgetLayer::new(budgets)),
        None => router,
    };
    router.layer(
        UsageLayer::new(recorder)
            .user(extract::header("x-user-id"))
            .service(extract::fixed("quickstart")),
    )
}

/// `GET /stream`: 100 server-sent events.
async fn stream() -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let events = futures_util::stream::unfold(0u32, |i| async move {
        if i == 100 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        Some((Ok(Event::default().data(format!("event {i}"))), i + 1))
    });
    Sse::new(events)
}

/// `POST /chat`: pretends to call a model and reports what it used.
async fn chat(Extension(usage): Extension<UsageHandle>) -> &'static str {
    usage.set_model("demo-model-1");
    usage.set_provider("demo");
    usage.add_tokens(42, 7);
    "Hi! (42 tokens in, 7 out)\n"
}

/// `GET /usage[?tz=Area/City]`: the dashboard over the last 24 hours.
async fn usage(
    State(store): State<DieselStore>,
    RawQuery(query): RawQuery,
) -> Result<Json<Dashboard>, (StatusCode, String)> {
    let tz = match query.as_deref().and_then(|q| q.strip_prefix("tz=")) {
        None => Tz::UTC,
        Some(name) => name.replace("%2F", "/").parse().map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                format!("unknown time zone {name:?}\n"),
            )
        })?,
    };
    let filter = Filter::new(TimeRange::last_hours(24));
    match store.dashboard(&filter, tz).await {
        Ok(dashboard) => Ok(Json(dashboard)),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))),
    }
}
