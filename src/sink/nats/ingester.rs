//! [`Ingester`]: reads records from the stream's durable consumer and writes them into a
//! sink (the store), acking each batch only once the sink has it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::{AckKind, Message};
use futures_util::StreamExt;

use super::codec;
use super::{NatsConfig, NatsError};
use crate::record::UsageRecord;
use crate::recorder::stats::Counters;
use crate::recorder::Retry;
use crate::sink::{SinkError, UsageSink};

/// Writes the records of a JetStream stream into a sink, usually a
/// [`DieselStore`](crate::store::DieselStore): this is how a fleet of services that
/// publish with [`NatsSink`](super::NatsSink) feeds one store.
///
/// It reads a durable pull consumer (created if missing) in batches, writes each batch in
/// one `write_batch` call (retried with backoff while it fails transiently), and acks its
/// messages only then. Several ingesters may share one consumer: each batch goes to one
/// of them. A batch the sink refuses for good is acked as terminated and counted, as is a
/// message that cannot be read.
///
/// ```no_run
/// use tower_usage::sink::nats::{Ingester, NatsConfig};
/// use tower_usage::store::DieselStore;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = DieselStore::connect("postgres://localhost/usage").await?;
/// let ingester = Ingester::new(NatsConfig::new("nats://127.0.0.1:4222"), store);
/// ingester.run(async { tokio::signal::ctrl_c().await.unwrap() }).await?;
/// println!("{:?}", ingester.stats());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Ingester {
    config: NatsConfig,
    sink: Arc<dyn UsageSink>,
    consumer: String,
    batch_size: usize,
    max_wait: Duration,
    ack_wait: Duration,
    retry: Retry,
    counters: Arc<Tally>,
}

/// Records read from the consumer, and the messages that carried them (acked together
/// once the records are written).
#[derive(Default)]
struct Batch {
    records: Vec<UsageRecord>,
    messages: Vec<Message>,
}

#[derive(Debug, Default)]
struct Tally {
    received: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
    unreadable: AtomicU64,
    batches: AtomicU64,
    retried: AtomicU64,
}

/// What an [`Ingester`] has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IngesterStats {
    /// Messages received (a message delivered again counts again).
    pub received: u64,
    /// Records the sink took (a record the store already had counts too).
    pub written: u64,
    /// Records the sink refused for good; their messages were terminated.
    pub failed: u64,
    /// Messages that could not be read as records; terminated.
    pub unreadable: u64,
    /// Batches written.
    pub batches: u64,
    /// Batch writes that failed transiently and were tried again.
    pub retried: u64,
}

impl Ingester {
    /// Reads the stream of `config` through the consumer `tower-usage-ingester` and writes
    /// into `sink`, 1,024 records a batch at most.
    pub fn new(config: NatsConfig, sink: impl UsageSink) -> Self {
        Ingester {
            config,
            sink: Arc::new(sink),
            consumer: "tower-usage-ingester".to_owned(),
            batch_size: 1_024,
            max_wait: Duration::from_millis(500),
            ack_wait: Duration::from_secs(60),
            retry: Retry::default(),
            counters: Arc::default(),
        }
    }

