//! Which tables answer a query: the rollups where the filter and grouping allow, raw
//! rows for the rest, and the SQL that reads them.
//!
//! A range `[from, to)` is cut into parts: raw rows up to the first whole 15-minute
//! slot, the 15-minute rollup up to the first whole UTC day, the daily rollup over the
//! whole days, and back down at the other end. Every part yields the same columns, so one
//! `UNION ALL` sums them; whichever parts answer, the sums are the same.

use super::detail;
use crate::query::{Dimension, Filter, RankBy};
use crate::store::schema::slots::{ceil_div, DAYS, DAY_US, QUARTER_US};
use crate::store::schema::{
    Rollup, UserRollup, BLOCKS, MEASURES, RAW_COLUMNS, RAW_MEASURES, USER_MEASURES,
};
use crate::store::sql::Sql;

/// Where one part of a range is read from. Bounds are microseconds for raw rows and
/// slot numbers for a rollup; both half-open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Raw(i64, i64),
    Rollup(Rollup, i64, i64),
    /// The per-slot totals, in 15-minute slots.
    Totals(i64, i64),
}

/// Where one part of a range is read from for per-user sums: raw rows (microseconds),
/// or a per-user rollup's slots to add or, where a block read whole reaches past the
/// range, to subtract. Bounds are half-open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UserPart {
    Raw(i64, i64),
    Add(UserRollup, i64, i64),
    Subtract(UserRollup, i64, i64),
}

/// Cuts `[from, to)` (microseconds, `from ≥ 0`) into parts; see the module docs.
/// `totals` reads 15-minute slots from the dimension-free totals.
pub(crate) fn parts(from: i64, to: i64, quarter: bool, day: bool, totals: bool) -> Vec<Part> {
    let q0 = ceil_div(from, QUARTER_US);
    let q1 = to.div_euclid(QUARTER_US);
    if !quarter || q0 >= q1 {
        return vec![Part::Raw(from, to)];
    }
    let mut parts = Vec::with_capacity(5);
    push_raw(&mut parts, from, q0 * QUARTER_US);
    let per_day = DAY_US / QUARTER_US;
    let (d0, d1) = (ceil_div(q0, per_day), q1.div_euclid(per_day));
    let quarters = |parts: &mut Vec<Part>, from, to| {
        if from < to {
            parts.push(if totals {
                Part::Totals(from, to)
            } else {
                Part::Rollup(Rollup::Quarter, from, to)
            });
        }
    };
    if day && d0 < d1 {
        quarters(&mut parts, q0, d0 * per_day);
        parts.push(Part::Rollup(Rollup::Day, d0, d1));
        quarters(&mut parts, d1 * per_day, q1);
    } else {
        quarters(&mut parts, q0, q1);
    }
    push_raw(&mut parts, q1 * QUARTER_US, to);
    parts
}

/// Cuts `[from, to)` into raw edges, whole UTC days and 7-day blocks of the per-user
/// sums. At either end a block may reach past the range, its days outside the range
/// subtracted ([`UserPart::Subtract`]), when that reads fewer rows: a 30-day range reads
/// four or five blocks and at most six days, instead of up to a week of days at each
/// end.
pub(crate) fn user_parts(from: i64, to: i64) -> Vec<UserPart> {
    let (d0, d1) = (ceil_div(from, DAY_US), to.div_euclid(DAY_US));
    if d0 >= d1 {
        return vec![UserPart::Raw(from, to)];
    }
    let mut parts = Vec::with_capacity(6);
    if from < d0 * DAY_US {
        parts.push(UserPart::Raw(from, d0 * DAY_US));
    }
    // Signed intervals add up whatever the block bounds: [d0, d1) = [d0, 7·w0) +
    // [7·w0, 7·w1) + [7·w1, d1). Each block is weighed as two days (a user active on
    // any day of a block has one row there), and the cheapest bounds win.
    let cost = |(w0, w1): (i64, i64)| (d0 - 7 * w0).abs() + (d1 - 7 * w1).abs() + 2 * (w1 - w0);
    let (inner0, inner1) = (ceil_div(d0, 7), d1.div_euclid(7));
    let best = [
        (inner0 - 1, inner1),
        (inner0 - 1, inner1 + 1),
        (inner0, inner1),
        (inner0, inner1 + 1),
    ]
    .into_iter()
    .filter(|(w0, w1)| w0 < w1)
    .min_by_key(|&w| cost(w))
    .filter(|&w| cost(w) < d1 - d0);
    match best {
        Some((w0, w1)) => {
            push_days(&mut parts, d0, 7 * w0);
            parts.push(UserPart::Add(UserRollup::Week, w0, w1));
            push_days(&mut parts, 7 * w1, d1);
        }
        None => parts.push(UserPart::Add(UserRollup::Day, d0, d1)),
    }
    if d1 * DAY_US < to {
        parts.push(UserPart::Raw(d1 * DAY_US, to));
    }
    parts
}

