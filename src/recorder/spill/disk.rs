//! The spill's directory: a lock file, and numbered segment files, oldest first.
//!
//! Every call does blocking file I/O; the worker runs them on the blocking pool.
//!
//! Invariants: segments are appended to only at the newest one (the writer); a segment is
//! read only once it is no longer the writer, and removed only after everything it holds
//! was written to the sink; `bytes` is the sum of the segments' lengths.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::segment::HEADER;

/// A segment is closed and a new one started past this size, so that replay reads and
/// removes the spill a few megabytes at a time.
const SEGMENT_BYTES: u64 = 8 << 20;

const LOCK: &str = "LOCK";
const EXTENSION: &str = "seg";

/// Why a spill directory could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpillError {
    /// Another process (or another recorder of this one) holds the directory.
    #[error("the spill directory {0} is in use by another recorder")]
    Locked(PathBuf),
    /// The directory could not be created, listed or locked.
    #[error("the spill directory {0}: {1}")]
    Io(PathBuf, #[source] io::Error),
}

/// Why a batch was not appended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    #[error("the spill is full ({held} of {max} bytes)")]
    Full { held: u64, max: u64 },
    #[error("the spill could not be written: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug)]
struct Segment {
    number: u64,
    bytes: u64,
}

#[derive(Debug)]
pub(crate) struct Disk {
    dir: PathBuf,
    /// Held (locked) for the spill's life; the OS lets go if the process dies.
    _lock: File,
    segments: VecDeque<Segment>,
    /// The newest segment, open for appending.
    writer: Option<File>,
    bytes: u64,
    max_bytes: u64,
    /// Segments numbered below this were left by an earlier process.
    first_own: u64,
}

