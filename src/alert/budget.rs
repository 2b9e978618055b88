//! What a budget is: a limit on one measure of the records in a scope, over a period,
//! with warning thresholds. Checked when made, so a stored or enforced budget is always
//! one that makes sense.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::query::Granularity;
use crate::store::definitions::valid_name;
use crate::UsageRecord;

/// The longest name a budget or a rule may have (it is a path segment of the API).
pub const MAX_NAME_LEN: usize = crate::store::definitions::MAX_NAME_LEN;
/// The longest rolling window, in hours (31 days).
pub const MAX_ROLLING_HOURS: u32 = 31 * 24;
/// The longest name a scope may hold, as a record's text fields are kept.
const MAX_SCOPE_LEN: usize = 256;

/// What a budget limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Cost, in micro-units of the currency (records without a cost count 0).
    Cost,
    /// Input plus output tokens.
    Tokens,
    /// Records: one a request.
    Requests,
}

impl Measure {
    /// How much of this measure `record` used: nothing for a request refused before
    /// the service ran.
    pub fn of(self, record: &UsageRecord) -> u64 {
        if record.outcome == crate::Outcome::Refused {
            return 0;
        }
        match self {
            Measure::Cost => u64::try_from(record.cost_micros.unwrap_or(0)).unwrap_or(0),
            Measure::Tokens => record.tokens.total(),
            Measure::Requests => 1,
        }
    }
}

/// Which records a budget counts: those whose every named field equals the scope's
/// value. A scope that names nothing counts every record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Only this user's records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Only this service's records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Only this model's records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Only this provider's records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

impl Scope {
    /// Every record.
    pub fn everything() -> Scope {
        Scope::default()
    }

    /// One user's records.
    pub fn user(user: impl Into<String>) -> Scope {
        Scope {
            user: Some(user.into()),
            ..Scope::default()
        }
    }

    /// Narrows the scope to one service.
    pub fn and_service(mut self, service: impl Into<String>) -> Scope {
        self.service = Some(service.into());
        self
    }

    /// Narrows the scope to one model.
    pub fn and_model(mut self, model: impl Into<String>) -> Scope {
        self.model = Some(model.into());
        self
    }

    /// Narrows the scope to one provider.
    pub fn and_provider(mut self, provider: impl Into<String>) -> Scope {
        self.provider = Some(provider.into());
        self
    }

    /// Whether a record with these values counts.
    pub(crate) fn covers(&self, values: &ScopeValues<'_>) -> bool {
        let one = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|want| have == Some(want))
        };
        one(&self.user, values.user)
            && one(&self.service, values.service)
            && one(&self.model, values.model)
            && one(&self.provider, values.provider)
    }

    fn fields(&self) -> [(&'static str, &Option<String>); 4] {
        [
            ("user", &self.user),
            ("service", &self.service),
            ("model", &self.model),
            ("provider", &self.provider),
        ]
    }
}

/// A request's or a record's values of the scope fields, as its record has (or will
/// have) them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ScopeValues<'a> {
    pub(crate) user: Option<&'a str>,
    pub(crate) service: Option<&'a str>,
    pub(crate) model: Option<&'a str>,
    pub(crate) provider: Option<&'a str>,
}

impl<'a> ScopeValues<'a> {
    pub(crate) fn of(record: &'a UsageRecord) -> Self {
        ScopeValues {
            user: record.user.as_deref(),
            service: record.service.as_deref(),
            model: record.model.as_deref(),
            provider: record.provider.as_deref(),
        }
    }
}

/// The time a budget's spend is counted over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// From local midnight to the next, in the budget's time zone.
    Day,
    /// From Monday 00:00 local to the next Monday.
    Week,
    /// From the first of the month, 00:00 local, to the first of the next.
    Month,
    /// The current UTC hour and the `hours - 1` before it: spend leaves the window an
    /// hour at a time.
    Rolling {
        /// The window's length, from 1 to [`MAX_ROLLING_HOURS`].
        hours: u32,
    },
}