/// The days `[a, b)` as a part: added when `a < b`, the days `[b, a)` subtracted when
/// `b < a`.
fn push_days(parts: &mut Vec<UserPart>, a: i64, b: i64) {
    if a < b {
        parts.push(UserPart::Add(UserRollup::Day, a, b));
    } else if b < a {
        parts.push(UserPart::Subtract(UserRollup::Day, b, a));
    }
}

fn push_raw(parts: &mut Vec<Part>, from: i64, to: i64) {
    if from < to {
        parts.push(Part::Raw(from, to));
    }
}

/// Whether the dimension rollups hold what `filter` filters on.
pub(crate) fn rollups_serve(filter: &Filter) -> bool {
    filter.user.is_none() && filter.client.is_none() && filter.country.is_none()
}

/// Whether only the time range filters.
pub(crate) fn time_only(filter: &Filter) -> bool {
    rollups_serve(filter)
        && filter.service.is_none()
        && filter.model.is_none()
        && filter.provider.is_none()
        && filter.outcome.is_none()
        && filter.status_class.is_none()
}

/// Whether the dimension rollups keep `dimension`.
pub(crate) fn rolled_up(dimension: Option<Dimension>) -> bool {
    matches!(
        dimension,
        None | Some(Dimension::Service | Dimension::Model | Dimension::Provider)
    )
}

fn raw_column(dimension: Dimension) -> &'static str {
    match dimension {
        Dimension::Service => "service",
        Dimension::Model => "model",
        Dimension::Provider => "provider",
        Dimension::Client => "client",
        Dimension::Country => "country",
        Dimension::User => "user_id",
    }
}

/// `WHERE` conditions on raw rows for `filter` within `[from, to)`.
pub(crate) fn raw_where(sql: &mut Sql, filter: &Filter, from: i64, to: i64) {
    slots_where(sql, "started_at_us", from, to);
    raw_conditions(sql, filter);
}

/// `WHERE` conditions on raw rows for `filter` within any of `ranges` (at least one).
fn raw_where_any(sql: &mut Sql, filter: &Filter, ranges: &[(i64, i64)]) {
    if let [(from, to)] = ranges {
        return raw_where(sql, filter, *from, *to);
    }
    sql.push(" WHERE (");
    sql.list(ranges, " OR ", |sql, &(from, to)| {
        sql.push("started_at_us >= ").int(from);
        sql.push(" AND started_at_us < ").int(to);
    });
    sql.push(")");
    raw_conditions(sql, filter);
}

/// The conditions of [`raw_where`] besides the time range, each starting with `AND`.
fn raw_conditions(sql: &mut Sql, filter: &Filter) {
    equal_names(sql, filter, true);
    if let Some(client) = filter.client {
        // A fixed set of names: safe to write into the text.
        sql.push(" AND client = '").push(client.as_str()).push("'");
    }
    match filter.status_class.map(|c| c.code()) {
        None => {}
        Some(0) => {
            sql.push(" AND status IS NULL");
        }
        Some(class) => {
            let low = i64::from(class) * 100;
            sql.push(" AND status >= ").int(low);
            sql.push(" AND status < ").int(low + 100);
        }
    }
}

