use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{SinkError, UsageSink};
use crate::record::UsageRecord;

/// Writes each record as one line of JSON (the record's own field names) to stdout, stderr
/// or a file.
///
/// The blocking write happens off the async worker threads. If a write fails half way,
/// the batch is retried, so a file may hold a line twice: readers should keep the first
/// line of each `id`.
///
/// ```no_run
/// use tower_usage::{JsonLinesSink, Recorder};
///
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// let recorder = Recorder::builder(JsonLinesSink::file("usage.jsonl")?).spawn();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JsonLinesSink {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSink").finish_non_exhaustive()
    }
}

impl JsonLinesSink {
    /// Writes to any `Write`.
    pub fn new(out: impl Write + Send + 'static) -> Self {
        JsonLinesSink {
            out: Arc::new(Mutex::new(Box::new(out))),
        }
    }

    /// Writes to standard output.
    pub fn stdout() -> Self {
        Self::new(std::io::stdout())
    }

    /// Writes to standard error.
    pub fn stderr() -> Self {
        Self::new(std::io::stderr())
    }

    /// Appends to the file at `path`, creating it if needed.
    pub fn file(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self::new(std::io::BufWriter::new(file)))
    }
}

#[async_trait]
impl UsageSink for JsonLinesSink {
    async fn write_batch(&self, records: &[UsageRecord]) -> Result<(), SinkError> {
        let mut lines = Vec::with_capacity(records.len() * 512);
        for record in records {
            serde_json::to_writer(&mut lines, record).map_err(SinkError::permanent)?;
            lines.push(b'\n');
        }
        let out = Arc::clone(&self.out);
        let write = move || -> std::io::Result<()> {
            let mut out = out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            out.write_all(&lines)?;
            out.flush()
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime
                .spawn_blocking(write)
                .await
                .map_err(SinkError::transient)?
                .map_err(SinkError::transient),
            Err(_) => write().map_err(SinkError::transient),
        }
    }
}
