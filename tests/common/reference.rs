//! The analytics computed in plain Rust over a list of records: the reference every
//! backend's answers are checked against. Answers are built as JSON, in the shape the
//! crate's result types serialize to.
//!
//! It shares no bucketing or aggregation code with the crate: calendar buckets come from
//! the local wall-clock fields of each quarter hour (every zone it is used with has
//! offsets and transitions on whole quarter hours, which it checks), and percentiles
//! from a histogram bucket found by repeated multiplication, as the histogram's
//! documentation defines it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, Offset, Timelike, Utc};
use serde_json::{json, Value};
use tower_usage::query::{Dimension, Filter, Granularity, RankBy, Tz};
use tower_usage::{Outcome, UsageRecord};

#[derive(Default, Clone, Copy)]
struct Sums {
    requests: u64,
    errors: u64,
    tokens_in: u64,
    tokens_out: u64,
    cached: u64,
    cost: i64,
    bytes: u64,
    duration: u64,
}

impl Sums {
    fn add(&mut self, r: &UsageRecord) {
        self.requests += 1;
        self.errors += u64::from(r.outcome != Outcome::Success);
        self.tokens_in += r.tokens.input;
        self.tokens_out += r.tokens.output;
        self.cached += r.tokens.cached_input;
        self.cost += r.cost_micros.unwrap_or(0);
        self.bytes += r.response_bytes;
        self.duration += r.duration.as_micros() as u64;
    }

    fn merge(&mut self, o: &Sums) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.tokens_in += o.tokens_in;
        self.tokens_out += o.tokens_out;
        self.cached += o.cached;
        self.cost += o.cost;
        self.bytes += o.bytes;
        self.duration += o.duration;
    }

    fn tokens(&self) -> Value {
        json!({
            "input": self.tokens_in,
            "output": self.tokens_out,
            "cached_input": self.cached,
            "total": self.tokens_in + self.tokens_out,
        })
    }

    fn mean(&self) -> Value {
        mean(self.duration, self.requests)
    }

    fn point(&self) -> Value {
        json!({
            "requests": self.requests,
            "errors": self.errors,
            "tokens": self.tokens(),
            "cost_micros": self.cost,
            "mean_latency_us": self.mean(),
        })
    }

    fn row(&self, key: Option<String>, all: u64) -> Value {
        json!({
            "key": key,
            "requests": self.requests,
            "tokens": self.tokens(),
            "cost_micros": self.cost,
            "errors": self.errors,
            "error_rate": ratio(self.errors, self.requests),
            "mean_latency_us": self.mean(),
            "share": ratio(self.requests, all),
        })
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as i64 as f64 / b as i64 as f64
    }
}

fn mean(sum: u64, n: u64) -> Value {
    if n == 0 {
        Value::Null
    } else {
        json!(sum as i64 as f64 / n as i64 as f64)
    }
}

/// A duration as the crate's latency histogram reports it, from the histogram's
/// documented definition: 0 stays 0; otherwise `v` lies in the bucket
/// `[1.04^(b-1), 1.04^b)`, reported as the bucket's harmonic midpoint, rounded.
pub fn quantize(micros: u64) -> u64 {
    if micros == 0 {
        return 0;
    }
    let v = micros as f64;
    let mut low = 1.0f64;
    while low * 1.04 <= v {
        low *= 1.04;
    }
    let high = low * 1.04;
    (2.0 * low * high / (low + high)).round() as u64
}

/// Nearest rank: the `ceil(n · p)`-th smallest, as the histogram reports it.
fn percentile(sorted: &[u64], per_mille: u64) -> Value {
    if sorted.is_empty() {
        return Value::Null;
    }
    let n = sorted.len() as u64;
    let rank = (n * per_mille).div_ceil(1000).max(1);
    json!(quantize(sorted[(rank - 1) as usize]))
}

