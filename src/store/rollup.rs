//! The rollup tables: sums and latency histograms per time slot, kept up to date in the
//! transaction that writes a batch, so that queries over months read a few thousand
//! rows instead of millions.
//!
//! | table | slot | key | serves |
//! |---|---|---|---|
//! | `usage_rollup_15m` | 15 minutes | service, model, provider, outcome, status class | series in any zone in use, range edges |
//! | `usage_rollup_1d` | UTC day | the same | totals and breakdowns over whole days |
//! | `usage_totals_15m` | 15 minutes | none | series and peak hours when only time filters |
//! | `usage_user_1d` | UTC day | user | top users, unique users: partial weeks |
//! | `usage_user_7d` | 7 days | user | top users, unique users: whole 7-day blocks, sealed (see [`seal`](super::seal)) |
//! | `usage_user_hours` | UTC hour | heavy user, service, model | one user's usage (see [`user_detail`](super::user_detail)) |
//! | `usage_user_hist` | UTC day | heavy user, histogram bucket | one user's percentiles |
//!
//! Fifteen-minute slots serve every time zone in use today (all offsets are whole
//! quarter hours). The user is kept out of the first two tables: a key with the user
//! barely compresses. Only records a batch really inserted are added, so a retried batch
//! adds nothing twice. The 7-day per-user sums are written once per block instead of by
//! every batch: a batch updates the per-user sums of about as many users as it has
//! records, and that update was the largest part of keeping the rollups.

use std::collections::BTreeMap;

use diesel::sql_types::{BigInt, Integer, Text};
use diesel::QueryableByName;

use super::row::Row;
use super::seal;
use super::sql::{Dialect, Sql, MEASURES};
use crate::query::{Histogram, Totals};

/// Microseconds in a 15-minute slot.
pub(crate) const QUARTER_US: i64 = 900_000_000;
/// Microseconds in a day.
pub(crate) const DAY_US: i64 = 86_400_000_000;
/// Microseconds in a 7-day block (blocks count from the epoch, a Thursday: they are not
/// calendar weeks, only units of the per-user sums).
pub(crate) const WEEK_US: i64 = 7 * DAY_US;

/// One of the two rollups keyed by slot and dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rollup {
    Quarter,
    Day,
}

impl Rollup {
    pub(crate) const ALL: [Rollup; 2] = [Rollup::Quarter, Rollup::Day];

    pub(crate) fn table(self) -> &'static str {
        match self {
            Rollup::Quarter => "usage_rollup_15m",
            Rollup::Day => "usage_rollup_1d",
        }
    }

    pub(crate) fn width_us(self) -> i64 {
        match self {
            Rollup::Quarter => QUARTER_US,
            Rollup::Day => DAY_US,
        }
    }
}

/// Columns of the dimension rollups, key first.
const KEY: [&str; 6] = [
    "slot",
    "service",
    "model",
    "provider",
    "outcome",
    "status_class",
];
/// The histogram columns, after the [`MEASURES`].
const HISTOGRAMS: [&str; 2] = ["latency_hist", "ttfb_hist"];

/// A dimension rollup's key. Missing names are stored as empty text (a key column
/// cannot be NULL); names are never empty otherwise.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, QueryableByName)]
pub(crate) struct Key {
    #[diesel(sql_type = BigInt)]
    slot: i64,
    #[diesel(sql_type = Text)]
    service: String,
    #[diesel(sql_type = Text)]
    model: String,
    #[diesel(sql_type = Text)]
    provider: String,
    #[diesel(sql_type = Text)]
    outcome: String,
    #[diesel(sql_type = Integer)]
    status_class: i32,
}

/// A stored dimension rollup row.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct Stored {
    #[diesel(embed)]
    key: Key,
    #[diesel(embed)]
    totals: super::sql::Measures,
    #[diesel(sql_type = Text)]
    latency_hist: String,
    #[diesel(sql_type = Text)]
    ttfb_hist: String,
}

/// What a batch adds to one rollup row.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cell {
    totals: Totals,
    latency: Histogram,
    ttfb: Histogram,
}

impl Cell {
    fn add_row(&mut self, row: &Row) {
        self.totals.add(&row_totals(row));
        self.latency.add(row.duration_us, 1);
        if let Some(ttfb) = row.ttfb_us {
            self.ttfb.add(ttfb, 1);
        }
    }