/// The stretch of time a budget counts at one moment, and when it next changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// The first instant counted.
    pub(crate) from: DateTime<Utc>,
    /// When a calendar period ends (the spend starts again from zero), or when the
    /// oldest hour of a rolling window leaves it.
    pub(crate) until: DateTime<Utc>,
}

impl Period {
    /// The window that holds `now`.
    pub(crate) fn window(self, now: DateTime<Utc>, tz: Tz) -> Window {
        let calendar = |g: Granularity| {
            let from = g.bucket_start(now, tz);
            Window {
                from,
                until: g.next_start(from, tz),
            }
        };
        match self {
            Period::Day => calendar(Granularity::Day),
            Period::Week => calendar(Granularity::Week),
            Period::Month => calendar(Granularity::Month),
            Period::Rolling { hours } => {
                let hour = Granularity::Hour.bucket_start(now, Tz::UTC);
                Window {
                    from: hour - Duration::hours(i64::from(hours) - 1),
                    until: hour + Duration::hours(1),
                }
            }
        }
    }
}

/// A limit on one measure of the records in a scope, over a period.
///
/// ```
/// use tower_usage::alert::{Budget, Measure, Period, Scope};
///
/// let budget = Budget::new("alice-monthly", Scope::user("alice"), Measure::Cost, 5_000_000, Period::Month)
///     .time_zone("America/New_York".parse().unwrap())
///     .warn_at([50, 80, 100])
///     .check()?;
/// assert!(budget.enforce);
/// # Ok::<(), tower_usage::alert::BudgetError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Budget {
    /// Unique; letters, digits, `.`, `_` and `-`, at most [`MAX_NAME_LEN`].
    pub name: String,
    /// Which records count.
    #[serde(default)]
    pub scope: Scope,
    /// What is counted.
    pub measure: Measure,
    /// The most the scope may use in one period, at least 1 and at most
    /// [`UsageRecord::MAX_AMOUNT`].
    pub limit: u64,
    /// The time the spend is counted over.
    pub period: Period,
    /// The zone whose calendar a day, week or month follows (default UTC).
    #[serde(default = "utc")]
    #[cfg_attr(feature = "api", schema(value_type = String, example = "Europe/Berlin"))]
    pub time_zone: Tz,
    /// Percentages of the limit (1 to 100, ascending) whose crossing is reported.
    #[serde(default)]
    pub warn_at: Vec<u8>,
    /// Whether [`BudgetLayer`](super::BudgetLayer) refuses requests once the limit is
    /// spent (a hard budget; the default); `false` only reports.
    #[serde(default = "yes")]
    pub enforce: bool,
}

fn utc() -> Tz {
    Tz::UTC
}

fn yes() -> bool {
    true
}

/// Why a budget was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// The name is empty, too long or has characters other than letters, digits, `.`,
    /// `_` and `-`.
    #[error("a budget's name is 1 to {MAX_NAME_LEN} letters, digits, '.', '_' or '-'; got {0:?}")]
    BadName(String),
    /// A scope field is empty, blank, has surrounding white space or is too long.
    #[error("the scope's {field} must be a non-empty name without surrounding spaces, at most {MAX_SCOPE_LEN} bytes")]
    BadScope {
        /// The field.
        field: &'static str,
    },
    /// The limit is zero or beyond what a record can hold.
    #[error("the limit must be from 1 to {max}; got {limit}", max = UsageRecord::MAX_AMOUNT)]
    BadLimit {
        /// The limit given.
        limit: u64,
    },
    /// A rolling window of no hours or of more than [`MAX_ROLLING_HOURS`].
    #[error("a rolling window is 1 to {MAX_ROLLING_HOURS} hours; got {hours}")]
    BadWindow {
        /// The hours given.
        hours: u32,
    },
    /// A warning threshold outside 1 to 100 percent.
    #[error("warning thresholds are percentages from 1 to 100; got {percent}")]
    BadThreshold {
        /// The threshold given.
        percent: u8,
    },
    /// No budget of this name.
    #[error("no budget named {0:?}")]
    Unknown(String),
}

