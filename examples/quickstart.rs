//! A small axum server under the usage layer. Every request is recorded into SQLite
//! (`usage.db`, or the database `DATABASE_URL` names) and printed as a JSON line.
//!
//! ```sh
//! cargo run --example quickstart            # listens on 127.0.0.1:3000 (or $ADDR)
//! curl localhost:3000/
//! curl -N localhost:3000/stream
//! curl -X POST -H 'x-user-id: alice' localhost:3000/chat
//! curl localhost:3000/usage                  # the last 24 hours' dashboard, as JSON
//! curl localhost:3000/health                 # 200, or 503 with the reasons
//! ```
//!
//! With `--features prometheus`, `GET /metrics` serves the Prometheus exposition.
//!
//! Ctrl-C (or SIGTERM) stops taking requests, lets those in flight finish, writes every
//! record still queued and exits: every request it answered is in the database, once.
//! While the database is away, records wait in `usage.spill` (or `SPILL_DIR`) on disk
//! instead of filling the queue; what is left there when the process stops, or is killed,
//! is written at the next start.
//!
//! For PostgreSQL or MySQL, build with their feature and point `DATABASE_URL` at them:
//! `DATABASE_URL=postgres://… cargo run --example quickstart --features postgres`.

#[path = "shared/demo.rs"]
mod demo;
#[path = "shared/signal.rs"]
mod signal;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());

    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://usage.db".to_owned());

    let (store, recorder, ops) = demo::open(&database_url).await?;

    // The health check (and metrics) beside the demo routes, not metered by them.
    let app = demo::routes(store.clone(), recorder.clone(), None).merge(ops);

    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    eprintln!("listening on http://{addr}; each request prints one JSON line on stdout");
    eprintln!("  curl {addr}/");
    eprintln!("  curl -N {addr}/stream");
    eprintln!("  curl -X POST -H 'x-user-id: alice' {addr}/chat");
    eprintln!("  curl {addr}/usage");
    eprintln!("  curl {addr}/health");

    axum::serve(listener, app)
        .with_graceful_shutdown(signal::shutdown_signal())
        .await?;

    recorder.shutdown().await;
    let stats = recorder.stats();
    let stored = match store.count().await {
        Ok(count) => count.to_string(),
        Err(e) => format!("unknown ({e})"),
    };
    eprintln!(
        "stopped: {} recorded, {} written, {} dropped, {} failed, {} bytes left in the spill \
         for the next start; {stored} records in the database",
        stats.recorded, stats.written, stats.dropped, stats.failed, stats.spill_bytes,
    );
    Ok(())
}