/// `WHERE` conditions on a dimension rollup for `filter` over slots `[from, to)`.
fn rollup_where(sql: &mut Sql, filter: &Filter, from: i64, to: i64) {
    slots_where(sql, "slot", from, to);
    equal_names(sql, filter, false);
    if let Some(class) = filter.status_class {
        sql.push(" AND status_class = ")
            .int(i64::from(class.code()));
    }
}

/// ` WHERE column >= from AND column < to`.
fn slots_where(sql: &mut Sql, column: &str, from: i64, to: i64) {
    sql.push(" WHERE ").push(column).push(" >= ").int(from);
    sql.push(" AND ").push(column).push(" < ").int(to);
}

/// The filter's equality conditions on service, model, provider and outcome, and with
/// `raw` on user and country, which only raw rows keep.
fn equal_names(sql: &mut Sql, filter: &Filter, raw: bool) {
    let user = filter
        .user
        .as_deref()
        .map(crate::store::schema::row::stored_user);
    let names = [
        ("service", filter.service.as_deref(), true),
        ("model", filter.model.as_deref(), true),
        ("provider", filter.provider.as_deref(), true),
        ("user_id", user.as_deref(), raw),
        ("country", filter.country.as_deref(), raw),
    ];
    for (column, value, kept) in names {
        if let (Some(value), true) = (value, kept) {
            sql.push(" AND ").push(column).push(" = ").bind_text(value);
        }
    }
    if let Some(outcome) = filter.outcome {
        // A fixed set of names: safe to write into the text.
        sql.push(" AND outcome = '")
            .push(outcome.as_str())
            .push("'");
    }
}

/// How an aggregate groups its rows: by a dimension, by time slots of `slot_us`
/// microseconds, both or neither.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Group {
    pub(crate) key: Option<Dimension>,
    pub(crate) slot_us: Option<i64>,
}

/// One `SELECT` over a part, yielding the grouping columns and the measures per row or
/// per rollup row.
fn part_select(sql: &mut Sql, filter: &Filter, group: Group, part: Part) {
    match part {
        Part::Raw(from, to) => {
            let key = group.key.map_or(sql.null_text(), raw_column);
            let slot = group
                .slot_us
                .map_or(sql.null_int().to_owned(), |us| sql.div("started_at_us", us));
            sql.push("SELECT ").push(key).push(" AS k1, ").push(&slot);
            sql.push(
                " AS slot, 1 AS requests, CASE WHEN outcome <> 'success' THEN 1 ELSE 0 END AS errors, \
                 tokens_in, tokens_out, tokens_cached_in AS tokens_cached, \
                 COALESCE(cost_micros, 0) AS cost_micros, response_bytes, \
                 duration_us AS duration_sum_us, COALESCE(ttfb_us, 0) AS ttfb_sum_us, \
                 CASE WHEN ttfb_us IS NULL THEN 0 ELSE 1 END AS ttfb_count, unpriced \
                 FROM usage_records",
            );
            raw_where(sql, filter, from, to);
        }
        Part::Rollup(rollup, from, to) => {
            let key = match group.key {
                None => sql.null_text().to_owned(),
                Some(d) => format!("NULLIF({}, '')", raw_column(d)),
            };
            // Rollups are only planned for 15-minute slots.
            let slot = match group.slot_us {
                None => sql.null_int().to_owned(),
                Some(_) => quarter_slot(rollup),
            };
            sql.push("SELECT ")
                .push(&key)
                .push(" AS k1, ")
                .push(&slot)
                .push(" AS slot, ");
            sql.push(&MEASURES.join(", "))
                .push(" FROM ")
                .push(rollup.table());
            rollup_where(sql, filter, from, to);
        }
        Part::Totals(from, to) => {
            let key = sql.null_text();
            let slot = match group.slot_us {
                None => sql.null_int(),
                Some(_) => "slot",
            };
            sql.push("SELECT ")
                .push(key)
                .push(" AS k1, ")
                .push(slot)
                .push(" AS slot, ");
            sql.push(&MEASURES.join(", "))
                .push(" FROM usage_totals_15m");
            sql.push(" WHERE slot >= ")
                .int(from)
                .push(" AND slot < ")
                .int(to);
        }
    }
}