    fn merge(&mut self, other: &Cell) {
        self.totals.add(&other.totals);
        self.latency.merge(&other.latency);
        self.ttfb.merge(&other.ttfb);
    }
}

/// One record's contribution to the sums.
pub(crate) fn row_totals(row: &Row) -> Totals {
    Totals {
        requests: 1,
        errors: i64::from(row.outcome != "success"),
        tokens_in: row.tokens_in,
        tokens_out: row.tokens_out,
        tokens_cached: row.tokens_cached_in,
        cost_micros: row.cost_micros.unwrap_or(0),
        response_bytes: row.response_bytes,
        duration_sum_us: row.duration_us,
        ttfb_sum_us: row.ttfb_us.unwrap_or(0),
        ttfb_count: i64::from(row.ttfb_us.is_some()),
        unpriced: i64::from(row.unpriced),
    }
}

/// The status class digit of a stored status, 0 without one.
pub(crate) fn status_class(status: Option<i16>) -> i32 {
    status.map_or(0, |s| i32::from(s) / 100)
}

/// The batch's contributions to `rollup`, by key (sorted, so that concurrent writers
/// lock rows in the same order).
pub(crate) fn cells(rollup: Rollup, rows: &[Row]) -> BTreeMap<Key, Cell> {
    // Keyed by borrowed names first: a batch has far more rows than keys.
    let mut cells: BTreeMap<(i64, &str, &str, &str, &str, i32), Cell> = BTreeMap::new();
    for row in rows {
        let key = (
            row.started_at_us.div_euclid(rollup.width_us()),
            row.service.as_deref().unwrap_or_default(),
            row.model.as_deref().unwrap_or_default(),
            row.provider.as_deref().unwrap_or_default(),
            row.outcome.as_str(),
            status_class(row.status),
        );
        cells.entry(key).or_default().add_row(row);
    }
    cells
        .into_iter()
        .map(
            |((slot, service, model, provider, outcome, status_class), cell)| {
                let key = Key {
                    slot,
                    service: service.to_owned(),
                    model: model.to_owned(),
                    provider: provider.to_owned(),
                    outcome: outcome.to_owned(),
                    status_class,
                };
                (key, cell)
            },
        )
        .collect()
}

/// Creates the rows the batch needs that do not exist yet, with zeros, so that
/// [`select`] can lock every one of them (MySQL; PostgreSQL uses [`add`], SQLite writes one
/// transaction at a time and needs none of this).
pub(crate) fn ensure(dialect: Dialect, rollup: Rollup, cells: &BTreeMap<Key, Cell>) -> Sql {
    let mut sql = Sql::new(dialect);
    let insert = match dialect {
        Dialect::Mysql => "INSERT IGNORE INTO ",
        _ => "INSERT INTO ",
    };
    sql.push(insert).push(rollup.table()).push(" (");
    push_columns(&mut sql);
    sql.push(") VALUES ");
    sql.list(cells.keys(), ", ", |sql, key| {
        push_key(sql, key);
        sql.push(", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '', '')");
    });
    if dialect != Dialect::Mysql {
        sql.push(" ON CONFLICT DO NOTHING");
    }
    sql
}

/// Every column of a dimension rollup, key first.
fn push_columns(sql: &mut Sql) {
    sql.push(&KEY.join(", ")).push(", ");
    sql.push(&MEASURES.join(", "))
        .push(", ")
        .push(&HISTOGRAMS.join(", "));
}

fn push_key(sql: &mut Sql, key: &Key) {
    sql.push("(").int(key.slot).push(", ");
    sql.text(&key.service).push(", ");
    sql.text(&key.model).push(", ");
    sql.text(&key.provider).push(", ");
    sql.text(&key.outcome).push(", ");
    sql.int(i64::from(key.status_class));
}

/// The stored rows of the slots the batch touches, locked until the transaction ends
/// where the backend locks rows.
pub(crate) fn select(dialect: Dialect, rollup: Rollup, cells: &BTreeMap<Key, Cell>) -> Sql {
    let mut slots: Vec<i64> = cells.keys().map(|k| k.slot).collect();
    slots.dedup();
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ");
    push_columns(&mut sql);
    sql.push(" FROM ").push(rollup.table());
    sql.push(" WHERE slot IN (");
    sql.list(slots, ", ", |sql, slot| {
        sql.int(slot);
    });
    sql.push(")");
    if dialect != Dialect::Sqlite {
        sql.push(" ORDER BY ")
            .push(&KEY.join(", "))
            .push(" FOR UPDATE");
    }
    sql
}