fn latency(values: &mut [u64]) -> Value {
    values.sort_unstable();
    let sum: u64 = values.iter().sum();
    json!({
        "mean_us": mean(sum, values.len() as u64),
        "p50_us": percentile(values, 500),
        "p95_us": percentile(values, 950),
        "p99_us": percentile(values, 990),
    })
}

/// Panics with the first place where `got` and `want` differ, not two whole documents.
pub fn assert_same(got: &Value, want: &Value, context: &str) {
    fn diff(a: &Value, b: &Value, path: String) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                keys.into_iter().find_map(|k| {
                    diff(
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        format!("{path}.{k}"),
                    )
                })
            }
            (Value::Array(x), Value::Array(y)) => {
                if x.len() != y.len() {
                    return Some(format!("{path}: {} items, expected {}", x.len(), y.len()));
                }
                x.iter()
                    .zip(y)
                    .enumerate()
                    .find_map(|(i, (a, b))| diff(a, b, format!("{path}[{i}]")))
            }
            _ if a == b => None,
            _ => Some(format!("{path}: got {a}, expected {b}")),
        }
    }
    if let Some(d) = diff(got, want, String::new()) {
        panic!("{context}: {d}");
    }
}

pub fn select<'a>(records: &'a [UsageRecord], filter: &Filter) -> Vec<&'a UsageRecord> {
    records.iter().filter(|r| filter.matches(r)).collect()
}

pub fn metrics(records: &[UsageRecord], filter: &Filter) -> Value {
    let chosen = select(records, filter);
    let mut sums = Sums::default();
    chosen.iter().for_each(|r| sums.add(r));
    let users: BTreeSet<&str> = chosen.iter().filter_map(|r| r.user.as_deref()).collect();
    let mut durations: Vec<u64> = chosen
        .iter()
        .map(|r| r.duration.as_micros() as u64)
        .collect();
    let mut ttfbs: Vec<u64> = chosen
        .iter()
        .filter_map(|r| r.ttfb.map(|t| t.as_micros() as u64))
        .collect();
    json!({
        "requests": sums.requests,
        "unique_users": users.len(),
        "tokens": sums.tokens(),
        "cost_micros": sums.cost,
        "errors": sums.errors,
        "error_rate": ratio(sums.errors, sums.requests),
        "response_bytes": sums.bytes,
        "latency": latency(&mut durations),
        "ttfb": latency(&mut ttfbs),
        "unpriced": chosen.iter().filter(|r| r.metadata.get("unpriced") == Some(&Value::Bool(true))).count(),
    })
}

pub fn key(r: &UsageRecord, dimension: Dimension) -> Option<String> {
    match dimension {
        Dimension::Service => r.service.clone(),
        Dimension::Model => r.model.clone(),
        Dimension::Provider => r.provider.clone(),
        Dimension::Client => Some(r.client.as_str().to_owned()),
        Dimension::Country => r.country.clone(),
        Dimension::User => r.user.clone(),
    }
}

pub fn dimension_name(dimension: Dimension) -> Value {
    serde_json::to_value(dimension).unwrap()
}

pub fn breakdown(
    records: &[UsageRecord],
    filter: &Filter,
    dimension: Dimension,
    limit: usize,
) -> Value {
    let mut groups: HashMap<Option<String>, Sums> = HashMap::new();
    for r in select(records, filter) {
        groups.entry(key(r, dimension)).or_default().add(r);
    }
    let all: u64 = groups.values().map(|s| s.requests).sum();
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by(|(ka, a), (kb, b)| {
        b.requests
            .cmp(&a.requests)
            .then(ka.is_none().cmp(&kb.is_none()))
            .then(
                ka.as_deref()
                    .map(str::as_bytes)
                    .cmp(&kb.as_deref().map(str::as_bytes)),
            )
    });
    let rest = groups.split_off(limit.min(groups.len()));
    let other = if rest.is_empty() {
        Value::Null
    } else {
        let mut sum = Sums::default();
        rest.iter().for_each(|(_, s)| sum.merge(s));
        sum.row(None, all)
    };
    json!({
        "dimension": dimension_name(dimension),
        "rows": groups.iter().map(|(k, s)| s.row(k.clone(), all)).collect::<Vec<_>>(),
        "other": other,
        "total_requests": all,
    })
}