impl Disk {
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> Result<Disk, SpillError> {
        let failed = |e| SpillError::Io(dir.to_owned(), e);
        fs::create_dir_all(dir).map_err(failed)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))
            .map_err(failed)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(SpillError::Locked(dir.to_owned())),
            Err(TryLockError::Error(e)) => return Err(failed(e)),
        }
        let mut segments = Vec::new();
        for entry in fs::read_dir(dir).map_err(failed)? {
            let entry = entry.map_err(failed)?;
            let path = entry.path();
            let number = path
                .extension()
                .filter(|e| *e == EXTENSION)
                .and_then(|_| path.file_stem()?.to_str()?.parse::<u64>().ok());
            if let Some(number) = number {
                let bytes = entry.metadata().map_err(failed)?.len();
                segments.push(Segment { number, bytes });
            }
        }
        segments.sort_by_key(|s| s.number);
        let first_own = segments.last().map_or(0, |s| s.number + 1);
        Ok(Disk {
            dir: dir.to_owned(),
            _lock: lock,
            bytes: segments.iter().map(|s| s.bytes).sum(),
            segments: segments.into(),
            writer: None,
            max_bytes,
            first_own,
        })
    }

    fn path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number:020}.{EXTENSION}"))
    }

    pub(crate) fn set_max_bytes(&mut self, max_bytes: u64) {
        self.max_bytes = max_bytes;
    }

    /// Bytes the spill holds on disk.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Appends one encoded frame and syncs it to disk. On failure nothing of it counts:
    /// a partly written frame is cut off again (or, if even that fails, left as a torn
    /// tail that reading detects).
    pub(crate) fn append(&mut self, frame: &[u8]) -> Result<(), Refused> {
        let len = frame.len() as u64;
        let new_segment = match (&self.writer, self.segments.back()) {
            (Some(_), Some(newest)) => newest.bytes + len > SEGMENT_BYTES,
            _ => true,
        };
        let header = if new_segment { HEADER.len() as u64 } else { 0 };
        if self.bytes + header + len > self.max_bytes {
            return Err(Refused::Full {
                held: self.bytes,
                max: self.max_bytes,
            });
        }
        if new_segment {
            self.start_segment()?;
        }
        let (Some(file), Some(segment)) = (self.writer.as_mut(), self.segments.back_mut()) else {
            return Err(io::Error::other("no spill segment is open").into());
        };
        let written = file.write_all(frame).and_then(|()| file.sync_data());
        if let Err(e) = written {
            if file.set_len(segment.bytes).is_err() {
                // The torn frame stays; start afresh so nothing follows it.
                self.writer = None;
            }
            return Err(e.into());
        }
        segment.bytes += len;
        self.bytes += len;
        Ok(())
    }

    /// Starts a new segment (header written and synced, its name too) as the writer.
    fn start_segment(&mut self) -> io::Result<()> {
        self.writer = None;
        let number = self
            .segments
            .back()
            .map_or(self.first_own, |s| s.number + 1)
            .max(self.first_own);
        let path = self.path(number);
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        let started = file.write_all(HEADER).and_then(|()| file.sync_data());
        // The new name must survive a crash too.
        let started = started.and_then(|()| File::open(&self.dir)?.sync_all());
        if let Err(e) = started {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        let bytes = HEADER.len() as u64;
        self.segments.push_back(Segment { number, bytes });
        self.bytes += bytes;
        self.writer = Some(file);
        Ok(())
    }

    /// The oldest segment's path, closing it for appends first if it is the newest, and
    /// whether an earlier process left it. Once closed, a segment does not change until it
    /// is removed, so it can be read without holding the directory.
    pub(crate) fn oldest(&mut self) -> Option<(PathBuf, bool)> {
        let oldest = self.segments.front()?;
        if self.segments.len() == 1 {
            self.writer = None;
        }
        Some((self.path(oldest.number), oldest.number < self.first_own))
    }

    /// Removes the oldest segment: everything in it has been written.
    pub(crate) fn remove_oldest(&mut self) -> io::Result<()> {
        let Some(oldest) = self.segments.front() else {
            return Ok(());
        };
        if self.segments.len() == 1 {
            self.writer = None;
        }
        match fs::remove_file(self.path(oldest.number)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.bytes -= oldest.bytes;
        self.segments.pop_front();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::UsageRecord;
    use crate::recorder::spill::segment::{self, Decoded};

    fn read_oldest(disk: &mut Disk) -> (Decoded, bool) {
        let (path, left) = disk.oldest().unwrap();
        (segment::decode(&fs::read(path).unwrap()), left)
    }

    fn dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tower-usage-spill-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn frame(user: &str) -> Vec<u8> {
        segment::encode(&[UsageRecord::builder().user(user).build()]).unwrap()
    }

    fn users(decoded: &Decoded) -> Vec<String> {
        decoded
            .batches
            .iter()
            .flatten()
            .map(|r| r.user.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn a_second_opener_is_refused_and_the_next_process_finds_what_was_left() {
        let dir = dir("reopen");
        let mut disk = Disk::open(&dir, 1 << 20).unwrap();
        assert!(matches!(
            Disk::open(&dir, 1 << 20),
            Err(SpillError::Locked(_))
        ));
        disk.append(&frame("a")).unwrap();
        disk.append(&frame("b")).unwrap();
        drop(disk);

        let mut disk = Disk::open(&dir, 1 << 20).unwrap();
        assert!(!disk.is_empty());
        disk.append(&frame("c")).unwrap();
        let (first, left) = read_oldest(&mut disk);
        assert_eq!((users(&first), left), (vec!["a".into(), "b".into()], true));
        disk.remove_oldest().unwrap();
        let (second, left) = read_oldest(&mut disk);
        assert_eq!((users(&second), left), (vec!["c".into()], false));
        disk.remove_oldest().unwrap();
        assert!(disk.is_empty());
        assert_eq!(disk.bytes(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_spill_refuses_and_counts_nothing() {
        let dir = dir("full");
        let one = frame("a");
        let max = (HEADER.len() + one.len()) as u64;
        let mut disk = Disk::open(&dir, max).unwrap();
        disk.append(&one).unwrap();
        assert!(matches!(
            disk.append(&frame("b")),
            Err(Refused::Full { .. })
        ));
        assert_eq!(disk.bytes(), max);
        fs::remove_dir_all(&dir).unwrap();
    }
}