/// A rollup row's slot counted in 15-minute slots: a day is 96 of them.
fn quarter_slot(rollup: Rollup) -> String {
    match rollup {
        Rollup::Quarter => "slot".to_owned(),
        Rollup::Day => format!("slot * {}", DAY_US / QUARTER_US),
    }
}

/// Sums over `parts`, grouped by `group`; rows of [`AggRow`](crate::store::sql::AggRow).
pub(crate) fn aggregate(sql: &mut Sql, filter: &Filter, group: Group, parts: &[Part]) {
    // Grouped by their own 15-minute slot, the per-slot totals' rows are whole groups
    // already (no other part reads those slots): only the other parts need summing,
    // and summing thousands of one-row groups cost more than reading them.
    let (whole, summed): (Vec<Part>, Vec<Part>) = if group.key.is_none() && group.slot_us.is_some()
    {
        parts.iter().partition(|p| matches!(p, Part::Totals(..)))
    } else {
        (Vec::new(), parts.to_vec())
    };
    sql.list(&whole, " UNION ALL ", |sql, part| {
        part_select(sql, filter, group, *part);
    });
    if summed.is_empty() {
        return;
    }
    if !whole.is_empty() {
        sql.push(" UNION ALL ");
    }
    sql.push("SELECT k1, slot");
    for m in MEASURES {
        let sum = sql.sum(m);
        sql.push(", ").push(&sum).push(" AS ").push(m);
    }
    sql.push(" FROM (");
    sql.list(&summed, " UNION ALL ", |sql, part| {
        part_select(sql, filter, group, *part);
    });
    sql.push(") t GROUP BY k1, slot");
}

/// Exact durations and their counts from the raw parts, for the histograms, per time
/// slot of `slot_us` microseconds when given; rows of
/// [`ValueCount`](crate::store::sql::ValueCount).
pub(crate) fn raw_values(
    sql: &mut Sql,
    filter: &Filter,
    parts: &[(i64, i64)],
    slot_us: Option<i64>,
) {
    let slot = slot_us.map_or(sql.null_int().to_owned(), |us| sql.div("started_at_us", us));
    let kinds = [
        (0, "duration_us", ""),
        (1, "ttfb_us", " AND ttfb_us IS NOT NULL"),
    ];
    sql.list(kinds, " UNION ALL ", |sql, (kind, column, extra)| {
        sql.push("SELECT ")
            .int(kind)
            .push(" AS kind, slot, v, COUNT(*) AS n FROM (");
        sql.list(parts, " UNION ALL ", |sql, &(from, to)| {
            sql.push("SELECT ").push(&slot).push(" AS slot, ");
            sql.push(column).push(" AS v FROM usage_records");
            raw_where(sql, filter, from, to);
            sql.push(extra);
        });
        sql.push(") t").int(kind).push(" GROUP BY slot, v");
    });
}

/// The stored histograms of the rollup parts, with each row's 15-minute slot when
/// `slotted`; rows of [`HistPair`](crate::store::sql::HistPair).
pub(crate) fn rollup_histograms(
    sql: &mut Sql,
    filter: &Filter,
    parts: &[(Rollup, i64, i64)],
    slotted: bool,
) {
    sql.list(parts, " UNION ALL ", |sql, &(rollup, from, to)| {
        let slot = match slotted {
            false => sql.null_int().to_owned(),
            true => quarter_slot(rollup),
        };
        sql.push("SELECT ")
            .push(&slot)
            .push(" AS slot, latency_hist, ttfb_hist FROM ")
            .push(rollup.table());
        rollup_where(sql, filter, from, to);
    });
}

