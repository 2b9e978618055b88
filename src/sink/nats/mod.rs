//! Records carried through NATS JetStream (feature `nats`): a fleet of services publishes
//! with [`NatsSink`], and one or more [`Ingester`]s write into the store. Producers never
//! touch the database, and a database outage only grows the stream.
//!
//! ```text
//! service ─ Recorder ─ NatsSink ──publish, a record (or several) a message──▶ JetStream stream
//!                                                                        │ durable pull consumer
//! store ◀── write_batch, then ack ── Ingester (one or several, sharing the consumer)
//! ```
//!
//! * Every message carries its record's id as `Nats-Msg-Id` (a packed message, an id
//!   made from all of its records' ids), so JetStream drops a retried publish within the
//!   stream's duplicate window; the sink waits for the server's ack of every message of a
//!   batch before the batch counts as written.
//! * The ingester acks a batch's messages only after the sink (a
//!   [`DieselStore`](crate::store::DieselStore): its transaction has committed) took them.
//!   An ingester that dies before acking leaves them to be delivered again, and the store
//!   ignores the ids it already has: nothing is lost, nothing counts twice.
//! * The stream and the consumer are created if missing, with the limits of the
//!   [`NatsConfig`].
//!
//! A message is a record as JSON, with the header `Tower-Usage-Encoding: json/1`, or,
//! with [`Encoding::Binary`], in a compact binary form (`bin/1`, about a third of the
//! size). With [`NatsConfig::records_per_message`], a message packs several records
//! (`json-lines/1`: one JSON record a line; `bin-seq/1`: `bin/1` records each after its
//! length), with their number in the header `Tower-Usage-Records`. A message in an
//! encoding this version does not know, or that cannot be read, is set aside
//! (terminated) and counted, never guessed at.

mod binary;
mod codec;
mod config;
mod ingester;
mod sink;

pub use config::{Encoding, NatsConfig, NatsError};
pub use ingester::{Ingester, IngesterStats};
pub use sink::NatsSink;