impl Budget {
    /// A hard budget in UTC without warnings; see the builder methods and
    /// [`check`](Self::check).
    pub fn new(
        name: impl Into<String>,
        scope: Scope,
        measure: Measure,
        limit: u64,
        period: Period,
    ) -> Budget {
        Budget {
            name: name.into(),
            scope,
            measure,
            limit,
            period,
            time_zone: Tz::UTC,
            warn_at: Vec::new(),
            enforce: true,
        }
    }

    /// Sets the zone of a calendar period.
    pub fn time_zone(mut self, tz: Tz) -> Budget {
        self.time_zone = tz;
        self
    }

    /// Sets the warning thresholds, in percent of the limit.
    pub fn warn_at(mut self, percents: impl IntoIterator<Item = u8>) -> Budget {
        self.warn_at = percents.into_iter().collect();
        self
    }

    /// Makes the budget report only: requests are never refused for it.
    pub fn soft(mut self) -> Budget {
        self.enforce = false;
        self
    }

    /// The budget if it makes sense, its thresholds sorted and without repeats.
    pub fn check(mut self) -> Result<Budget, BudgetError> {
        if !valid_name(&self.name) {
            return Err(BudgetError::BadName(self.name));
        }
        for (field, value) in self.scope.fields() {
            if let Some(value) = value {
                if value.is_empty() || value.trim() != value || value.len() > MAX_SCOPE_LEN {
                    return Err(BudgetError::BadScope { field });
                }
            }
        }
        if self.limit == 0 || self.limit > UsageRecord::MAX_AMOUNT {
            return Err(BudgetError::BadLimit { limit: self.limit });
        }
        if let Period::Rolling { hours } = self.period {
            if hours == 0 || hours > MAX_ROLLING_HOURS {
                return Err(BudgetError::BadWindow { hours });
            }
        }
        if let Some(&percent) = self.warn_at.iter().find(|p| !(1..=100).contains(*p)) {
            return Err(BudgetError::BadThreshold { percent });
        }
        self.warn_at.sort_unstable();
        self.warn_at.dedup();
        Ok(self)
    }