/// One user's records summed in the database: rows of [`UserAgg`](crate::store::sql::UserAgg)
/// of three kinds. Kind 0: sums per day (the index into `days`, the days' starts in
/// microseconds), service and model. Kinds 1 and 2: counts per latency and
/// time-to-first-byte histogram bucket, bucketed with `buckets` (the histogram's bucket
/// bounds). The ranges in `detail` are read from the [`detail`](super::detail)
/// rows (see [`detail::user_rows`](super::detail::user_rows) for what they
/// need), the ranges in `raw` from the user's records, in one pass over their rows
/// through the user index.
pub(crate) fn user_usage(
    sql: &mut Sql,
    filter: &Filter,
    raw: &[(i64, i64)],
    detail: &[(i64, i64)],
    days: &[i64],
    buckets: &[i64],
) {
    if !raw.is_empty() {
        raw_user_usage(sql, filter, raw, days, buckets);
        if !detail.is_empty() {
            sql.push(" UNION ALL ");
        }
    }
    if let (false, Some(user)) = (detail.is_empty(), filter.user.as_deref()) {
        detail::user_rows(sql, user, detail, days);
    }
}

/// The part of [`user_usage`] read from raw rows within `ranges`.
fn raw_user_usage(
    sql: &mut Sql,
    filter: &Filter,
    ranges: &[(i64, i64)],
    days: &[i64],
    buckets: &[i64],
) {
    let sums: Vec<(&str, &str)> = RAW_MEASURES.into_iter().zip(MEASURES).collect();
    let user_rows = |sql: &mut Sql| {
        sql.push("SELECT ");
        sql.step_index("started_at_us", days);
        sql.push(" AS d, ");
        sql.step_index("duration_us", buckets);
        sql.push(" AS lb, CASE WHEN ttfb_us IS NULL THEN NULL ELSE ");
        sql.step_index("ttfb_us", buckets);
        sql.push(" END AS tb, service, model, ");
        sql.push(RAW_COLUMNS).push(" FROM usage_records");
        raw_where_any(sql, filter, ranges);
    };
    if sql.dialect == crate::store::sql::Dialect::Postgres {
        // Grouping sets: the three sums in one pass, nothing written aside.
        let kind = "CASE WHEN GROUPING(d) = 0 THEN 0 WHEN GROUPING(lb) = 0 THEN 1 ELSE 2 END";
        let (kind, k) = (sql.as_bigint(kind), sql.as_bigint("COALESCE(d, lb, tb)"));
        sql.push("SELECT ").push(&kind).push(" AS kind, ").push(&k);
        sql.push(" AS k, service, model");
        for &(expr, name) in &sums {
            let sum = sql.sum(expr);
            sql.push(", ").push(&sum).push(" AS ").push(name);
        }
        sql.push(" FROM (");
        user_rows(sql);
        sql.push(") u GROUP BY GROUPING SETS ((d, service, model), (lb), (tb))");
        // `tb` is NULL without a time to first byte: that group is not a bucket.
        sql.push(" HAVING GROUPING(tb) = 1 OR tb IS NOT NULL");
        return;
    }
    // Read once into a table of its own (where the backend lets us say so), then summed
    // three ways.
    let materialized = if sql.dialect == crate::store::sql::Dialect::Mysql {
        ""
    } else {
        "MATERIALIZED "
    };
    sql.push("WITH u AS ").push(materialized).push("(");
    user_rows(sql);
    let (kind0, day) = (sql.bigint(0), sql.as_bigint("d"));
    sql.push(") SELECT ")
        .push(&kind0)
        .push(" AS kind, ")
        .push(&day);
    sql.push(" AS k, service, model");
    for &(expr, name) in &sums {
        let sum = sql.sum(expr);
        sql.push(", ").push(&sum).push(" AS ").push(name);
    }
    sql.push(" FROM u GROUP BY d, service, model");
    let (zero, null, count) = (sql.bigint(0), sql.null_text(), sql.sum("1"));
    for (kind, column) in [(1, "lb"), (2, "tb")] {
        let (kind, bucket) = (sql.bigint(kind), sql.as_bigint(column));
        sql.push(" UNION ALL SELECT ")
            .push(&kind)
            .push(", ")
            .push(&bucket);
        sql.push(", ")
            .push(null)
            .push(", ")
            .push(null)
            .push(", ")
            .push(&count);
        for _ in &sums[1..] {
            sql.push(", ").push(&zero);
        }
        sql.push(" FROM u WHERE ").push(column);
        sql.push(" IS NOT NULL GROUP BY ").push(column);
    }
}

