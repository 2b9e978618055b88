//! The optional process-wide recorder behind [`record_usage`].

use std::sync::OnceLock;

use uuid::Uuid;

use super::{RecordError, Recorder};

static INSTALLED: OnceLock<Recorder> = OnceLock::new();

/// Makes `recorder` the process-wide recorder used by [`record_usage`].
///
/// Only the first call succeeds; later calls give the recorder back as the error. The
/// installed recorder lives until the process ends, so call
/// [`Recorder::shutdown`] on it (or a clone) before exiting to write what is still queued.
///
/// ```
/// use tower_usage::{MemorySink, Recorder};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let recorder = Recorder::builder(MemorySink::new()).spawn();
/// tower_usage::install(recorder.clone()).expect("installed once");
/// tower_usage::record_usage("user-1", "batch-job", None, 10, 0, serde_json::Value::Null).unwrap();
/// recorder.shutdown().await;
/// assert_eq!(recorder.stats().written, 1);
/// # }
/// ```
pub fn install(recorder: Recorder) -> Result<(), Recorder> {
    INSTALLED.set(recorder)
}

/// The process-wide recorder, if one was [`install`]ed.
pub fn installed() -> Option<&'static Recorder> {
    INSTALLED.get()
}

/// Records usage that is not an HTTP request through the [`install`]ed recorder; see
/// [`Recorder::record_usage`]. Fails with [`RecordError::NotInstalled`] when there is none.
pub fn record_usage(
    user: impl Into<String>,
    service: impl Into<String>,
    model: Option<&str>,
    tokens_in: u64,
    tokens_out: u64,
    metadata: serde_json::Value,
) -> Result<Uuid, RecordError> {
    installed()
        .ok_or(RecordError::NotInstalled)?
        .record_usage(user, service, model, tokens_in, tokens_out, metadata)
}
