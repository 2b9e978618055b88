//! [`NatsConfig`]: the server, the stream and its limits, shared by the sink and the
//! ingester.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// Where records travel: a NATS server, a JetStream stream and the subject records are
/// published on. Both [`NatsSink`](super::NatsSink) and [`Ingester`](super::Ingester)
/// create the stream if it is missing, with these limits.
///
/// ```
/// use std::time::Duration;
/// use tower_usage::sink::nats::NatsConfig;
///
/// let config = NatsConfig::new("nats://127.0.0.1:4222")
///     .stream("USAGE")
///     .subject("usage.records")
///     .max_bytes(10 << 30)
///     .max_age(Duration::from_secs(7 * 24 * 3600));
/// assert_eq!(config.stream_name(), "USAGE");
/// ```
#[derive(Debug, Clone)]
pub struct NatsConfig {
    url: String,
    stream: String,
    subject: String,
    max_bytes: Option<u64>,
    max_age: Option<Duration>,
    duplicate_window: Duration,
    encoding: Encoding,
    records_per_message: usize,
}

/// How [`NatsSink`](super::NatsSink) encodes a record in its message; every
/// [`Ingester`](super::Ingester) reads both, by the message's `Tower-Usage-Encoding`
/// header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Encoding {
    /// `json/1`: the record's serde JSON, readable by any tool (the default).
    #[default]
    Json,
    /// `bin/1`: a compact binary form, about a third of the JSON's size and cheaper to
    /// write and read. Ingesters of this crate before it cannot read it: upgrade them
    /// first.
    Binary,
}

/// How many times a stream's creation is asked for when the server fails to make it.
const CREATE_ATTEMPTS: u64 = 4;

/// Whether the server answered a stream's creation with its own failure (a 500), which
/// may pass, rather than a refusal of the request.
fn server_failed(error: &async_nats::jetstream::context::CreateStreamError) -> bool {
    use async_nats::jetstream::context::CreateStreamErrorKind;
    matches!(error.kind(), CreateStreamErrorKind::JetStream(e) if e.code() == 500)
}

/// Why NATS could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The server could not be reached.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect {
        /// The server's URL.
        url: String,
        /// The client's error.
        reason: String,
    },
    /// The stream or the consumer could not be found or created.
    #[error("JetStream {what}: {reason}")]
    JetStream {
        /// What was asked for.
        what: String,
        /// The server's or the client's error.
        reason: String,
    },
}

impl NatsConfig {
    /// The server at `url`; the stream `TOWER_USAGE` on the subject `tower-usage.records`,
    /// kept on disk without size or age limit, with a 2-minute duplicate window.
    pub fn new(url: impl Into<String>) -> Self {
        NatsConfig {
            url: url.into(),
            stream: "TOWER_USAGE".to_owned(),
            subject: "tower-usage.records".to_owned(),
            max_bytes: None,
            max_age: None,
            duplicate_window: Duration::from_secs(120),
            encoding: Encoding::Json,
            records_per_message: 1,
        }
    }

    /// The stream's name.
    #[must_use]
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = name.into();
        self
    }

    /// The subject records are published on (the stream's only subject).
    #[must_use]
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }

    /// The most bytes the stream keeps; past it, the oldest messages go.
    #[must_use]
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// How long the stream keeps a message.
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// How long JetStream remembers a message id to drop a retried publish (default 2
    /// minutes): longer than a producer retries one batch.
    #[must_use]
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// The stream's name.
    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// How the sink encodes records (default [`Encoding::Json`]).
    #[must_use]
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// How many records the sink packs into one message at most (default 1; at least
    /// 1), within 64 KiB of payload.
    ///
    /// With one record a message, the message id is the record's id, and JetStream's
    /// duplicate window drops a retried record whatever batch it comes back in. Packed,
    /// each message costs the server, the ingester and the acks one message's work for
    /// many records, which is most of the transport's cost; its id is made from every id
    /// it holds, so a batch sent again the same way is dropped as a duplicate, and a
    /// record that comes back packed with others is stored once all the same (the store
    /// keeps one row per id). Every [`Ingester`](super::Ingester) of this version reads
    /// packed messages (`json-lines/1`, `bin-seq/1`); upgrade them before the producers.
    ///
    /// ```
    /// use tower_usage::sink::nats::{Encoding, NatsConfig};
    ///
    /// let config = NatsConfig::new("nats://127.0.0.1:4222")
    ///     .encoding(Encoding::Binary)
    ///     .records_per_message(64);
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn records_per_message(mut self, records: usize) -> Self {
        self.records_per_message = records.max(1);
        self
    }

    pub(crate) fn records_per_message_used(&self) -> usize {
        self.records_per_message
    }

    pub(crate) fn encoding_used(&self) -> Encoding {
        self.encoding
    }

    pub(crate) fn subject_name(&self) -> &str {
        &self.subject
    }

    /// Connects, and gets the stream, creating it if missing.
    pub(crate) async fn connect(&self) -> Result<(jetstream::Context, stream::Stream), NatsError> {
        let client = async_nats::connect(&self.url)
            .await
            .map_err(|e| NatsError::Connect {
                url: self.url.clone(),
                reason: e.to_string(),
            })?;
        let context = jetstream::new(client);
        let config = stream::Config {
            name: self.stream.clone(),
            subjects: vec![self.subject.clone()],
            storage: stream::StorageType::File,
            max_bytes: self
                .max_bytes
                .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
            max_age: self.max_age.unwrap_or_default(),
            duplicate_window: self.duplicate_window,
            ..Default::default()
        };
        let mut attempts = 1;
        let created = loop {
            match context.get_or_create_stream(config.clone()).await {
                // The server may fail to make a new stream's files for a moment: seen when
                // another stream of the account was deleted at the same instant, taking
                // the account's stream folder with it. That answer (a 500) is asked again.
                Err(e) if attempts < CREATE_ATTEMPTS && server_failed(&e) => {
                    tokio::time::sleep(Duration::from_millis(100 * attempts)).await;
                    attempts += 1;
                }
                created => break created,
            }
        };
        let stream = match created {
            Ok(stream) => stream,
            // Producers that start together race to create the stream: the server creates
            // it for one and may refuse the others (its subjects now overlap those of the
            // stream just made). The stream is there either way; a real refusal leaves it
            // missing and is reported.
            Err(create) => {
                context
                    .get_stream(&self.stream)
                    .await
                    .map_err(|_| NatsError::JetStream {
                        what: format!("stream {}", self.stream),
                        reason: create.to_string(),
                    })?
            }
        };
        Ok((context, stream))
    }
}