/// The statement that ranks users by `by` over `parts`: the first `limit` users' six
/// sums, best first (ties by name, byte order), each row with the number of users in
/// the whole ranking (`groups`); users whose requests sum to zero are left out.
///
/// Over the per-user rollups it ranks in two steps within the one statement: first by
/// the ranked sum alone (one sum over tens of thousands of rows instead of six), then
/// the six sums of the `limit` winners only, read by key. Over raw rows the winners'
/// rows would be the largest share of the scan, so it sums everything in one pass.
pub(crate) fn user_sums(
    sql: &mut Sql,
    filter: &Filter,
    parts: &[UserPart],
    by: RankBy,
    limit: usize,
) {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rollup_parts: Option<Vec<_>> = parts.iter().map(rollup_part).collect();
    let parts = match rollup_parts {
        Some(parts) if !parts.is_empty() => parts,
        _ => return user_sums_in_one_pass(sql, filter, parts, by, limit),
    };
    let metric = match by {
        RankBy::Requests => "requests".to_owned(),
        RankBy::Tokens => Sql::saturating_add("tokens_in", "tokens_out"),
        RankBy::Cost => "cost_micros".to_owned(),
    };
    // The winners, by the ranked sum alone.
    sql.push("WITH ranked AS (SELECT k1, COUNT(*) OVER () AS groups, ");
    let ranked = sql.sum("metric");
    sql.push(&ranked).push(" AS metric FROM (");
    // Ranked by requests, the ranked sum also tells who has none.
    let requests_column = by != RankBy::Requests;
    sql.list(&parts, " UNION ALL ", |sql, &(rollup, from, to, sign)| {
        let select = |sql: &mut Sql| {
            sql.push("SELECT user_id AS k1, ");
            if requests_column {
                sql.push(sign).push("requests AS requests, ");
            }
            sql.push(sign).push("(").push(&metric).push(") AS metric");
        };
        user_part_rows(sql, (rollup, from, to), select, false, "");
    });
    let requests = sql.sum(if requests_column {
        "requests"
    } else {
        "metric"
    });
    let name = sql.bytewise("k1");
    sql.push(") t GROUP BY k1 HAVING ")
        .push(&requests)
        .push(" > 0 ORDER BY ");
    sql.push(&ranked)
        .push(" DESC, ")
        .push(&name)
        .push(" LIMIT ")
        .int(limit);
    // Their six sums, each stored row found by its key.
    sql.push(") SELECT t.k1 AS k1, MAX(r.groups) AS groups");
    for c in USER_MEASURES {
        let sum = sql.sum(&format!("t.{c}"));
        sql.push(", ").push(&sum).push(" AS ").push(c);
    }
    sql.push(" FROM (");
    sql.list(&parts, " UNION ALL ", |sql, &(rollup, from, to, sign)| {
        let select = |sql: &mut Sql| user_sums_select(sql, sign);
        let winners = " AND user_id IN (SELECT k1 FROM ranked)";
        user_part_rows(sql, (rollup, from, to), select, true, winners);
    });
    let name = sql.bytewise("t.k1");
    sql.push(") t JOIN ranked r ON r.k1 = t.k1 GROUP BY t.k1 ORDER BY MAX(r.metric) DESC, ");
    sql.push(&name);
}

/// The six sums of a per-user rollup's rows, signed, as the rankings' parts select them.
fn user_sums_select(sql: &mut Sql, sign: &str) {
    sql.push("SELECT user_id AS k1");
    for c in USER_MEASURES {
        sql.push(", ").push(sign).push(c).push(" AS ").push(c);
    }
}