/// Adds the stored values to the batch's and writes the sums back, overwriting: the rows
/// were read (and locked) in the same transaction. A stored histogram that cannot be read
/// is an error, not a reset to zero.
pub(crate) fn upsert(
    dialect: Dialect,
    rollup: Rollup,
    mut cells: BTreeMap<Key, Cell>,
    stored: Vec<Stored>,
) -> Result<Sql, String> {
    for row in stored {
        let Some(cell) = cells.get_mut(&row.key) else {
            continue;
        };
        let bad = || format!("unreadable histogram in {}", rollup.table());
        let old = Cell {
            totals: row.totals.totals(),
            latency: Histogram::decode(&row.latency_hist).ok_or_else(bad)?,
            ttfb: Histogram::decode(&row.ttfb_hist).ok_or_else(bad)?,
        };
        cell.merge(&old);
    }
    let mut sql = insert_cells(dialect, rollup, &cells);
    let values: Vec<&str> = MEASURES.iter().chain(&HISTOGRAMS).copied().collect();
    sql.on_conflict(&KEY, &values, rollup.table(), false);
    Ok(sql)
}

/// `INSERT` of the cells' rows, in key order.
fn insert_cells(dialect: Dialect, rollup: Rollup, cells: &BTreeMap<Key, Cell>) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO ").push(rollup.table()).push(" (");
    push_columns(&mut sql);
    sql.push(") VALUES ");
    sql.list(cells, ", ", |sql, (key, cell)| {
        push_key(sql, key);
        for n in cell.totals.values() {
            sql.push(", ").int(n);
        }
        sql.push(", ").text(&cell.latency.encode());
        sql.push(", ").text(&cell.ttfb.encode()).push(")");
    });
    sql
}

/// PostgreSQL's one statement for what [`ensure`], [`select`] and [`upsert`] do: the
/// upsert adds the sums and merges the histograms itself, on the row it locked. Rows
/// are locked in key order, as [`select`]'s are.
pub(crate) fn add(rollup: Rollup, cells: &BTreeMap<Key, Cell>) -> Sql {
    let table = rollup.table();
    let mut sql = insert_cells(Dialect::Postgres, rollup, cells);
    sql.on_conflict(&KEY, &MEASURES, table, true);
    for column in HISTOGRAMS {
        sql.push(", ").push(column).push(" = ");
        sql.push(&merged_histograms(
            &format!("{table}.{column}"),
            &format!("excluded.{column}"),
        ));
    }
    sql
}

/// The SQL of the [`Histogram`] that merges the encoded histograms `a` and `b`, in the
/// form [`Histogram::encode`] writes (counts saturate as [`Histogram::merge`]'s do).
/// Text it did not write stops the statement with an error naming it, as
/// [`Histogram::decode`] refuses it.
fn merged_histograms(a: &str, b: &str) -> String {
    let pair = "'^[0-9]{1,5}:[0-9]{1,19}$'";
    let part = |n: u8| {
        format!("CAST(CASE WHEN p ~ {pair} THEN split_part(p, ':', {n}) ELSE 'unreadable histogram ' || p END AS NUMERIC)")
    };
    format!(
        "(SELECT COALESCE(string_agg(CAST(b AS TEXT) || ':' || CAST(n AS TEXT), ',' ORDER BY b), '') \
         FROM (SELECT {} AS b, CAST(LEAST(SUM({}), {}) AS BIGINT) AS n \
         FROM unnest(string_to_array({a} || ',' || {b}, ',')) AS p WHERE p <> '' GROUP BY 1) AS h)",
        part(1),
        part(2),
        i64::MAX
    )
}

/// The measures the per-user rollups keep: the first six.
pub(crate) const USER_MEASURES: &[&str] = MEASURES.split_at(6).0;

/// The per-user rollups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UserRollup {
    Day,
    Week,
}

impl UserRollup {
    pub(crate) fn table(self) -> &'static str {
        match self {
            UserRollup::Day => "usage_user_1d",
            UserRollup::Week => "usage_user_7d",
        }
    }

    pub(crate) fn width_us(self) -> i64 {
        match self {
            UserRollup::Day => DAY_US,
            UserRollup::Week => WEEK_US,
        }
    }
}

