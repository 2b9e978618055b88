//! [`Spill`]: a durable spill for the recorder. Batches the sink cannot take yet are kept
//! in segment files on disk and written from there, in order, once it answers again.
//!
//! `segment` holds the file format, `disk` the directory (its lock, its segments and its
//! size cap). The worker drives both; it runs every file operation on tokio's blocking
//! pool, through the methods here.

mod disk;
mod segment;

pub use disk::SpillError;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::record::UsageRecord;
pub(crate) use disk::Refused;
pub(crate) use segment::Decoded;

/// A segment read from the spill: its batches, and whether an earlier process left it;
/// `None` when the spill was empty.
pub(crate) type ReadSegment = std::io::Result<Option<(Decoded, bool)>>;

/// A directory where the recorder keeps the batches its sink cannot take yet; given to
/// [`RecorderBuilder::spill`](crate::recorder::RecorderBuilder::spill).
///
/// A batch whose write fails transiently goes to the spill when any of these holds:
///
/// * it has been failing for longer than [`after`](Self::after) (default 2 s);
/// * it is out of its [`Retry`](crate::recorder::Retry) budget;
/// * the queue holds [`high_water`](Self::high_water) records or more (default: half of
///   it), so that records are not dropped at the door while the worker retries;
/// * the recorder is shutting down.
///
/// While the spill holds records, newer batches are appended behind them, and the oldest
/// are written to the sink with the retry's backoff, so records reach the sink in the order
/// they were spilled. Each batch is checksummed and synced to disk before it counts as
/// [`spilled`](crate::RecorderStats::spilled); a torn or corrupt end of a segment (a crash
/// mid-write, a bad disk) is detected, counted in
/// [`spill_damaged`](crate::RecorderStats::spill_damaged) and skipped.
///
/// What is still in the spill when the process stops, or is killed, is written by the next
/// recorder that opens the same directory; a lock file keeps two recorders from sharing
/// one. A segment is removed only once all of it was written, so after a crash the last
/// batches written may be written again: records keep their ids, and a sink that ignores
/// known ids (as [`DieselStore`](crate::store) does) stores each once.
///
/// When the spill holds [`max_bytes`](Self::max_bytes) (default 1 GiB), batches it cannot
/// take are given up and counted in
/// [`spill_refused`](crate::RecorderStats::spill_refused) and `failed`.
///
/// ```
/// use std::time::Duration;
/// use tower_usage::{recorder::Spill, MemorySink, Recorder};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("tower-usage-doc-spill-{}", std::process::id()));
/// let spill = Spill::open(&dir)?                 // e.g. "/var/lib/my-service/usage.spill"
///     .max_bytes(256 << 20)
///     .after(Duration::from_secs(5));
/// let recorder = Recorder::builder(MemorySink::new()).spill(spill).spawn();
/// recorder.record_usage("alice", "chat", None, 10, 5, serde_json::Value::Null)?;
/// recorder.shutdown().await;
/// assert_eq!(recorder.stats().written, 1);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Spill {
    disk: Arc<Mutex<disk::Disk>>,
    dir: PathBuf,
    after: Duration,
    high_water: Option<usize>,
}

impl Spill {
    /// Opens (creating it if needed) and locks the spill directory `dir`. What an earlier
    /// process left there is written first once the recorder runs.
    ///
    /// # Errors
    ///
    /// [`SpillError::Locked`] when another recorder holds the directory, in this process
    /// or another; [`SpillError::Io`] when it cannot be created, listed or locked.
    pub fn open(dir: impl AsRef<Path>) -> Result<Spill, SpillError> {
        let dir = dir.as_ref();
        Ok(Spill {
            disk: Arc::new(Mutex::new(disk::Disk::open(dir, 1 << 30)?)),
            dir: dir.to_owned(),
            after: Duration::from_secs(2),
            high_water: None,
        })
    }

    /// The most bytes the spill keeps on disk (default 1 GiB); batches beyond it are given
    /// up and counted.
    #[must_use]
    pub fn max_bytes(self, bytes: u64) -> Self {
        self.lock().set_max_bytes(bytes);
        self
    }

    /// How long a batch keeps failing before it goes to the spill (default 2 s).
    #[must_use]
    pub fn after(mut self, after: Duration) -> Self {
        self.after = after;
        self
    }

    /// How many queued records make a failing batch go to the spill at once (default:
    /// half the queue's capacity).
    #[must_use]
    pub fn high_water(mut self, records: usize) -> Self {
        self.high_water = Some(records.max(1));
        self
    }

    /// The spill's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes held on disk when the spill was opened: what an earlier process left.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes()
    }

    fn lock(&self) -> MutexGuard<'_, disk::Disk> {
        lock(&self.disk)
    }

    pub(crate) fn after_duration(&self) -> Duration {
        self.after
    }

    pub(crate) fn high_water_for(&self, capacity: usize) -> usize {
        self.high_water.unwrap_or(capacity.div_ceil(2).max(1))
    }

    /// Whether the spill holds a segment (written or being replayed).
    pub(crate) fn holds_records(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Runs `f` on the directory on tokio's blocking pool. The future owns what it needs,
    /// so the worker can do other work while it runs.
    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Mutex<disk::Disk>) -> std::io::Result<T> + Send + 'static,
    ) -> impl Future<Output = std::io::Result<T>> + Send + 'static {
        let disk = Arc::clone(&self.disk);
        async move {
            tokio::task::spawn_blocking(move || f(&disk))
                .await
                .map_err(std::io::Error::other)?
        }
    }

    /// Appends one batch, synced to disk. Returns the bytes held after it.
    pub(crate) async fn append(&self, records: &[UsageRecord]) -> Result<u64, Refused> {
        let frame = segment::encode(records).map_err(std::io::Error::other)?;
        let appended = self.blocking(move |disk| {
            let mut disk = lock(disk);
            Ok(disk.append(&frame).map(|()| disk.bytes()))
        });
        appended.await?
    }

    /// Reads the oldest segment, without holding the directory while it reads: its
    /// batches, and whether an earlier process left it; `None` when the spill is empty.
    pub(crate) fn read_oldest(&self) -> impl Future<Output = ReadSegment> + Send + 'static {
        self.blocking(|disk| {
            let Some((path, left_by_earlier)) = lock(disk).oldest() else {
                return Ok(None);
            };
            let bytes = std::fs::read(path)?;
            Ok(Some((segment::decode(&bytes), left_by_earlier)))
        })
    }

    /// Removes the oldest segment, all of it written. Returns the bytes held after it.
    pub(crate) async fn remove_oldest(&self) -> std::io::Result<u64> {
        self.blocking(|disk| {
            let mut disk = lock(disk);
            disk.remove_oldest().map(|()| disk.bytes())
        })
        .await
    }
}

/// The directory's state stays whole whatever panicked while holding it: every change to
/// it is made after the file operation it describes succeeded.
fn lock(disk: &Mutex<disk::Disk>) -> MutexGuard<'_, disk::Disk> {
    disk.lock().unwrap_or_else(PoisonError::into_inner)
}
