//! The analytics API's audit trail: who asked for what, and what they were told.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::filter::TimeRange;
use crate::Outcome;

/// One access to the analytics API, as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct AuditEntry {
    /// The access's unique id (the id of its usage record).
    pub id: Uuid,
    /// When the request arrived.
    pub at: DateTime<Utc>,
    /// Who asked: the authenticated subject; `None` when authentication failed.
    pub subject: Option<String>,
    /// The subject's role (`admin`, `user`), when authenticated.
    pub role: Option<String>,
    /// The HTTP method.
    pub method: String,
    /// The endpoint: the route template the request matched, else its path.
    pub endpoint: String,
    /// The query string as sent (the filter asked for), if any.
    pub query: Option<String>,
    /// The status answered; `None` when the client went away before the answer.
    pub status: Option<u16>,
    /// How the request ended.
    pub outcome: Outcome,
    /// How long the answer took, in microseconds.
    pub duration_us: i64,
    /// Why the request was refused, when it was.
    pub reason: Option<String>,
}

/// Which audit entries to read.
///
/// ```
/// use tower_usage::query::{AuditQuery, TimeRange};
///
/// let refusals = AuditQuery::new(TimeRange::last_days(1)).refused_only().limit(50);
/// assert_eq!(refusals.limit, 50);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditQuery {
    /// When the accesses happened.
    pub range: TimeRange,
    /// Only this subject's accesses.
    pub subject: Option<String>,
    /// Only accesses answered with a status of 400 or more (or never answered).
    pub refused_only: bool,
    /// At most this many entries, newest first (default 100).
    pub limit: usize,
}

impl AuditQuery {
    /// Every access in `range`, newest first, at most 100.
    pub fn new(range: TimeRange) -> Self {
        AuditQuery {
            range,
            subject: None,
            refused_only: false,
            limit: 100,
        }
    }

    /// Only `subject`'s accesses.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Only refused accesses (status 400 or more, or no answer).
    pub fn refused_only(mut self) -> Self {
        self.refused_only = true;
        self
    }

    /// At most `limit` entries.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}