    /// The window of the period that holds `now`.
    pub(crate) fn window(&self, now: DateTime<Utc>) -> Window {
        self.period.window(now, self.time_zone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn budget() -> Budget {
        Budget::new("b", Scope::everything(), Measure::Cost, 10, Period::Day)
    }

    #[test]
    fn nonsense_is_refused_with_what_is_wrong() {
        let bad = |b: Budget| b.check().unwrap_err();
        for name in ["", "a b", "ä", "x/y", &"n".repeat(129)] {
            let mut b = budget();
            b.name = name.to_owned();
            assert_eq!(bad(b), BudgetError::BadName(name.to_owned()));
        }
        let mut b = budget();
        b.scope = Scope::user(" alice");
        assert_eq!(bad(b), BudgetError::BadScope { field: "user" });
        let mut b = budget();
        b.scope = Scope::everything().and_model("");
        assert_eq!(bad(b), BudgetError::BadScope { field: "model" });
        for limit in [0, UsageRecord::MAX_AMOUNT + 1, u64::MAX] {
            let mut b = budget();
            b.limit = limit;
            assert_eq!(bad(b), BudgetError::BadLimit { limit });
        }
        for hours in [0, MAX_ROLLING_HOURS + 1] {
            let mut b = budget();
            b.period = Period::Rolling { hours };
            assert_eq!(bad(b), BudgetError::BadWindow { hours });
        }
        assert_eq!(
            bad(budget().warn_at([50, 0])),
            BudgetError::BadThreshold { percent: 0 }
        );
        assert_eq!(
            bad(budget().warn_at([101])),
            BudgetError::BadThreshold { percent: 101 }
        );
        let ok = budget().warn_at([100, 50, 80, 50]).check().unwrap();
        assert_eq!(ok.warn_at, [50, 80, 100]);
    }

    #[test]
    fn json_with_unknown_fields_or_negative_limits_is_refused() {
        let parse = |text: &str| serde_json::from_str::<Budget>(text);
        let good = r#"{"name":"a","measure":"cost","limit":5,"period":"month","time_zone":"America/New_York"}"#;
        let b = parse(good).unwrap();
        assert!(b.enforce && b.scope == Scope::everything());
        assert!(parse(r#"{"name":"a","measure":"cost","limit":-5,"period":"day"}"#).is_err());
        assert!(parse(
            r#"{"name":"a","measure":"cost","limit":5,"period":"day","time_zone":"Mars/Olympus"}"#
        )
        .is_err());
        assert!(parse(
            r#"{"name":"a","scope":{"team":"x"},"measure":"cost","limit":5,"period":"day"}"#
        )
        .is_err());
        assert!(parse(r#"{"name":"a","measure":"joules","limit":5,"period":"day"}"#).is_err());
        let rolling =
            parse(r#"{"name":"a","measure":"tokens","limit":5,"period":{"rolling":{"hours":24}}}"#);
        assert_eq!(rolling.unwrap().period, Period::Rolling { hours: 24 });
    }

    #[test]
    fn a_monthly_budget_in_new_york_resets_at_local_midnight_of_the_first() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let b =
            Budget::new("m", Scope::everything(), Measure::Cost, 1, Period::Month).time_zone(ny);
        // 03:59 UTC on 1 December is still 30 November, 22:59, in New York (EST, −5).
        let before = Utc.with_ymd_and_hms(2026, 12, 1, 3, 59, 0).unwrap();
        let w = b.window(before);
        assert_eq!(w.from, Utc.with_ymd_and_hms(2026, 11, 1, 4, 0, 0).unwrap()); // EDT, −4
        assert_eq!(w.until, Utc.with_ymd_and_hms(2026, 12, 1, 5, 0, 0).unwrap());
        let after = Utc.with_ymd_and_hms(2026, 12, 1, 5, 0, 0).unwrap();
        assert_eq!(b.window(after).from, after);
        // Across the spring change, a day is 23 hours long.
        let d = Budget::new("d", Scope::everything(), Measure::Cost, 1, Period::Day).time_zone(ny);
        let w = d.window(Utc.with_ymd_and_hms(2026, 3, 8, 12, 0, 0).unwrap());
        assert_eq!(w.until - w.from, Duration::hours(23));
    }

    #[test]
    fn a_rolling_window_holds_the_current_hour_and_those_before() {
        let b = Budget::new(
            "r",
            Scope::everything(),
            Measure::Requests,
            1,
            Period::Rolling { hours: 3 },
        );
        let now = Utc.with_ymd_and_hms(2026, 12, 5, 10, 20, 0).unwrap();
        let w = b.window(now);
        assert_eq!(w.from, Utc.with_ymd_and_hms(2026, 12, 5, 8, 0, 0).unwrap());
        assert_eq!(
            w.until,
            Utc.with_ymd_and_hms(2026, 12, 5, 11, 0, 0).unwrap()
        );
    }

    #[test]
    fn scopes_cover_records_whose_named_fields_match() {
        let record = UsageRecord::builder().user("alice").model("gpt-4o").build();
        let values = ScopeValues::of(&record);
        assert!(Scope::everything().covers(&values));
        assert!(Scope::user("alice").covers(&values));
        assert!(Scope::user("alice").and_model("gpt-4o").covers(&values));
        assert!(!Scope::user("alice")
            .and_model("gpt-4o-mini")
            .covers(&values));
        assert!(!Scope::everything().and_service("chat").covers(&values));
    }
}
