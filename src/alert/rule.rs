//! What an alert rule is: a signal of the records a filter selects, over a window of
//! minutes, above or below a threshold. Checked when made, as budgets are.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::budget::MAX_NAME_LEN;
use crate::query::{Filter, Metrics, StatusClass, TimeRange};
use crate::store::definitions::valid_name;
use crate::{ClientPlatform, Outcome};

/// The longest window a rule looks back over, in minutes (7 days).
pub const MAX_WINDOW_MINUTES: u32 = 7 * 24 * 60;

/// What a rule measures over its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Records that did not succeed, as a share of all (0 to 1).
    ErrorRate,
    /// The 95th percentile of the total duration, in microseconds.
    LatencyP95,
    /// The 95th percentile of the time to first byte, in microseconds.
    TtfbP95,
    /// Records.
    Requests,
    /// Input plus output tokens.
    Tokens,
    /// Cost, in micro-units of the currency.
    Cost,
}

impl Signal {
    /// The signal's value in `metrics`; `None` where there is nothing to measure (a
    /// percentile without records).
    pub(crate) fn of(self, metrics: &Metrics) -> Option<f64> {
        Some(match self {
            Signal::ErrorRate => metrics.error_rate,
            Signal::LatencyP95 => metrics.latency.p95_us? as f64,
            Signal::TtfbP95 => metrics.ttfb.p95_us? as f64,
            Signal::Requests => metrics.requests as f64,
            Signal::Tokens => metrics.tokens.total as f64,
            Signal::Cost => metrics.cost_micros as f64,
        })
    }

    /// Whether reading it needs the latency histograms.
    pub(crate) fn needs_percentiles(self) -> bool {
        matches!(self, Signal::LatencyP95 | Signal::TtfbP95)
    }
}

/// Which side of the threshold fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Fires while the signal is above the threshold.
    Above,
    /// Fires while the signal is below it ("traffic stopped": requests below 1).
    Below,
}

/// The records a rule looks at: every field named must match, as in a
/// [`Filter`](crate::query::Filter).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleFilter {
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
    /// Only records with this outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Only records whose status is of this class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "api", schema(value_type = Option<String>))]
    pub status_class: Option<StatusClass>,
    /// Only records from this client platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "api", schema(value_type = Option<String>))]
    pub platform: Option<ClientPlatform>,
    /// Only records from this country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// A signal of the records a filter selects, over the last `window_minutes`, above or
/// below a threshold. An evaluation that finds it crossed while it was not firing
/// fires it (one event); it fires no more until an evaluation finds it back on the
/// other side, which resolves it (one more event).
///
/// ```
/// use tower_usage::alert::{Condition, Rule, Signal};
///
/// let errors = Rule::new("chat-errors", Signal::ErrorRate, Condition::Above, 0.05)
///     .window_minutes(10)
///     .min_requests(20)
///     .check()?;
/// let mut quiet = Rule::new("chat-stopped", Signal::Requests, Condition::Below, 1.0);
/// quiet.filter.service = Some("chat".into());
/// quiet.check()?;
/// # Ok::<(), tower_usage::alert::RuleError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Rule {
    /// Unique; letters, digits, `.`, `_` and `-`, at most [`MAX_NAME_LEN`].
    pub name: String,
    /// What is measured.
    pub signal: Signal,
    /// Which side fires.
    pub condition: Condition,
    /// The threshold, in the signal's unit (a share from 0 to 1 for the error rate).
    pub threshold: f64,
    /// How far back the signal is measured, from 1 minute to 7 days (default 5).
    #[serde(default = "five")]
    pub window_minutes: u32,
    /// The records measured.
    #[serde(default)]
    pub filter: RuleFilter,
    /// Fewer records than this in the window leave the rule as it is: an error rate or
    /// a percentile of a handful of requests says little (default 0).
    #[serde(default)]
    pub min_requests: u64,
}

fn five() -> u32 {
    5
}

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The name is empty, too long or has characters other than letters, digits, `.`,
    /// `_` and `-`.
    #[error("a rule's name is 1 to {MAX_NAME_LEN} letters, digits, '.', '_' or '-'; got {0:?}")]
    BadName(String),
    /// A threshold that is not a number, is negative, or is an error rate above 1.
    #[error("the threshold must be a number from 0 (and at most 1 for an error rate); got {0}")]
    BadThreshold(f64),
    /// A window of no minutes or longer than [`MAX_WINDOW_MINUTES`].
    #[error("the window is 1 to {MAX_WINDOW_MINUTES} minutes; got {0}")]
    BadWindow(u32),
    /// A filter name that is empty or has surrounding white space.
    #[error("the filter's {0} must be a non-empty name without surrounding spaces")]
    BadFilter(&'static str),
}

