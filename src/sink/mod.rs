//! Sinks: where the [`Recorder`](crate::Recorder)'s worker writes batches of records.
//!
//! A sink is anything that implements [`UsageSink`]: the built-in [`MemorySink`] (tests
//! and examples), [`JsonLinesSink`] (stdout or a file), [`FanoutSink`] (several at once),
//! a database store, `nats::NatsSink` (feature `nats`: NATS JetStream, for an
//! `nats::Ingester` to write into the store), or your own (Kafka, a log
//! pipeline…).
//!
//! The worker calls one `write_batch` at a time. A sink must treat a record whose
//! [`id`](crate::UsageRecord::id) it has already stored as written: a batch whose answer
//! was lost is sent again, and must not count twice.

mod fanout;
mod json_lines;
mod memory;
#[cfg(feature = "nats")]
pub mod nats;

pub use fanout::FanoutSink;
pub use json_lines::JsonLinesSink;
pub use memory::MemorySink;

use std::sync::Arc;

use async_trait::async_trait;

use crate::record::UsageRecord;

/// Where finished records go, one batch at a time.
///
/// ```
/// use async_trait::async_trait;
/// use tower_usage::{SinkError, UsageRecord, UsageSink};
///
/// #[derive(Debug)]
/// struct LogSink;
///
/// #[async_trait]
/// impl UsageSink for LogSink {
///     async fn write_batch(&self, records: &[UsageRecord]) -> Result<(), SinkError> {
///         for record in records {
///             println!("{} used {} tokens", record.user.as_deref().unwrap_or("?"), record.tokens.total());
///         }
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait UsageSink: Send + Sync + 'static {
    /// Writes `records`. On `Ok`, all of them are stored (or were already: see the
    /// [module docs](crate::sink)). On `Err`, [`SinkError`] says what happened to the batch.
    async fn write_batch(&self, records: &[UsageRecord]) -> Result<(), SinkError>;
}

impl std::fmt::Debug for dyn UsageSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn UsageSink")
    }
}

#[async_trait]
impl<T: UsageSink + ?Sized> UsageSink for Arc<T> {
    async fn write_batch(&self, records: &[UsageRecord]) -> Result<(), SinkError> {
        (**self).write_batch(records).await
    }
}

#[async_trait]
impl<T: UsageSink + ?Sized> UsageSink for Box<T> {
    async fn write_batch(&self, records: &[UsageRecord]) -> Result<(), SinkError> {
        (**self).write_batch(records).await
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a batch was not (completely) written, and so what the recorder does next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Nothing (or not all) was written, and trying again may work: the recorder retries
    /// the whole batch with backoff.
    #[error("transient sink failure: {0}")]
    Transient(#[source] BoxError),
    /// The batch can never be written: the recorder gives it up and counts it as failed.
    #[error("permanent sink failure: {0}")]
    Permanent(#[source] BoxError),
    /// Every record was written except `count` of them, which can never be: the recorder
    /// counts those as failed and does not retry.
    #[error("{count} record(s) rejected: {reason}")]
    Rejected {
        /// How many records of the batch were not kept.
        count: usize,
        /// Why, for the log.
        reason: String,
    },
}

impl SinkError {
    /// A failure worth retrying (a lost connection, a timeout, a full disk…).
    pub fn transient(error: impl Into<BoxError>) -> Self {
        SinkError::Transient(error.into())
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        SinkError::Permanent(error.into())
    }

    /// The rest of the batch was written; `count` records were refused for `reason`.
    pub fn rejected(count: usize, reason: impl Into<String>) -> Self {
        SinkError::Rejected {
            count,
            reason: reason.into(),
        }
    }
}