    /// The durable consumer's name; ingesters that share it share the work.
    #[must_use]
    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = name.into();
        self
    }

    /// The most records written in one batch (default 1,024; at least 1). A batch ends
    /// at a message's end, so with packed messages it may hold a message's records more.
    #[must_use]
    pub fn batch_size(mut self, size: usize) -> Self {
        self.batch_size = size.max(1);
        self
    }

    /// How long a batch waits to fill before what arrived is written (default 500 ms).
    #[must_use]
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// How long the server waits for an ack before delivering a message again, to this
    /// or another ingester (default 60 s; set when the consumer is created). Longer than a
    /// batch write takes.
    #[must_use]
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// How failed batch writes are retried (default: forever, 100 ms doubling to 10 s).
    #[must_use]
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> IngesterStats {
        let c = &self.counters;
        IngesterStats {
            received: c.received.load(Relaxed),
            written: c.written.load(Relaxed),
            failed: c.failed.load(Relaxed),
            unreadable: c.unreadable.load(Relaxed),
            batches: c.batches.load(Relaxed),
            retried: c.retried.load(Relaxed),
        }
    }

    /// Writes what arrives until `shutdown` completes. A batch being written then is not
    /// acked and is delivered again later, to this consumer's next reader.
    ///
    /// # Errors
    ///
    /// When the server cannot be reached at start, or the stream or the consumer cannot
    /// be created. Once running, a lost connection is waited out.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), NatsError> {
        let (_, stream) = self.config.connect().await?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                &self.consumer,
                pull::Config {
                    durable_name: Some(self.consumer.clone()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.ack_wait,
                    max_ack_pending: i64::try_from(self.batch_size.saturating_mul(4))
                        .unwrap_or(i64::MAX),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| NatsError::JetStream {
                what: format!("consumer {}", self.consumer),
                reason: e.to_string(),
            })?;
        tokio::pin!(shutdown);
        tokio::select! {
            () = &mut shutdown => {}
            () = self.ingest(&consumer) => {}
        }
        Ok(())
    }

    async fn ingest(&self, consumer: &PullConsumer) {
        let mut backoff = self.retry.initial_backoff;
        loop {
            // A continuous pull: the server sends the next messages while a batch is
            // being written, so reading and writing overlap.
            let pulled = consumer
                .stream()
                .max_messages_per_batch(self.batch_size)
                .messages()
                .await;
            let mut stream = match pulled {
                Ok(stream) => {
                    backoff = self.retry.initial_backoff;
                    stream
                }
                Err(error) => {
                    tracing::warn!(%error, ?backoff, "tower-usage: cannot read from NATS; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2).min(self.retry.max_backoff);
                    continue;
                }
            };
            while let Some(batch) = self.next_batch(&mut stream).await {
                self.write(batch).await;
            }
        }
    }

    /// Up to a batch of records: waits for the first message, then `max_wait` at most
    /// for the rest. `None` once the pull has ended (it is started again).
    async fn next_batch(&self, stream: &mut pull::Stream) -> Option<Batch> {
        let mut batch = Batch::default();
        let mut received = 0;
        let mut deadline = None;
        while batch.records.len() < self.batch_size {
            let next = match deadline {
                None => stream.next().await,
                Some(at) => match tokio::time::timeout_at(at, stream.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            match next {
                Some(Ok(message)) => {
                    received += 1;
                    self.take(&mut batch, message).await;
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.max_wait);
                }
                Some(Err(error)) => {
                    // A missed heartbeat or a lost connection: the pull goes on, and what
                    // came so far is written.
                    tracing::debug!(%error, "tower-usage: a NATS pull was interrupted");
                    if received == 0 {
                        // Not in a tight loop while the server is away.
                        tokio::time::sleep(self.retry.initial_backoff).await;
                    }
                    break;
                }
                None if received == 0 => return None,
                None => break,
            }
        }
        Counters::add(&self.counters.received, received);
        Some(batch)
    }

    /// Adds a message's records to `batch`, or terminates the message when it cannot be
    /// read (all of it: its records are not guessed at).
    async fn take(&self, batch: &mut Batch, message: Message) {
        match codec::decode(message.headers.as_ref(), &message.payload) {
            Ok(records) => {
                batch.records.extend(records);
                batch.messages.push(message);
            }
            Err(reason) => {
                tracing::error!(%reason, subject = %message.subject, "tower-usage: a NATS message is not a record; terminated");
                Counters::add(&self.counters.unreadable, 1);
                ack(&message, AckKind::Term).await;
            }
        }
    }

    /// Writes one batch, retrying transient failures, then acks its messages.
    async fn write(&self, batch: Batch) {
        if batch.records.is_empty() {
            return;
        }
        let kind = self.write_records(&batch.records).await;
        for message in &batch.messages {
            ack(message, kind).await;
        }
    }

    /// Writes `records` until the sink takes them or refuses them for good; says how to
    /// ack their messages.
    async fn write_records(&self, records: &[UsageRecord]) -> AckKind {
        let mut backoff = self.retry.initial_backoff;
        let mut retries = 0u32;
        loop {
            let error = match self.sink.write_batch(records).await {
                Ok(()) => {
                    Counters::add(&self.counters.written, records.len());
                    Counters::add(&self.counters.batches, 1);
                    return AckKind::Ack;
                }
                Err(SinkError::Rejected { count, reason }) => {
                    let count = count.min(records.len());
                    tracing::warn!(count, %reason, "tower-usage: sink rejected records from NATS");
                    Counters::add(&self.counters.written, records.len() - count);
                    Counters::add(&self.counters.failed, count);
                    Counters::add(&self.counters.batches, 1);
                    return AckKind::Ack;
                }
                Err(error @ SinkError::Permanent(_)) => {
                    tracing::error!(%error, records = records.len(), "tower-usage: batch from NATS given up; terminated");
                    Counters::add(&self.counters.failed, records.len());
                    return AckKind::Term;
                }
                Err(error) => error,
            };
            if self.retry.max_retries.is_some_and(|max| retries >= max) {
                tracing::error!(%error, records = records.len(), "tower-usage: batch from NATS not written; left for redelivery");
                return AckKind::Nak(None);
            }
            tracing::warn!(%error, records = records.len(), ?backoff, "tower-usage: batch from NATS not written; retrying");
            retries += 1;
            Counters::add(&self.counters.retried, 1);
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2).min(self.retry.max_backoff);
        }
    }
}

/// Acks a message; a lost ack only means the message comes again, which ids absorb.
async fn ack(message: &Message, kind: AckKind) {
    if let Err(error) = message.ack_with(kind).await {
        tracing::warn!(%error, "tower-usage: a NATS ack was not sent; the message will come again");
    }
}
