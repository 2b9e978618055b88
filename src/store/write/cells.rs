//! The dimension rollups (`usage_rollup_15m`, `usage_rollup_1d`): sums and latency
//! histograms per time slot, service, model, provider, outcome and status class, kept
//! up to date in the transaction that writes a batch, so that queries over months read
//! a few thousand rows instead of millions.
//!
//! Fifteen-minute slots serve every time zone in use today (all offsets are whole
//! quarter hours). The user is kept out of these tables: a key with the user barely
//! compresses. Only records a batch really inserted are added, so a retried batch adds
//! nothing twice.

use std::collections::BTreeMap;

use diesel::sql_types::{BigInt, Integer, Text};
use diesel::QueryableByName;

use crate::query::{Histogram, Totals};
use crate::store::schema::histogram;
use crate::store::schema::row::{row_totals, Row};
use crate::store::schema::{Rollup, HISTOGRAMS, KEY, MEASURES};
use crate::store::sql::{Dialect, Measures, Sql};

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
    totals: Measures,
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
    sql.insert_ignoring(rollup.table()).push(" (");
    push_columns(&mut sql);
    sql.push(") VALUES ");
    sql.list(cells.keys(), ", ", |sql, key| {
        push_key(sql, key);
        sql.push(", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '', '')");
    });
    sql.or_ignore();
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
    sql.bind_text(&key.service).push(", ");
    sql.bind_text(&key.model).push(", ");
    sql.bind_text(&key.provider).push(", ");
    sql.bind_text(&key.outcome).push(", ");
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
            latency: histogram::decode(&row.latency_hist).ok_or_else(bad)?,
            ttfb: histogram::decode(&row.ttfb_hist).ok_or_else(bad)?,
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
        sql.push(", ").bind_text(&histogram::encode(&cell.latency));
        sql.push(", ")
            .bind_text(&histogram::encode(&cell.ttfb))
            .push(")");
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
        sql.push(&histogram::merged_sql(
            &format!("{table}.{column}"),
            &format!("excluded.{column}"),
        ));
    }
    sql
}