const QUARTER: i64 = 15;

/// The local wall-clock time of `t`, checking that the zone's offset is a whole number
/// of quarter hours there (the walk below steps by quarter hours).
fn local(t: DateTime<Utc>, tz: Tz) -> NaiveDateTime {
    let there = t.with_timezone(&tz);
    let offset = there.offset().fix().local_minus_utc();
    assert_eq!(
        offset % 900,
        0,
        "the reference needs quarter-hour offsets ({tz} at {t})"
    );
    there.naive_local()
}

/// What a bucket is named by on the local calendar.
fn label(granularity: Granularity, l: NaiveDateTime) -> (i32, u32, u32) {
    match granularity {
        Granularity::Hour => (l.year(), l.ordinal(), l.hour()),
        Granularity::Day => (l.year(), l.ordinal(), 0),
        Granularity::Week => (l.iso_week().year(), l.iso_week().week(), 0),
        Granularity::Month => (l.year(), l.month(), 0),
    }
}

/// Whether a bucket starts at the whole quarter hour `u`: the local name changes there,
/// or, for hours, the clock went back to a whole hour (the repeated hour is a bucket of
/// its own).
fn starts_at(granularity: Granularity, tz: Tz, u: DateTime<Utc>) -> bool {
    let step = Duration::minutes(QUARTER);
    let (now, before) = (local(u, tz), local(u - step, tz));
    label(granularity, now) != label(granularity, before)
        || (granularity == Granularity::Hour && now.minute() == 0 && now != before + step)
}

/// Every bucket start overlapping the filter's range, the first one at or before its
/// start, found by walking quarter hours.
fn bucket_starts(filter: &Filter, granularity: Granularity, tz: Tz) -> Vec<DateTime<Utc>> {
    let step = Duration::minutes(QUARTER);
    let from = filter.range.from;
    let quarter_us = step.num_microseconds().unwrap();
    let mut u = DateTime::from_timestamp_micros(
        from.timestamp_micros().div_euclid(quarter_us) * quarter_us,
    )
    .unwrap();
    while !starts_at(granularity, tz, u) {
        u -= step;
    }
    let mut starts = vec![u];
    u += step;
    while u < filter.range.to {
        if starts_at(granularity, tz, u) {
            starts.push(u);
        }
        u += step;
    }
    starts
}

/// The index of the bucket holding `t`: the last start at or before it.
fn bucket_index(starts: &[DateTime<Utc>], t: DateTime<Utc>) -> usize {
    let i = starts.partition_point(|s| *s <= t);
    assert!(i > 0, "a record before the first bucket");
    i - 1
}

