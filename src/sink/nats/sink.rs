//! [`NatsSink`]: publishes records as JetStream messages, one or several a message, and
//! waits for the acks.

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::Context;
use async_trait::async_trait;

use super::codec;
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
    records_per_message: usize,
    /// The most payload bytes a packed message gathers; a lone record may exceed it.
    packed_bytes: usize,
}

/// The payload a packed message stays under, well within the server's default 1 MiB
/// limit: larger messages gain nothing and hold more records back when one is refused.
const PACKED_BYTES: usize = 64 << 10;

impl NatsSink {
    /// Connects to the server and makes sure the stream exists.
    ///
    /// # Errors
    ///
    /// When the server cannot be reached or the stream cannot be created.
    pub async fn connect(config: &NatsConfig) -> Result<Self, NatsError> {
        let (context, _) = config.connect().await?;
        let max_payload = context.client().server_info().max_payload;
        Ok(NatsSink {
            subject: config.subject_name().to_owned(),
            encoding: config.encoding_used(),
            records_per_message: config.records_per_message_used(),
            packed_bytes: PACKED_BYTES.min(max_payload / 2),
            context,
        })
    }

    /// How many of `encoded` (at least one) the next message takes.
    fn message_len(&self, encoded: &[Vec<u8>]) -> usize {
        let mut bytes = 0;
        let mut n = 0;
        for record in encoded.iter().take(self.records_per_message) {
            bytes += record.len();
            if n > 0 && bytes > self.packed_bytes {
                break;
            }
            n += 1;
        }
        n
    }
}

/// A packed message's id: the same records, packed the same way on a retry, get the
/// same id, so the duplicate window drops them; any other set of records gets another.
fn packed_id(records: &[UsageRecord]) -> String {
    // FNV-1a over every id: a collision would drop records, so all of them count, not
    // the first and the last alone.
    let hash = records
        .iter()
        .flat_map(|r| r.id.as_bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{}+{}.{hash:016x}", records[0].id, records.len())
}

#[async_trait]
impl UsageSink for NatsSink {
    async fn write_batch(&self, records: &[UsageRecord]) -> Result<(), SinkError> {
        let mut encoded = records
            .iter()
            .map(|record| codec::encode(record, self.encoding))
            .collect::<Result<Vec<_>, _>>()
            .map_err(SinkError::permanent)?;
        // Publish them all, then wait for the acks: one round trip per batch, not per
        // message.
        let mut acks = Vec::with_capacity(records.len().div_ceil(self.records_per_message));
        let mut too_large = 0;
        let mut at = 0;
        while at < records.len() {
            let n = self.message_len(&encoded[at..]);
            let (payload, headers) = codec::message(&mut encoded[at..at + n], self.encoding);
            let packed = &records[at..at + n];
            let id = match packed {
                [one] => one.id.to_string(),
                many => packed_id(many),
            };
            let message = PublishMessage::build()
                .payload(payload.into())
                .headers(headers)
                .message_id(id);
            match self
                .context
                .send_publish(self.subject.clone(), message)
                .await
            {
                Ok(ack) => acks.push(ack),
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => too_large += n,
                Err(e) => return Err(SinkError::transient(e)),
            }
            at += n;
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
