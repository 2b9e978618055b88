//! Which records a query looks at.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::QueryError;
use crate::{ClientPlatform, Outcome};

/// A half-open span of time, `[from, to)`: a record started at `to` belongs to the next
/// range, so adjacent ranges never count a record twice. Kept to the microsecond, as the
/// store keeps times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    /// The first instant inside the range.
    pub from: DateTime<Utc>,
    /// The first instant after the range.
    pub to: DateTime<Utc>,
}

impl TimeRange {
    /// `[from, to)`. Checked when a query runs: `from` must be before `to`.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use tower_usage::query::TimeRange;
    ///
    /// let november = TimeRange::between(
    ///     Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
    ///     Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
    /// );
    /// assert_eq!(november.len().as_secs(), 30 * 86_400);
    /// ```
    pub fn between(from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        TimeRange { from, to }
    }

    /// The span that ends now and lasts `length`.
    pub fn last(length: Duration) -> Self {
        let to = Utc::now();
        let length = chrono::Duration::from_std(length).unwrap_or(chrono::Duration::MAX);
        let from = to
            .checked_sub_signed(length)
            .unwrap_or(DateTime::UNIX_EPOCH);
        TimeRange { from, to }
    }

    /// The last `hours` hours, up to now.
    pub fn last_hours(hours: u32) -> Self {
        Self::last(Duration::from_secs(u64::from(hours) * 3_600))
    }

    /// The last `days` days (of 24 hours), up to now.
    pub fn last_days(days: u32) -> Self {
        Self::last(Duration::from_secs(u64::from(days) * 86_400))
    }

    /// How long the range lasts (zero when it is empty or reversed).
    pub fn len(&self) -> Duration {
        (self.to - self.from).to_std().unwrap_or_default()
    }

    /// Whether the range holds no instant.
    pub fn is_empty(&self) -> bool {
        self.from >= self.to
    }

    /// The bounds in microseconds since the epoch, after checking them.
    pub(crate) fn micros(&self, max: Duration) -> Result<(i64, i64), QueryError> {
        let (from, to) = (self.from.timestamp_micros(), self.to.timestamp_micros());
        if from < 0 || self.to > max_instant() {
            return Err(QueryError::RangeOutOfBounds);
        }
        if from >= to {
            return Err(QueryError::EmptyRange {
                from: self.from,
                to: self.to,
            });
        }
        if self.len() > max {
            return Err(QueryError::RangeTooLong {
                days: (self.to - self.from).num_days(),
                max_days: i64::try_from(max.as_secs() / 86_400).unwrap_or(i64::MAX),
            });
        }
        Ok((from, to))
    }
}

fn max_instant() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The class of a response's status code, or none when no response head was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusClass {
    /// 1xx.
    Informational,
    /// 2xx.
    Success,
    /// 3xx.
    Redirection,
    /// 4xx.
    ClientError,
    /// 5xx.
    ServerError,
    /// No status: the service failed or the client left before the head.
    None,
}

impl StatusClass {
    /// The class of `status`.
    ///
    /// ```
    /// use tower_usage::query::StatusClass;
    /// assert_eq!(StatusClass::of(Some(http::StatusCode::TOO_MANY_REQUESTS)), StatusClass::ClientError);
    /// assert_eq!(StatusClass::of(None), StatusClass::None);
    /// ```
    pub fn of(status: Option<http::StatusCode>) -> Self {
        match status.map(|s| s.as_u16() / 100) {
            Some(1) => StatusClass::Informational,
            Some(2) => StatusClass::Success,
            Some(3) => StatusClass::Redirection,
            Some(4) => StatusClass::ClientError,
            Some(5) => StatusClass::ServerError,
            _ => StatusClass::None,
        }
    }

    /// The first digit of the class's codes; 0 for [`StatusClass::None`].
    pub(crate) fn code(self) -> i16 {
        match self {
            StatusClass::Informational => 1,
            StatusClass::Success => 2,
            StatusClass::Redirection => 3,
            StatusClass::ClientError => 4,
            StatusClass::ServerError => 5,
            StatusClass::None => 0,
        }
    }
}

