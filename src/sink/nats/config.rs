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
        let stream = match context.get_or_create_stream(config).await {
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