impl Rule {
    /// A rule over every record, with a 5-minute window; see [`check`](Self::check).
    pub fn new(
        name: impl Into<String>,
        signal: Signal,
        condition: Condition,
        threshold: f64,
    ) -> Rule {
        Rule {
            name: name.into(),
            signal,
            condition,
            threshold,
            window_minutes: 5,
            filter: RuleFilter::default(),
            min_requests: 0,
        }
    }

    /// Sets the window.
    pub fn window_minutes(mut self, minutes: u32) -> Rule {
        self.window_minutes = minutes;
        self
    }

    /// Sets the fewest records an evaluation needs.
    pub fn min_requests(mut self, n: u64) -> Rule {
        self.min_requests = n;
        self
    }

    /// The rule if it makes sense.
    pub fn check(self) -> Result<Rule, RuleError> {
        if !valid_name(&self.name) {
            return Err(RuleError::BadName(self.name));
        }
        let t = self.threshold;
        let rate_ok = self.signal != Signal::ErrorRate || t <= 1.0;
        if !t.is_finite() || t < 0.0 || !rate_ok {
            return Err(RuleError::BadThreshold(t));
        }
        if self.window_minutes == 0 || self.window_minutes > MAX_WINDOW_MINUTES {
            return Err(RuleError::BadWindow(self.window_minutes));
        }
        let f = &self.filter;
        for (field, value) in [
            ("user", &f.user),
            ("service", &f.service),
            ("model", &f.model),
            ("provider", &f.provider),
            ("country", &f.country),
        ] {
            if value
                .as_deref()
                .is_some_and(|v| v.is_empty() || v.trim() != v)
            {
                return Err(RuleError::BadFilter(field));
            }
        }
        Ok(self)
    }

    /// The filter of the window that ends at `now`.
    pub(crate) fn window_filter(&self, now: DateTime<Utc>) -> Filter {
        let from = now - Duration::minutes(i64::from(self.window_minutes));
        let f = &self.filter;
        let mut filter = Filter::new(TimeRange::between(from, now));
        filter.user.clone_from(&f.user);
        filter.service.clone_from(&f.service);
        filter.model.clone_from(&f.model);
        filter.provider.clone_from(&f.provider);
        filter.outcome = f.outcome;
        filter.status_class = f.status_class;
        filter.client = f.platform;
        filter.country.clone_from(&f.country);
        filter
    }

    /// Whether `value` is on the firing side.
    pub(crate) fn crossed(&self, value: f64) -> bool {
        match self.condition {
            Condition::Above => value > self.threshold,
            Condition::Below => value < self.threshold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonsense_is_refused_with_what_is_wrong() {
        let rule = || Rule::new("r", Signal::ErrorRate, Condition::Above, 0.1);
        assert_eq!(rule().check().unwrap().window_minutes, 5);
        let bad = |r: Rule| r.check().unwrap_err();
        let mut r = rule();
        r.name = "a b".into();
        assert_eq!(bad(r), RuleError::BadName("a b".into()));
        for t in [f64::NAN, f64::INFINITY, -1.0, 1.5] {
            let mut r = rule();
            r.threshold = t;
            assert!(matches!(bad(r), RuleError::BadThreshold(_)), "{t}");
        }
        let mut r = Rule::new("r", Signal::Requests, Condition::Below, 1_000.0);
        assert!(r.clone().check().is_ok());
        r.window_minutes = 0;
        assert_eq!(bad(r.clone()), RuleError::BadWindow(0));
        r.window_minutes = MAX_WINDOW_MINUTES + 1;
        assert_eq!(bad(r), RuleError::BadWindow(MAX_WINDOW_MINUTES + 1));
        let mut r = rule();
        r.filter.model = Some(" gpt".into());
        assert_eq!(bad(r), RuleError::BadFilter("model"));
    }

    #[test]
    fn json_names_every_field_the_rule_knows_and_no_other() {
        let text = r#"{"name":"p95","signal":"latency_p95","condition":"above","threshold":2e6,
            "window_minutes":15,"filter":{"service":"chat","status_class":"server_error","platform":"sdk"}}"#;
        let rule: Rule = serde_json::from_str(text).unwrap();
        assert_eq!(rule.filter.platform, Some(ClientPlatform::Sdk));
        assert!(serde_json::from_str::<Rule>(
            r#"{"name":"a","signal":"vibes","condition":"above","threshold":1}"#
        )
        .is_err());
        assert!(serde_json::from_str::<Rule>(r#"{"name":"a","signal":"cost","condition":"above","threshold":1,"filter":{"team":"x"}}"#).is_err());
    }

    #[test]
    fn the_firing_side_is_strictly_past_the_threshold() {
        let above = Rule::new("a", Signal::Requests, Condition::Above, 10.0);
        assert!(!above.crossed(10.0) && above.crossed(10.5));
        let below = Rule::new("b", Signal::Requests, Condition::Below, 1.0);
        assert!(below.crossed(0.0) && !below.crossed(1.0));
    }
}
