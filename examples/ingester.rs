//! Writes the records a fleet of services publishes to NATS JetStream into one store.
//!
//! ```sh
//! # the store (SQLite `usage.db` by default, or DATABASE_URL) and NATS (NATS_URL)
//! cargo run --example ingester --features nats
//! ```
//!
//! Producers publish with `NatsSink` on the same server, stream and subject
//! (`TOWER_USAGE` / `tower-usage.records`, or `NATS_STREAM` / `NATS_SUBJECT`). Start as many
//! ingesters as the store can take: they share the durable consumer `tower-usage-ingester`,
//! each batch going to one of them. A batch's messages are acked only once its transaction
//! has committed; an ingester that is killed leaves its batch to be delivered again, and
//! the store ignores the record ids it already has.
//!
//! Ctrl-C (or SIGTERM) stops it; what it was writing then is delivered again later.

#[path = "shared/signal.rs"]
mod signal;

use tower_usage::sink::nats::{Ingester, NatsConfig};
use tower_usage::store::DieselStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://usage.db".to_owned());
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let mut config = NatsConfig::new(&nats_url);
    if let Ok(stream) = std::env::var("NATS_STREAM") {
        config = config.stream(stream);
    }
    if let Ok(subject) = std::env::var("NATS_SUBJECT") {
        config = config.subject(subject);
    }

    let store = DieselStore::connect(&database_url).await?;
    eprintln!(
        "writing the stream {} at {nats_url} into {} ({} records so far)",
        config.stream_name(),
        store.backend_name(),
        store.count().await?
    );
    let ingester = Ingester::new(config, store.clone());
    ingester.run(signal::shutdown_signal()).await?;
    let stats = ingester.stats();
    eprintln!(
        "stopped: {} messages received, {} records written in {} batches, {} failed, {} unreadable; {} records in the store",
        stats.received,
        stats.written,
        stats.batches,
        stats.failed,
        stats.unreadable,
        store.count().await?
    );
    Ok(())
}