/// A per-user rollup part's rows, selected by `select` (unqualified columns of the
/// rollup): its slots, by key when `by_key` (a list of slots instead of a range), and
/// each branch's `WHERE` ending with `and`. The 7-day blocks not sealed yet have no rows
/// of their own (see the `seal` module): their days are read instead.
fn user_part_rows(
    sql: &mut Sql,
    (rollup, from, to): (UserRollup, i64, i64),
    select: impl Fn(&mut Sql),
    by_key: bool,
    and: &str,
) {
    select(sql);
    sql.push(" FROM ").push(rollup.table());
    if by_key {
        sql.push(" WHERE slot IN (");
        sql.list(from..to, ", ", |sql, slot| {
            sql.int(slot);
        });
        sql.push(")");
    } else {
        slots_where(sql, "slot", from, to);
    }
    sql.push(and);
    if rollup == UserRollup::Week {
        let days = DAYS;
        sql.push(" UNION ALL ");
        select(sql);
        // The few blocks first, then each one's days by key.
        let join = sql.join_in_order();
        sql.push(" FROM ").push(BLOCKS).push(join);
        sql.push(UserRollup::Day.table());
        sql.push(" ON slot >= block * ").int(days);
        sql.push(" AND slot < block * ")
            .int(days)
            .push(" + ")
            .int(days);
        slots_where(sql, "block", from, to);
        sql.push(" AND sealed = 0").push(and);
    }
}

/// A rollup part's table, slot range and the sign its rows are added with; `None` for
/// raw rows.
fn rollup_part(part: &UserPart) -> Option<(UserRollup, i64, i64, &'static str)> {
    match *part {
        UserPart::Add(rollup, from, to) => Some((rollup, from, to, "")),
        UserPart::Subtract(rollup, from, to) => Some((rollup, from, to, "-")),
        UserPart::Raw(..) => None,
    }
}

