//! [`Anchor`]: the wall-clock time of a monotonic instant, read once per batch.

use chrono::{DateTime, Utc};
use quanta::Instant;

/// One reading of the monotonic and the wall clock together, to tell the wall-clock time
/// of an [`Instant`] taken shortly before.
///
/// The monotonic clock is quanta's: the CPU's time-stamp counter where it is invariant
/// (about a third of the OS clock's cost on a virtual machine, read three times per
/// request), the OS clock otherwise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Anchor {
    instant: Instant,
    utc: DateTime<Utc>,
}

impl Anchor {
    pub(crate) fn now() -> Self {
        Anchor {
            instant: Instant::now(),
            utc: Utc::now(),
        }
    }

    /// The wall-clock time of `instant`.
    pub(crate) fn at(&self, instant: Instant) -> DateTime<Utc> {
        let shift = |d: std::time::Duration| chrono::Duration::from_std(d).unwrap_or_default();
        if instant <= self.instant {
            self.utc - shift(self.instant - instant)
        } else {
            self.utc + shift(instant - self.instant)
        }
    }
}