/// Which records a query covers: a time range and any combination of equality filters.
///
/// ```
/// use tower_usage::query::{Filter, TimeRange};
/// use tower_usage::Outcome;
///
/// let filter = Filter::new(TimeRange::last_days(7))
///     .service("chat")
///     .model("gpt-4o")
///     .outcome(Outcome::ServerError);
/// assert_eq!(filter.service.as_deref(), Some("chat"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Filter {
    /// The records' start times.
    pub range: TimeRange,
    /// Only this user's records.
    pub user: Option<String>,
    /// Only this service's records.
    pub service: Option<String>,
    /// Only records for this model.
    pub model: Option<String>,
    /// Only records for this provider.
    pub provider: Option<String>,
    /// Only records with this outcome.
    pub outcome: Option<Outcome>,
    /// Only records whose status is in this class.
    pub status_class: Option<StatusClass>,
    /// Only records from this kind of client.
    pub client: Option<ClientPlatform>,
    /// Only records from this country.
    pub country: Option<String>,
}

/// Every record of the last 30 days.
impl Default for Filter {
    fn default() -> Self {
        Filter::new(TimeRange::last_days(30))
    }
}

impl Filter {
    /// Every record in `range`.
    pub fn new(range: TimeRange) -> Self {
        Filter {
            range,
            user: None,
            service: None,
            model: None,
            provider: None,
            outcome: None,
            status_class: None,
            client: None,
            country: None,
        }
    }

    /// Every record of the last `length`, up to now.
    pub fn last(length: Duration) -> Self {
        Filter::new(TimeRange::last(length))
    }

    /// Only `user`'s records.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Only records of `service`.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// Only records for `model`.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Only records for `provider`.
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// Only records that ended with `outcome`.
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = Some(outcome);
        self
    }

    /// Only records whose status is in `class`.
    pub fn status_class(mut self, class: StatusClass) -> Self {
        self.status_class = Some(class);
        self
    }

    /// Only records from `client`.
    pub fn client(mut self, client: ClientPlatform) -> Self {
        self.client = Some(client);
        self
    }

    /// Only records from `country`.
    pub fn country(mut self, country: impl Into<String>) -> Self {
        self.country = Some(country.into());
        self
    }

    /// The same filter over another range.
    pub fn with_range(mut self, range: TimeRange) -> Self {
        self.range = range;
        self
    }

    /// Whether `record` passes every part of the filter, range included.
    ///
    /// ```
    /// use tower_usage::query::{Filter, TimeRange};
    /// use tower_usage::UsageRecord;
    ///
    /// let mut record = UsageRecord::builder().user("alice").build();
    /// record.started_at -= chrono::Duration::minutes(1);
    /// let filter = Filter::new(TimeRange::last_hours(1));
    /// assert!(filter.clone().user("alice").matches(&record));
    /// assert!(!filter.user("bob").matches(&record));
    /// ```
    pub fn matches(&self, record: &crate::UsageRecord) -> bool {
        fn eq(want: &Option<String>, have: &Option<String>) -> bool {
            want.is_none() || want == have
        }
        let at = record.started_at.timestamp_micros();
        at >= self.range.from.timestamp_micros()
            && at < self.range.to.timestamp_micros()
            && eq(&self.user, &record.user)
            && eq(&self.service, &record.service)
            && eq(&self.model, &record.model)
            && eq(&self.provider, &record.provider)
            && eq(&self.country, &record.country)
            && self.outcome.is_none_or(|o| o == record.outcome)
            && self.client.is_none_or(|c| c == record.client)
            && self
                .status_class
                .is_none_or(|c| c == StatusClass::of(record.status))
    }

    /// Refuses empty names; the range is checked by [`TimeRange::micros`].
    pub(crate) fn check_names(&self) -> Result<(), QueryError> {
        let names = [
            ("user", &self.user),
            ("service", &self.service),
            ("model", &self.model),
            ("provider", &self.provider),
            ("country", &self.country),
        ];
        for (field, value) in names {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(QueryError::EmptyName { field });
            }
        }
        Ok(())
    }
}