/// Adds the batch's records to a per-user rollup (records without a user are not
/// ranked). The sums are added in the statement itself, so no row needs locking.
pub(crate) fn users(dialect: Dialect, rollup: UserRollup, rows: &[Row]) -> Option<Sql> {
    let mut sums: BTreeMap<(i64, &str), Totals> = BTreeMap::new();
    for row in rows {
        if let Some(user) = row.user_id.as_deref() {
            let slot = row.started_at_us.div_euclid(rollup.width_us());
            sums.entry((slot, user)).or_default().add(&row_totals(row));
        }
    }
    if sums.is_empty() {
        return None;
    }
    let columns = USER_MEASURES;
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO ")
        .push(rollup.table())
        .push(" (slot, user_id, ");
    sql.push(&columns.join(", ")).push(") ");
    if dialect == Dialect::Postgres {
        // One array per column: a thousand-row VALUES list took the server longer to
        // parse and bind than to upsert.
        sql.push("SELECT * FROM UNNEST(");
        sql.int_array(sums.keys().map(|(slot, _)| *slot));
        sql.push(", ")
            .text_array(sums.keys().map(|(_, user)| *user));
        for i in 0..columns.len() {
            sql.push(", ")
                .int_array(sums.values().map(|t| t.values()[i]));
        }
        sql.push(")");
    } else {
        sql.push("VALUES ");
        sql.list(&sums, ", ", |sql, ((slot, user), t)| {
            sql.push("(").int(*slot).push(", ").text(user);
            for n in &t.values()[..columns.len()] {
                sql.push(", ").int(*n);
            }
            sql.push(")");
        });
    }
    sql.on_conflict(&["slot", "user_id"], columns, rollup.table(), true);
    Some(sql)
}

