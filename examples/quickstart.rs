//! A small axum server under the usage layer. Every request is recorded into SQLite
//! (`usage.db`, or the database `DATABASE_URL` names) and printed as a JSON line.
//!
//! ```sh
//! cargo run --example quickstart            # listens on 127.0.0.1:3000 (or $ADDR)
//! curl localhost:3000/
//! curl -N localhost:3000/stream
//! curl -X POST -H 'x-user-id: alice' localhost:3000/chat
//! curl localhost:3000/usage                  # the last 24 hours' dashboard, as JSON
//! ```
//!
//! Ctrl-C (or SIGTERM) stops taking requests, lets those in flight finish, writes every
//! record still queued and exits: every request it answered is in the database, once.
//!
//! For PostgreSQL or MySQL, build with their feature and point `DATABASE_URL` at them:
//! `DATABASE_URL=postgres://… cargo run --example quickstart --features postgres`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::{routing::get, routing::post, Extension, Json, Router};
use tower_usage::query::{Dashboard, Filter, TimeRange, Tz};
use tower_usage::store::DieselStore;
use tower_usage::{extract, FanoutSink, JsonLinesSink, Recorder, UsageHandle, UsageLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());

    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://usage.db".to_owned());

    let store = DieselStore::connect(&database_url).await?;
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
        .spawn();

    let app = Router::new()
        .route("/", get(|| async { "Hello from tower-usage!\n" }))
        .route("/stream", get(stream))
        .route("/chat", post(chat))
        .route("/usage", get(usage))
        .with_state(store.clone())
        .layer(
            UsageLayer::new(recorder.clone())
                .user(extract::header("x-user-id"))
                .service(extract::fixed("quickstart")),
        );

    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    eprintln!("listening on http://{addr}; each request prints one JSON line on stdout");
    eprintln!("  curl {addr}/");
    eprintln!("  curl -N {addr}/stream");
    eprintln!("  curl -X POST -H 'x-user-id: alice' {addr}/chat");
    eprintln!("  curl {addr}/usage");

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;

    recorder.shutdown().await;
    let stats = recorder.stats();
    eprintln!(
        "stopped: {} recorded, {} written, {} dropped, {} failed; {} records in the database",
        stats.recorded,
        stats.written,
        stats.dropped,
        stats.failed,
        store.count().await?
    );
    Ok(())
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

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    eprintln!("shutting down: finishing requests in flight and writing queued records");
}
