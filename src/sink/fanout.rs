use std::sync::Arc;

use async_trait::async_trait;

use super::{SinkError, UsageSink};
use crate::record::UsageRecord;

/// Writes every batch to several sinks, for example a database and a JSON-lines log.
///
/// The sinks are written in order. If one fails transiently, the batch is retried on all
/// of them, so every sink must ignore ids it already holds (the built-in ones do).
/// Otherwise the most serious failure is reported: transient over permanent over
/// rejected records.
///
/// ```
/// use tower_usage::{FanoutSink, JsonLinesSink, MemorySink};
///
/// let memory = MemorySink::new();
/// let sink = FanoutSink::new().with(memory.clone()).with(JsonLinesSink::stdout());
/// ```
#[derive(Clone, Default)]
pub struct FanoutSink {
    sinks: Vec<Arc<dyn UsageSink>>,
}

impl std::fmt::Debug for FanoutSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutSink")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl FanoutSink {
    /// A fan-out to no sink yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sink.
    pub fn with(mut self, sink: impl UsageSink) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }
}

#[async_trait]
impl UsageSink for FanoutSink {
    async fn write_batch(&self, records: &[UsageRecord]) -> Result<(), SinkError> {
        let mut worst: Option<SinkError> = None;
        for sink in &self.sinks {
            if let Err(error) = sink.write_batch(records).await {
                worst = Some(match worst {
                    Some(previous) if rank(&previous) >= rank(&error) => previous,
                    _ => error,
                });
            }
        }
        worst.map_or(Ok(()), Err)
    }
}

fn rank(error: &SinkError) -> u8 {
    match error {
        SinkError::Transient(_) => 2,
        SinkError::Permanent(_) => 1,
        SinkError::Rejected { .. } => 0,
    }
}