/// Adds the batch's records to the per-slot totals, in the statement itself.
pub(crate) fn totals(dialect: Dialect, rows: &[Row]) -> Option<Sql> {
    let mut sums: BTreeMap<i64, Totals> = BTreeMap::new();
    for row in rows {
        let slot = row.started_at_us.div_euclid(QUARTER_US);
        sums.entry(slot).or_default().add(&row_totals(row));
    }
    if sums.is_empty() {
        return None;
    }
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO usage_totals_15m (slot, ");
    sql.push(&MEASURES.join(", ")).push(") ");
    if dialect == Dialect::Postgres {
        sql.push("SELECT * FROM UNNEST(");
        sql.int_array(sums.keys().copied());
        for i in 0..MEASURES.len() {
            sql.push(", ")
                .int_array(sums.values().map(|t| t.values()[i]));
        }
        sql.push(")");
    } else {
        sql.push("VALUES ");
        sql.list(&sums, ", ", |sql, (slot, t)| {
            sql.push("(").int(*slot);
            for n in t.values() {
                sql.push(", ").int(n);
            }
            sql.push(")");
        });
    }
    sql.on_conflict(&["slot"], &MEASURES, "usage_totals_15m", true);
    Some(sql)
}

/// The statements that bring every rollup up to date with `new`, the rows a batch
/// really inserted, run in the batch's transaction by each backend's writer.
pub(crate) enum Step {
    /// Run this.
    Execute(Sql),
    /// Read the stored rows of a rollup with this, then call [`upsert`].
    Select(Rollup, Sql, BTreeMap<Key, Cell>),
    /// Lock the per-user blocks with this, then run what [`seal::statements`] gives.
    Blocks(Sql),
}

/// The most rows whose rollups one round of [`steps`] writes; a batch with more is
/// written in several rounds, in its one transaction. A statement binds at most a dozen
/// values per row (six for a cell of each dimension rollup, chained into one statement
/// on PostgreSQL), so this many rows stay under SQLite's 32,766 parameters, the
/// smallest limit of the three backends.
pub(crate) const ROWS_PER_STEP: usize = 2_000;

/// The steps for `new` (at most [`ROWS_PER_STEP`] rows), in order.
pub(crate) fn steps(dialect: Dialect, new: &[Row]) -> Vec<Step> {
    let mut steps = Vec::new();
    if new.is_empty() {
        return steps;
    }
    if dialect == Dialect::Postgres {
        let mut parts: Vec<Sql> = Rollup::ALL
            .into_iter()
            .map(|rollup| add(rollup, &cells(rollup, new)))
            .collect();
        parts.extend(users(dialect, UserRollup::Day, new));
        parts.extend(seal::ensure(dialect, new));
        parts.extend(totals(dialect, new));
        steps.extend(Sql::chain(parts).map(Step::Execute));
        steps.extend(seal::lock(dialect, new).map(Step::Blocks));
        return steps;
    }
    for rollup in Rollup::ALL {
        let cells = cells(rollup, new);
        if dialect != Dialect::Sqlite {
            steps.push(Step::Execute(ensure(dialect, rollup, &cells)));
        }
        steps.push(Step::Select(rollup, select(dialect, rollup, &cells), cells));
    }
    let others = [
        users(dialect, UserRollup::Day, new),
        seal::ensure(dialect, new),
    ];
    steps.extend(others.into_iter().flatten().map(Step::Execute));
    steps.extend(seal::lock(dialect, new).map(Step::Blocks));
    steps.extend(totals(dialect, new).map(Step::Execute));
    steps
}

/// Drops the batch's duplicates and the rows already stored (`stored` keys), leaving
/// the rows an insert will really add.
#[cfg_attr(not(any(feature = "sqlite", feature = "mysql")), allow(dead_code))]
pub(crate) fn only_new(rows: &[Row], stored: &[(i64, Vec<u8>)]) -> Vec<Row> {
    let mut seen: std::collections::HashSet<(i64, &[u8])> =
        stored.iter().map(|(t, id)| (*t, id.as_slice())).collect();
    rows.iter()
        .filter(|r| seen.insert((r.started_at_us, r.id.as_slice())))
        .cloned()
        .collect()
}

/// The statement that finds which of `rows` are stored already; `lock` makes it hold
/// the keys (and the gaps around them) until the transaction ends (MySQL).
#[cfg_attr(not(any(feature = "sqlite", feature = "mysql")), allow(dead_code))]
pub(crate) fn existing(dialect: Dialect, rows: &[Row], lock: bool) -> Sql {
    let mut times: Vec<i64> = rows.iter().map(|r| r.started_at_us).collect();
    times.sort_unstable();
    times.dedup();
    let mut sql = Sql::new(dialect);
    sql.push("SELECT started_at_us, id FROM usage_records WHERE started_at_us IN (");
    sql.list(times, ", ", |sql, t| {
        sql.int(t);
    });
    sql.push(")");
    if lock {
        sql.push(" FOR UPDATE");
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest parameter count each backend takes in one statement.
    fn max_binds(dialect: Dialect) -> usize {
        match dialect {
            Dialect::Sqlite => 32_766,
            Dialect::Postgres | Dialect::Mysql => 65_535,
        }
    }

    /// Rows that share nothing: every row its own cell in every rollup and its own user.
    fn distinct_rows(n: usize) -> Vec<Row> {
        (0..n)
            .map(|i| {
                let mut row = Row::from(&crate::UsageRecord::builder().build());
                row.started_at_us = i as i64 * 1_000;
                row.service = Some(format!("service {i}"));
                row.model = Some(format!("model {i}"));
                row.provider = Some(format!("provider {i}"));
                row.user_id = Some(format!("user {i}"));
                row
            })
            .collect()
    }

    /// The most values one statement of the steps for `rows` binds.
    fn most_binds(dialect: Dialect, rows: &[Row]) -> usize {
        let mut most = 0;
        for step in steps(dialect, rows) {
            let binds = match step {
                Step::Execute(sql) | Step::Blocks(sql) => sql.binds.len(),
                Step::Select(rollup, sql, cells) => {
                    let upsert = upsert(dialect, rollup, cells, Vec::new()).unwrap();
                    sql.binds.len().max(upsert.binds.len())
                }
            };
            most = most.max(binds);
        }
        most
    }

    #[test]
    fn a_round_of_steps_stays_under_every_bind_limit() {
        let rows = distinct_rows(ROWS_PER_STEP);
        for dialect in [Dialect::Sqlite, Dialect::Postgres, Dialect::Mysql] {
            let most = most_binds(dialect, &rows);
            assert!(most <= max_binds(dialect), "{dialect:?}: {most} binds");
            assert!(
                most >= 6 * ROWS_PER_STEP,
                "{dialect:?}: the test binds little"
            );
        }
        // What the writers split: a batch of 6,000 such rows in one round would not do.
        let most = most_binds(Dialect::Sqlite, &distinct_rows(3 * ROWS_PER_STEP));
        assert!(most > max_binds(Dialect::Sqlite), "{most}");
    }
}