pub fn time_series(
    records: &[UsageRecord],
    filter: &Filter,
    granularity: Granularity,
    tz: Tz,
    split: Option<(Dimension, usize)>,
) -> Value {
    let starts = bucket_starts(filter, granularity, tz);
    let mut by_key: BTreeMap<Option<String>, Vec<Sums>> = BTreeMap::new();
    for r in select(records, filter) {
        let i = bucket_index(&starts, r.started_at);
        let k = split.and_then(|(d, _)| key(r, d));
        by_key
            .entry(k)
            .or_insert_with(|| vec![Sums::default(); starts.len()])[i]
            .add(r);
    }
    let points = |sums: &[Sums]| sums.iter().map(Sums::point).collect::<Vec<_>>();
    let series = match split {
        None => {
            let sums = by_key
                .remove(&None)
                .unwrap_or_else(|| vec![Sums::default(); starts.len()]);
            vec![json!({"key": {"kind": "total"}, "points": points(&sums)})]
        }
        Some((_, top)) => {
            let missing = by_key.remove(&None);
            let mut values: Vec<(String, u64, Vec<Sums>)> = by_key
                .into_iter()
                .map(|(k, s)| {
                    let n = s.iter().map(|x| x.requests).sum();
                    (k.unwrap(), n, s)
                })
                .collect();
            values.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.as_bytes().cmp(b.0.as_bytes())));
            let rest = values.split_off(top.min(values.len()));
            let mut out: Vec<Value> = values
                .iter()
                .map(|(k, _, s)| json!({"key": {"kind": "value", "value": k}, "points": points(s)}))
                .collect();
            if let Some(s) = missing {
                out.push(json!({"key": {"kind": "missing"}, "points": points(&s)}));
            }
            if !rest.is_empty() {
                let mut other = vec![Sums::default(); starts.len()];
                for (_, _, s) in &rest {
                    for (o, x) in other.iter_mut().zip(s) {
                        o.merge(x);
                    }
                }
                out.push(json!({"key": {"kind": "other"}, "points": points(&other)}));
            }
            out
        }
    };
    json!({
        "granularity": serde_json::to_value(granularity).unwrap(),
        "time_zone": tz.name(),
        "split": split.map(|(d, _)| dimension_name(d)),
        "buckets": starts,
        "series": series,
    })
}

pub fn latency_series(
    records: &[UsageRecord],
    filter: &Filter,
    granularity: Granularity,
    tz: Tz,
) -> Value {
    let starts = bucket_starts(filter, granularity, tz);
    let mut durations = vec![Vec::new(); starts.len()];
    let mut ttfbs = vec![Vec::new(); starts.len()];
    for r in select(records, filter) {
        let i = bucket_index(&starts, r.started_at);
        durations[i].push(r.duration.as_micros() as u64);
        if let Some(t) = r.ttfb {
            ttfbs[i].push(t.as_micros() as u64);
        }
    }
    json!({
        "granularity": serde_json::to_value(granularity).unwrap(),
        "time_zone": tz.name(),
        "buckets": starts,
        "latency": durations.iter_mut().map(|v| latency(v)).collect::<Vec<_>>(),
        "ttfb": ttfbs.iter_mut().map(|v| latency(v)).collect::<Vec<_>>(),
    })
}

pub fn top_users(records: &[UsageRecord], filter: &Filter, by: RankBy, limit: usize) -> Value {
    let mut users: HashMap<String, Sums> = HashMap::new();
    for r in select(records, filter) {
        if let Some(user) = &r.user {
            users.entry(user.clone()).or_default().add(r);
        }
    }
    let mut users: Vec<_> = users.into_iter().collect();
    let rank = |s: &Sums| match by {
        RankBy::Requests => s.requests as i128,
        RankBy::Tokens => (s.tokens_in + s.tokens_out) as i128,
        RankBy::Cost => s.cost as i128,
    };
    users.sort_by(|(ua, a), (ub, b)| rank(b).cmp(&rank(a)).then(ua.as_bytes().cmp(ub.as_bytes())));
    users.truncate(limit);
    Value::Array(
        users
            .iter()
            .map(|(u, s)| {
                json!({
                    "user": u,
                    "requests": s.requests,
                    "errors": s.errors,
                    "tokens": s.tokens(),
                    "cost_micros": s.cost,
                })
            })
            .collect(),
    )
}

pub fn peak_hours(records: &[UsageRecord], filter: &Filter, tz: Tz) -> Value {
    let mut counts = vec![vec![0u64; 24]; 7];
    for r in select(records, filter) {
        let local = r.started_at.with_timezone(&tz);
        counts[local.weekday().num_days_from_monday() as usize][local.hour() as usize] += 1;
    }
    json!({"time_zone": tz.name(), "counts": counts})
}
