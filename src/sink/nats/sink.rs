//! [`NatsSink`]: publishes each record as a JetStream message and waits for the acks.

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::Context;
use async_trait::async_trait;

use super::codec::{self, ENCODING_HEADER};
use super::{Encoding, NatsConfig, NatsError};
use crate::record::UsageRecord;
use crate::sink::{SinkError, UsageSink};

/// A sink that publishes records to a NATS JetStream stream, for an
/// [`Ingester`](super::Ingester) to write into the store.
///
/// A batch counts as written once the server has acked every one of its messages; a
/// publish that fails or is not acked makes the batch fail transiently, and the recorder
/// sends it again, which JetStream's duplicate window (keyed by record id) and the store
/// (by id too) both absorb. A record larger than the server's message limit is refused
/// ([`SinkError::Rejected`]); the rest of its batch is kept.
///
/// ```no_run
/// use tower_usage::sink::nats::{NatsConfig, NatsSink};
/// use tower_usage::Recorder;
///
/// # async fn run() -> Result<(), tower_usage::sink::nats::NatsError> {
/// let sink = NatsSink::connect(&NatsConfig::new("nats://127.0.0.1:4222")).await?;
/// let recorder = Recorder::builder(sink).spawn();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct NatsSink {
    context: Context,
    subject: String,
    encoding: Encoding,
}

impl NatsSink {
    /// Connects to the server and makes sure the stream exists.
    ///
    /// # Errors
    ///
    /// When the server cannot be reached or the stream cannot be created.
    pub async fn connect(config: &NatsConfig) -> Result<Self, NatsError> {
        let (context, _) = config.connect().await?;
        Ok(NatsSink {
            context,
            subject: config.subject_name().to_owned(),
            encoding: config.encoding_used(),
        })
    }
}

#[async_trait]
impl UsageSink for NatsSink {
    async fn write_batch(&self, records: &[UsageRecord]) -> Result<(), SinkError> {
        // Publish them all, then wait for the acks: one round trip per batch, not per record.
        let mut acks = Vec::with_capacity(records.len());
        let mut too_large = 0;
        for record in records {
            let payload = codec::encode(record, self.encoding).map_err(SinkError::permanent)?;
            let message = PublishMessage::build()
                .payload(payload.into())
                .message_id(record.id.to_string())
                .header(ENCODING_HEADER, codec::name(self.encoding));
            match self
                .context
                .send_publish(self.subject.clone(), message)
                .await
            {
                Ok(ack) => acks.push(ack),
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => too_large += 1,
                Err(e) => return Err(SinkError::transient(e)),
            }
        }
        for ack in acks {
            ack.await.map_err(SinkError::transient)?;
        }
        if too_large > 0 {
            return Err(SinkError::rejected(
                too_large,
                "larger than the NATS server's message limit",
            ));
        }
        Ok(())
    }
}
