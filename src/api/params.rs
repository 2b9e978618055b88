//! A request's query string, checked against its endpoint and turned into a [`Filter`]
//! and the endpoint's own options. Every refusal names the parameter and the reason.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::de::DeserializeOwned;

use super::endpoint::{Endpoint, Param};
use super::error::ApiError;
use crate::query::{Dimension, Filter, Granularity, RankBy, TimeRange, Tz};

/// The range used when a request names neither `from` nor `last`.
const DEFAULT_DAYS: i64 = 30;
/// The most values a split series keeps: each is a whole series of buckets.
const MAX_TOP: usize = 20;
/// Longer values cannot match anything the store keeps (it cuts names at 256).
const MAX_VALUE_CHARS: usize = 512;

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Csv,
    JsonLines,
}

/// What a request asked for, checked.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) filter: Filter,
    pub(crate) tz: Tz,
    pub(crate) granularity: Granularity,
    pub(crate) split: Option<(Dimension, usize)>,
    pub(crate) by: RankBy,
    pub(crate) limit: Option<usize>,
    pub(crate) format: Format,
    pub(crate) subject: Option<String>,
    pub(crate) refused: bool,
    /// No `to` was given: the range ends now, wherever now has moved to (for `/live`).
    pub(crate) running: bool,
}

impl Params {
    /// Parses `query` for `endpoint`; `max_limit` bounds `limit`.
    pub(crate) fn parse(
        endpoint: Endpoint,
        query: Option<&str>,
        max_limit: usize,
    ) -> Result<Params, ApiError> {
        let mut given: Vec<(Param, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if name.is_empty() && value.is_empty() {
                continue;
            }
            let param = Param::named(&name)
                .filter(|p| endpoint.accepts(*p))
                .ok_or_else(|| {
                    let accepted: Vec<&str> = endpoint.params().map(Param::name).collect();
                    ApiError::bad(
                        name.as_ref(),
                        format!(
                            "unknown parameter for {}; it accepts: {}",
                            endpoint.path(),
                            accepted.join(", ")
                        ),
                    )
                })?;
            if given.iter().any(|(p, _)| *p == param) {
                return Err(ApiError::bad(param.name(), "given more than once"));
            }
            if value.trim().is_empty() {
                return Err(ApiError::bad(param.name(), "empty value"));
            }
            if value.chars().any(char::is_control) {
                return Err(ApiError::bad(param.name(), "contains a control character"));
            }
            if value.chars().count() > MAX_VALUE_CHARS {
                return Err(ApiError::bad(
                    param.name(),
                    format!("longer than {MAX_VALUE_CHARS} characters"),
                ));
            }
            given.push((param, value.into_owned()));
        }
        let get = |param: Param| {
            given
                .iter()
                .find(|(p, _)| *p == param)
                .map(|(_, v)| v.as_str())
        };

        let tz = match get(Param::Tz) {
            Some(name) => name.parse::<Tz>().map_err(|_| {
                ApiError::bad(
                    "tz",
                    "unknown time zone; use an IANA name such as Europe/Berlin",
                )
            })?,
            None => Tz::UTC,
        };
        let range = range(get(Param::From), get(Param::To), get(Param::Last), tz)?;
        let mut filter = Filter::new(range);
        filter.user = get(Param::User).map(str::to_owned);
        filter.service = get(Param::Service).map(str::to_owned);
        filter.model = get(Param::Model).map(str::to_owned);
        filter.provider = get(Param::Provider).map(str::to_owned);
        filter.country = get(Param::Country).map(str::to_owned);
        filter.outcome = choice(Param::Outcome, get(Param::Outcome))?;
        filter.status_class = choice(Param::StatusClass, get(Param::StatusClass))?;
        filter.client = choice(Param::Platform, get(Param::Platform))?;

        let top = match get(Param::Top) {
            Some(top) => whole(Param::Top, top, MAX_TOP)?,
            None => 5,
        };
        let split = choice::<Dimension>(Param::Split, get(Param::Split))?.map(|d| (d, top));
        let format = match get(Param::Format) {
            None | Some("csv") => Format::Csv,
            Some("jsonl") => Format::JsonLines,
            Some(_) => return Err(not_one_of(Param::Format)),
        };
        let refused = match get(Param::Refused) {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(not_one_of(Param::Refused)),
        };
        Ok(Params {
            filter,
            tz,
            granularity: choice(Param::Granularity, get(Param::Granularity))?
                .unwrap_or(Granularity::Day),
            split,
            by: choice(Param::By, get(Param::By))?.unwrap_or(RankBy::Requests),
            limit: get(Param::Limit)
                .map(|limit| whole(Param::Limit, limit, max_limit))
                .transpose()?,
            format,
            subject: get(Param::Subject).map(str::to_owned),
            refused,
            running: get(Param::To).is_none(),
        })
    }
}

fn not_one_of(param: Param) -> ApiError {
    let choices = param.choices().unwrap_or_default().join(", ");
    ApiError::bad(param.name(), format!("must be one of: {choices}"))
}

/// An enumerated value, read by its serde name.
fn choice<T: DeserializeOwned>(param: Param, value: Option<&str>) -> Result<Option<T>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let known = param.choices().is_some_and(|c| c.contains(&value));
    known
        .then(|| serde_json::from_value(serde_json::Value::String(value.to_owned())).ok())
        .flatten()
        .map(Some)
        .ok_or_else(|| not_one_of(param))
}

/// A whole number from 1 to `max`.
fn whole(param: Param, value: &str, max: usize) -> Result<usize, ApiError> {
    let n: usize = value.parse().map_err(|_| {
        ApiError::bad(
            param.name(),
            format!("must be a whole number from 1 to {max}"),
        )
    })?;
    match n {
        0 => Err(ApiError::bad(param.name(), "must be at least 1")),
        n if n > max => Err(ApiError::bad(
            param.name(),
            format!("{n} is above the maximum of {max}"),
        )),
        n => Ok(n),
    }
}