fn user_sums_in_one_pass(
    sql: &mut Sql,
    filter: &Filter,
    parts: &[UserPart],
    by: RankBy,
    limit: i64,
) {
    let order = match by {
        RankBy::Requests => sql.sum("requests"),
        RankBy::Tokens => Sql::saturating_add(&sql.sum("tokens_in"), &sql.sum("tokens_out")),
        RankBy::Cost => sql.sum("cost_micros"),
    };
    sql.push("SELECT k1, COUNT(*) OVER () AS groups");
    for c in USER_MEASURES {
        let sum = sql.sum(c);
        sql.push(", ").push(&sum).push(" AS ").push(c);
    }
    sql.push(" FROM (");
    sql.list(parts, " UNION ALL ", |sql, part| match *part {
        UserPart::Raw(from, to) => {
            sql.push(
                "SELECT user_id AS k1, 1 AS requests, \
                 CASE WHEN outcome <> 'success' THEN 1 ELSE 0 END AS errors, tokens_in, \
                 tokens_out, tokens_cached_in AS tokens_cached, \
                 COALESCE(cost_micros, 0) AS cost_micros FROM usage_records",
            );
            raw_where(sql, filter, from, to);
            sql.push(" AND user_id IS NOT NULL");
        }
        UserPart::Add(..) | UserPart::Subtract(..) => {
            if let Some((rollup, from, to, sign)) = rollup_part(part) {
                let select = |sql: &mut Sql| user_sums_select(sql, sign);
                user_part_rows(sql, (rollup, from, to), select, false, "");
            }
        }
    });
    // A user whose records all lie in subtracted slots sums to no requests.
    let requests = sql.sum("requests");
    sql.push(") t GROUP BY k1 HAVING ")
        .push(&requests)
        .push(" > 0 ORDER BY ")
        .push(&order)
        .push(" DESC, ");
    let name = sql.bytewise("k1");
    sql.push(&name).push(" LIMIT ").int(limit);
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000;

    #[test]
    fn a_range_is_cut_into_edges_quarters_and_days() {
        let from = 2 * DAY_US - 5 * H - 7; // 19:00 less 7 µs, day 1
        let to = 5 * DAY_US + 2 * H + 60_000_000; // 02:01, day 5
        let parts = parts(from, to, true, true, false);
        let q = |us: i64| us / QUARTER_US;
        assert_eq!(
            parts,
            vec![
                Part::Raw(from, q(2 * DAY_US - 5 * H) * QUARTER_US),
                Part::Rollup(Rollup::Quarter, q(2 * DAY_US - 5 * H), q(2 * DAY_US)),
                Part::Rollup(Rollup::Day, 2, 5),
                Part::Rollup(Rollup::Quarter, q(5 * DAY_US), q(5 * DAY_US + 2 * H)),
                Part::Raw(5 * DAY_US + 2 * H, to),
            ]
        );
    }

    #[test]
    fn a_short_range_reads_raw_rows() {
        assert_eq!(parts(10, 20, true, true, false), vec![Part::Raw(10, 20)]);
        assert_eq!(
            parts(0, DAY_US, false, true, false),
            vec![Part::Raw(0, DAY_US)]
        );
        assert_eq!(
            parts(0, DAY_US, true, false, false),
            vec![Part::Rollup(Rollup::Quarter, 0, 96)]
        );
        assert_eq!(
            parts(0, DAY_US, true, false, true),
            vec![Part::Totals(0, 96)]
        );
        assert_eq!(
            user_parts(0, DAY_US),
            vec![UserPart::Add(UserRollup::Day, 0, 1)]
        );
        assert_eq!(
            user_parts(DAY_US, 30 * DAY_US),
            vec![
                UserPart::Subtract(UserRollup::Day, 0, 1),
                UserPart::Add(UserRollup::Week, 0, 4),
                UserPart::Add(UserRollup::Day, 28, 30),
            ]
        );
    }

    #[test]
    fn a_block_may_reach_past_the_range_and_its_extra_days_are_subtracted() {
        // Days 6 to 36: one day before the first block ends, one after the last begins.
        let parts = user_parts(6 * DAY_US + 5, 36 * DAY_US + 7);
        assert_eq!(
            parts,
            vec![
                UserPart::Raw(6 * DAY_US + 5, 7 * DAY_US),
                UserPart::Add(UserRollup::Week, 1, 5),
                UserPart::Add(UserRollup::Day, 35, 36),
                UserPart::Raw(36 * DAY_US, 36 * DAY_US + 7),
            ]
        );
        let parts = user_parts(DAY_US * 8, DAY_US * 34);
        assert_eq!(
            parts,
            vec![
                UserPart::Subtract(UserRollup::Day, 7, 8),
                UserPart::Add(UserRollup::Week, 1, 5),
                UserPart::Subtract(UserRollup::Day, 34, 35),
            ]
        );
    }

    #[test]
    fn user_parts_cover_each_day_of_the_range_exactly_once() {
        for d0 in 0..30 {
            for d1 in d0 + 1..d0 + 70 {
                let mut count = std::collections::HashMap::<i64, i64>::new();
                for part in user_parts(d0 * DAY_US, d1 * DAY_US) {
                    let (days, sign) = match part {
                        UserPart::Add(UserRollup::Day, a, b) => (a..b, 1),
                        UserPart::Subtract(UserRollup::Day, a, b) => (a..b, -1),
                        UserPart::Add(UserRollup::Week, a, b) => (7 * a..7 * b, 1),
                        other => panic!("unexpected part {other:?}"),
                    };
                    for day in days {
                        *count.entry(day).or_default() += sign;
                    }
                }
                count.retain(|_, n| *n != 0);
                let mut days: Vec<_> = count.into_iter().collect();
                days.sort_unstable();
                let expected: Vec<_> = (d0..d1).map(|d| (d, 1)).collect();
                assert_eq!(days, expected, "days {d0}..{d1}");
            }
        }
    }
}