fn range(
    from: Option<&str>,
    to: Option<&str>,
    last: Option<&str>,
    tz: Tz,
) -> Result<TimeRange, ApiError> {
    let now = Utc::now();
    if let Some(last) = last {
        if from.is_some() || to.is_some() {
            return Err(ApiError::bad(
                "last",
                "give either `last` or `from`/`to`, not both",
            ));
        }
        let length = span(last)?;
        let from = now
            .checked_sub_signed(length)
            .filter(|f| f.timestamp() >= 0)
            .ok_or_else(|| ApiError::bad("last", "reaches back before 1970"))?;
        return Ok(TimeRange::between(from, now));
    }
    let to = to.map(|t| instant("to", t, tz)).transpose()?.unwrap_or(now);
    let from = match from {
        Some(from) => instant("from", from, tz)?,
        None => to
            .checked_sub_signed(chrono::Duration::days(DEFAULT_DAYS))
            .ok_or_else(|| ApiError::bad("to", "out of range"))?,
    };
    if from >= to {
        return Err(ApiError::bad("from", format!("must be before `to` ({to})")));
    }
    Ok(TimeRange::between(from, to))
}

/// `15m`, `24h`, `30d`.
fn span(text: &str) -> Result<chrono::Duration, ApiError> {
    let bad = || {
        ApiError::bad(
            "last",
            "must be a whole number and a unit, m, h or d (such as 24h)",
        )
    };
    let split = text.char_indices().last().map_or(0, |(i, _)| i);
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits.parse().map_err(|_| bad())?;
    if n <= 0 {
        return Err(bad());
    }
    let length = match unit {
        "m" => chrono::Duration::try_minutes(n),
        "h" => chrono::Duration::try_hours(n),
        "d" => chrono::Duration::try_days(n),
        _ => return Err(bad()),
    };
    length.ok_or_else(|| ApiError::bad("last", "too long"))
}

/// RFC 3339, a date (midnight in `tz`), or Unix seconds.
fn instant(param: &str, text: &str, tz: Tz) -> Result<DateTime<Utc>, ApiError> {
    let bad = |why: &str| ApiError::bad(param, why.to_owned());
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let midnight = date.and_hms_opt(0, 0, 0).ok_or_else(|| bad("not a date"))?;
        // A midnight the clocks skipped starts the day when they resume.
        return tz
            .from_local_datetime(&midnight)
            .earliest()
            .or_else(|| {
                tz.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| bad("no such local time"));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .ok()
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .ok_or_else(|| bad("Unix seconds out of range"));
    }
    Err(bad(
        "must be RFC 3339 (2026-11-01T00:00:00Z), a date (2026-11-01) or Unix seconds",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(endpoint: Endpoint, query: &str) -> Result<Params, String> {
        Params::parse(endpoint, Some(query), 1_000).map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn a_full_query_becomes_a_filter() {
        let p = parse(
            Endpoint::TimeSeries,
            "from=2026-11-01&to=2026-11-08T00:00:00Z&service=chat&tz=Asia%2FKolkata&granularity=hour&split=model&top=3",
        )
        .unwrap();
        assert_eq!(
            p.filter.range.from.to_rfc3339(),
            "2026-10-31T18:30:00+00:00"
        );
        assert_eq!(p.filter.service.as_deref(), Some("chat"));
        assert_eq!(p.granularity, Granularity::Hour);
        assert_eq!(p.split, Some((Dimension::Model, 3)));
    }

    #[test]
    fn every_refusal_names_its_parameter() {
        for (endpoint, query, parameter) in [
            (Endpoint::Metrics, "limit=5", "limit"),
            (Endpoint::Metrics, "nonsense=1", "nonsense"),
            (Endpoint::Services, "limit=0", "limit"),
            (Endpoint::Services, "limit=99999999999999999999999", "limit"),
            (Endpoint::Services, "limit=1001", "limit"),
            (Endpoint::Metrics, "from=2026-11-02&to=2026-11-01", "from"),
            (Endpoint::Metrics, "from=yesterday", "from"),
            (Endpoint::Metrics, "last=24h&from=2026-11-01", "last"),
            (Endpoint::Metrics, "last=99999999999d", "last"),
            (Endpoint::Metrics, "last=-1d", "last"),
            (Endpoint::Metrics, "last=1🙂", "last"),
            (Endpoint::Metrics, "last=🙂", "last"),
            (Endpoint::Metrics, "outcome=' OR 1=1 --", "outcome"),
            (Endpoint::Metrics, "service=a&service=b", "service"),
            (Endpoint::Metrics, "service=", "service"),
            (Endpoint::Dashboard, "tz=Mars/Olympus", "tz"),
            (Endpoint::MyUsage, "user=bob", "user"),
            (Endpoint::TimeSeries, "split=user&top=21", "top"),
            (Endpoint::Export, "format=xml", "format"),
            (Endpoint::Metrics, "model=a%00b", "model"),
        ] {
            let error = parse(endpoint, query).unwrap_err();
            assert!(
                error.contains(&format!("parameter: \"{parameter}\"")),
                "{query}: {error}"
            );
        }
    }

    #[test]
    fn last_counts_back_from_now() {
        let p = parse(Endpoint::Metrics, "last=24h").unwrap();
        assert_eq!(p.filter.range.len().as_secs(), 86_400);
        let p = parse(Endpoint::Metrics, "").unwrap();
        assert_eq!(p.filter.range.len().as_secs(), 30 * 86_400);
    }
}
