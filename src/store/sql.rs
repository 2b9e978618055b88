//! Hand-built SQL for the analytics and the rollups: one text per statement with the
//! differences between backends (placeholders, integer division, casts, upserts) kept
//! here.
//!
//! Two kinds of call build a statement, named apart: [`Sql::push`] and [`Sql::int`]
//! write trusted SQL text (the crate's own text, and integers, which cannot carry
//! anything else), and the `bind_*` calls bind a value, which never enters the text.
//! A bind's placeholder is recorded where it stands and numbered when the statement is
//! rendered ([`Sql::text`]), so statements can be joined without reading their text.

use diesel::backend::Backend;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Binary, HasSqlType, Integer, Nullable, Text};
use diesel::QueryableByName;

/// The SQL flavour of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    Sqlite,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    Mysql,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    Bytes(Vec<u8>),
}

/// A statement being written, with its binds in placeholder order.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    pub(crate) dialect: Dialect,
    /// The statement without its placeholders.
    text: String,
    /// Where each bind's placeholder goes in `text`, in bind order (so ascending).
    marks: Vec<usize>,
    pub(crate) binds: Vec<Bind>,
}

impl Sql {
    pub(crate) fn new(dialect: Dialect) -> Self {
        Sql {
            dialect,
            text: String::with_capacity(512),
            marks: Vec::new(),
            binds: Vec::new(),
        }
    }

    /// Writes trusted SQL text: the crate's own, never a value from outside.
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Writes an integer into the text (an integer is safe to write, and a literal lets
    /// the planner see it).
    pub(crate) fn int(&mut self, n: i64) -> &mut Self {
        self.text.push_str(&n.to_string());
        self
    }

    fn bind(&mut self, value: Bind) {
        self.marks.push(self.text.len());
        self.binds.push(value);
    }

    /// Whether nothing was written yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.text.is_empty() && self.binds.is_empty()
    }

    /// Binds a text value.
    pub(crate) fn bind_text(&mut self, value: &str) -> &mut Self {
        self.bind(Bind::Text(value.to_owned()));
        self
    }

    /// Binds a byte string.
    pub(crate) fn bind_bytes(&mut self, value: &[u8]) -> &mut Self {
        self.bind(Bind::Bytes(value.to_owned()));
        self
    }

    /// The statement's text, its placeholders numbered in bind order (`$1`, `$2`, … on
    /// PostgreSQL, `?` elsewhere).
    pub(crate) fn text(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 4 * self.marks.len());
        let mut from = 0;
        for (i, &at) in self.marks.iter().enumerate() {
            out.push_str(&self.text[from..at]);
            match self.dialect {
                Dialect::Postgres => {
                    out.push('$');
                    out.push_str(&(i + 1).to_string());
                }
                Dialect::Sqlite | Dialect::Mysql => out.push('?'),
            }
            from = at;
        }
        out.push_str(&self.text[from..]);
        out
    }

    /// The statement and its binds in one string, equal only for equal statements: each
    /// bind is written after its kind and length, so no value can pass for another.
    pub(crate) fn key(&self) -> String {
        let mut key = self.text();
        for bind in &self.binds {
            match bind {
                Bind::Text(text) => {
                    key.push_str(&format!("\0t{}:", text.len()));
                    key.push_str(text);
                }
                Bind::Bytes(bytes) => {
                    key.push_str(&format!("\0b{}:", bytes.len()));
                    bytes.iter().for_each(|b| key.push_str(&format!("{b:02x}")));
                }
            }
        }
        key
    }

    /// A PostgreSQL `BIGINT[]` of `values`, written into the text as one literal: parsed
    /// as a single token, where a `VALUES` list of a thousand rows costs the server
    /// milliseconds to parse and plan.
    pub(crate) fn int_array(&mut self, values: impl IntoIterator<Item = i64>) -> &mut Self {
        self.text.push_str("'{");
        self.list(values, ",", |sql, n| {
            sql.int(n);
        });
        self.text.push_str("}'::int8[]");
        self
    }

    /// A PostgreSQL `TEXT[]` of `values`, bound as one array literal (every element
    /// quoted, backslashes and quotes escaped).
    pub(crate) fn bind_text_array<'a>(
        &mut self,
        values: impl IntoIterator<Item = &'a str>,
    ) -> &mut Self {
        let mut literal = String::from("{");
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                literal.push(',');
            }
            literal.push('"');
            for c in value.chars() {
                if c == '"' || c == '\\' {
                    literal.push('\\');
                }
                literal.push(c);
            }
            literal.push('"');
        }
        literal.push('}');
        self.bind(Bind::Text(literal));
        self.text.push_str("::text[]");
        self
    }

    /// One PostgreSQL statement that runs every one of `parts` (the last as the main
    /// statement, the others as `WITH` queries); `None` for no parts. A statement costs
    /// the writer two round trips and a plan, which for a batch's handful of small
    /// upserts took longer than the upserts. The parts must write different tables: one
    /// statement does not see its own changes.
    pub(crate) fn chain(mut parts: Vec<Sql>) -> Option<Sql> {
        let main = parts.pop()?;
        let mut sql = Sql::new(Dialect::Postgres);
        for (i, part) in parts.into_iter().enumerate() {
            sql.push(if i == 0 { "WITH " } else { ", " });
            sql.push("w").int(i as i64).push(" AS (");
            sql.append(part);
            sql.push(")");
        }
        if !sql.text.is_empty() {
            sql.push(" ");
        }
        sql.append(main);
        Some(sql)
    }

    /// Appends `other`: its binds follow this statement's, and so do its placeholders.
    fn append(&mut self, other: Sql) {
        debug_assert_eq!(other.dialect, self.dialect);
        let offset = self.text.len();
        self.text.push_str(&other.text);
        self.marks.extend(other.marks.iter().map(|at| at + offset));
        self.binds.extend(other.binds);
    }

    /// Appends `items` separated by `sep`, each written by `f`.
    pub(crate) fn list<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        sep: &str,
        mut f: impl FnMut(&mut Self, T),
    ) -> &mut Self {
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.push(sep);
            }
            f(self, item);
        }
        self
    }

    /// `SUM(expr)` as a `BIGINT`, 0 for no rows, saturating at ±`i64::MAX` instead of
    /// failing: PostgreSQL and MySQL sum integers as decimals, clamped before the cast.
    /// SQLite's `SUM` stops the statement on overflow; its `TOTAL` (the same sum, read
    /// as a float) does not, is exact while the sum stays below 2^53 (it adds integers
    /// as integers and converts once), and its cast to an integer saturates. Past 2^53
    /// SQLite's sums are therefore rounded to a float's precision (1 part in 2^53)
    /// before they saturate. The bound is symmetric so that a stored sum can always be
    /// negated.
    pub(crate) fn sum(&self, expr: &str) -> String {
        let (max, neg_max) = (i64::MAX, -i64::MAX);
        match self.dialect {
            Dialect::Sqlite => format!("max(CAST(TOTAL({expr}) AS INTEGER), {neg_max})"),
            Dialect::Postgres => format!(
                "CAST(LEAST(GREATEST(COALESCE(SUM({expr}), 0), {neg_max}), {max}) AS BIGINT)"
            ),
            Dialect::Mysql => format!(
                "CAST(LEAST(GREATEST(COALESCE(SUM({expr}), 0), {neg_max}), {max}) AS SIGNED)"
            ),
        }
    }

    /// `a + b` for `BIGINT`s, saturating at ±`i64::MAX` as [`sum`](Self::sum) does. The
    /// nested `CASE`s fix the order of evaluation, so no overflowing branch runs.
    pub(crate) fn saturating_add(a: &str, b: &str) -> String {
        let (max, neg_max) = (i64::MAX, -i64::MAX);
        format!(
            "(CASE WHEN {b} > 0 THEN (CASE WHEN {a} > {max} - {b} THEN {max} ELSE {a} + {b} END) \
             WHEN {b} < 0 THEN (CASE WHEN {a} < {neg_max} - {b} THEN {neg_max} ELSE {a} + {b} END) \
             ELSE {a} END)"
        )
    }

    /// A join whose left table is read first, as the writer of the statement knows best
    /// (SQLite and MySQL would otherwise scan the right one when it is not yet
    /// analyzed; PostgreSQL's planner has the statistics).
    pub(crate) fn join_in_order(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => " CROSS JOIN ",
            Dialect::Mysql => " STRAIGHT_JOIN ",
            Dialect::Postgres => " JOIN ",
        }
    }

    /// Integer division rounding down, for non-negative operands.
    pub(crate) fn div(&self, expr: &str, by: i64) -> String {
        match self.dialect {
            Dialect::Mysql => format!("({expr} DIV {by})"),
            Dialect::Sqlite | Dialect::Postgres => format!("({expr} / {by})"),
        }
    }

    /// The integer `n` typed `BIGINT`, as a `UNION`'s branches and the row types need.
    pub(crate) fn bigint(&self, n: i64) -> String {
        self.as_bigint(&n.to_string())
    }

    /// The integer expression `expr` typed `BIGINT` (small literals are 32-bit integers
    /// on PostgreSQL).
    pub(crate) fn as_bigint(&self, expr: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => expr.to_owned(),
            Dialect::Postgres => format!("CAST({expr} AS BIGINT)"),
            Dialect::Mysql => format!("CAST({expr} AS SIGNED)"),
        }
    }

    /// A `BIGINT` NULL, so that every branch of a `UNION` has the same column types.
    pub(crate) fn null_int(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "NULL",
            Dialect::Postgres => "CAST(NULL AS BIGINT)",
            Dialect::Mysql => "CAST(NULL AS SIGNED)",
        }
    }

    /// A text NULL.
    pub(crate) fn null_text(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "CAST(NULL AS TEXT)",
            Dialect::Sqlite | Dialect::Mysql => "NULL",
        }
    }

    /// `column` ordered byte by byte, as SQLite and the MySQL tables (a binary NO PAD
    /// collation) do.
    pub(crate) fn bytewise(&self, column: &str) -> String {
        match self.dialect {
            Dialect::Postgres => format!("{column} COLLATE \"C\""),
            Dialect::Sqlite | Dialect::Mysql => column.to_owned(),
        }
    }

    /// The start of an `INSERT` into `table` that leaves out rows whose key exists;
    /// [`or_ignore`](Self::or_ignore) ends it.
    pub(crate) fn insert_ignoring(&mut self, table: &str) -> &mut Self {
        self.push(match self.dialect {
            Dialect::Mysql => "INSERT IGNORE INTO ",
            Dialect::Sqlite | Dialect::Postgres => "INSERT INTO ",
        })
        .push(table)
    }

    /// The end of an [`insert_ignoring`](Self::insert_ignoring).
    pub(crate) fn or_ignore(&mut self) -> &mut Self {
        if self.dialect != Dialect::Mysql {
            self.push(" ON CONFLICT DO NOTHING");
        }
        self
    }

    /// The clause that makes an `INSERT` overwrite the listed columns of a row whose key
    /// exists; `add` adds the new values to the stored ones instead, saturating.
    pub(crate) fn on_conflict(&mut self, key: &[&str], columns: &[&str], table: &str, add: bool) {
        let set = |c: &&str| {
            let (stored, new) = match self.dialect {
                Dialect::Mysql => (c.to_string(), format!("VALUES({c})")),
                _ => (format!("{table}.{c}"), format!("excluded.{c}")),
            };
            let value = if add {
                Sql::saturating_add(&stored, &new)
            } else {
                new
            };
            format!("{c} = {value}")
        };
        let set: Vec<String> = columns.iter().map(set).collect();
        let clause = match self.dialect {
            Dialect::Mysql => format!(" ON DUPLICATE KEY UPDATE {}", set.join(", ")),
            _ => format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                key.join(", "),
                set.join(", ")
            ),
        };
        self.push(&clause);
    }

    /// The index of the last of `lower` (ascending) at most `column`'s value: a binary
    /// search of about log₂(n) integer comparisons a row, written as nested `CASE`s where
    /// the backend has no such function. Values below `lower[0]` count as 0.
    pub(crate) fn step_index(&mut self, column: &str, lower: &[i64]) -> &mut Self {
        if self.dialect == Dialect::Postgres {
            // The same binary search, built in: one array constant to parse instead of a
            // tree of a thousand comparisons, which took PostgreSQL tens of milliseconds
            // to plan. `width_bucket` counts the bounds at most the value.
            self.push("GREATEST(width_bucket(").push(column).push(", ");
            self.int_array(lower.iter().copied()).push(") - 1, 0)");
            return self;
        }
        fn tree(sql: &mut Sql, column: &str, lower: &[i64], lo: usize, hi: usize) {
            if hi - lo <= 1 {
                sql.int(i64::try_from(lo).unwrap_or(i64::MAX));
                return;
            }
            let mid = lo + (hi - lo) / 2;
            sql.push("CASE WHEN ")
                .push(column)
                .push(" < ")
                .int(lower[mid])
                .push(" THEN ");
            tree(sql, column, lower, lo, mid);
            sql.push(" ELSE ");
            tree(sql, column, lower, mid, hi);
            sql.push(" END");
        }
        tree(self, column, lower, 0, lower.len());
        self
    }

    /// Turns the statement into a diesel query with its binds.
    pub(crate) fn boxed<DB>(self) -> BoxedSqlQuery<'static, DB, SqlQuery>
    where
        DB: Backend + HasSqlType<Text> + HasSqlType<Binary>,
        String: ToSql<Text, DB>,
        Vec<u8>: ToSql<Binary, DB>,
    {
        let mut query = diesel::sql_query(self.text()).into_boxed::<DB>();
        for bind in self.binds {
            query = match bind {
                Bind::Text(text) => query.bind::<Text, _>(text),
                Bind::Bytes(bytes) => query.bind::<Binary, _>(bytes),
            };
        }
        query
    }
}

/// Sums over a group of records, as every aggregate statement names its columns.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct AggRow {
    /// The group's dimension value, if grouped by one.
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) k1: Option<String>,
    /// The group's time slot, if grouped by time.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) slot: Option<i64>,
    #[diesel(embed)]
    pub(crate) measures: Measures,
}

/// The sums every aggregate and rollup row carries.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct Measures {
    #[diesel(sql_type = BigInt)]
    requests: i64,
    #[diesel(sql_type = BigInt)]
    errors: i64,
    #[diesel(sql_type = BigInt)]
    tokens_in: i64,
    #[diesel(sql_type = BigInt)]
    tokens_out: i64,
    #[diesel(sql_type = BigInt)]
    tokens_cached: i64,
    #[diesel(sql_type = BigInt)]
    cost_micros: i64,
    #[diesel(sql_type = BigInt)]
    response_bytes: i64,
    #[diesel(sql_type = BigInt)]
    duration_sum_us: i64,
    #[diesel(sql_type = BigInt)]
    ttfb_sum_us: i64,
    #[diesel(sql_type = BigInt)]
    ttfb_count: i64,
    #[diesel(sql_type = BigInt)]
    unpriced: i64,
}

impl Measures {
    pub(crate) fn totals(&self) -> crate::query::Totals {
        crate::query::Totals {
            requests: self.requests,
            errors: self.errors,
            tokens_in: self.tokens_in,
            tokens_out: self.tokens_out,
            tokens_cached: self.tokens_cached,
            cost_micros: self.cost_micros,
            response_bytes: self.response_bytes,
            duration_sum_us: self.duration_sum_us,
            ttfb_sum_us: self.ttfb_sum_us,
            ttfb_count: self.ttfb_count,
            unpriced: self.unpriced,
        }
    }
}

/// A count of one exact duration (kind 0: total, 1: time to first byte), from raw rows.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct ValueCount {
    #[diesel(sql_type = Integer)]
    pub(crate) kind: i32,
    /// The time slot, when the values are counted per slot.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) slot: Option<i64>,
    #[diesel(sql_type = BigInt)]
    pub(crate) v: i64,
    #[diesel(sql_type = BigInt)]
    pub(crate) n: i64,
}

/// Two encoded histograms from a rollup row.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct HistPair {
    /// The time slot, when the histograms are read per slot.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) slot: Option<i64>,
    #[diesel(sql_type = Text)]
    pub(crate) latency_hist: String,
    #[diesel(sql_type = Text)]
    pub(crate) ttfb_hist: String,
}

/// One user's sums, and how many users the whole ranking has.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct UserSums {
    #[diesel(sql_type = Text)]
    pub(crate) k1: String,
    #[diesel(sql_type = BigInt)]
    pub(crate) groups: i64,
    #[diesel(sql_type = BigInt)]
    pub(crate) requests: i64,
    #[diesel(sql_type = BigInt)]
    pub(crate) errors: i64,
    #[diesel(sql_type = BigInt)]
    pub(crate) tokens_in: i64,
    #[diesel(sql_type = BigInt)]
    pub(crate) tokens_out: i64,
    #[diesel(sql_type = BigInt)]
    pub(crate) tokens_cached: i64,
    #[diesel(sql_type = BigInt)]
    pub(crate) cost_micros: i64,
}

impl UserSums {
    /// The user's sums (those a per-user rollup keeps; the others zero).
    pub(crate) fn totals(&self) -> crate::query::Totals {
        crate::query::Totals {
            requests: self.requests,
            errors: self.errors,
            tokens_in: self.tokens_in,
            tokens_out: self.tokens_out,
            tokens_cached: self.tokens_cached,
            cost_micros: self.cost_micros,
            ..crate::query::Totals::default()
        }
    }
}

/// One number.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct Count {
    #[diesel(sql_type = BigInt)]
    pub(crate) n: i64,
}

/// A stored record's key.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct KeyRow {
    #[diesel(sql_type = BigInt)]
    pub(crate) started_at_us: i64,
    #[diesel(sql_type = Binary)]
    pub(crate) id: Vec<u8>,
}

/// One row of [`plan::user_usage`](super::read::plan::user_usage): sums per day, service and
/// model (kind 0), or a count per latency (kind 1) or time-to-first-byte (kind 2)
/// histogram bucket `k`, in `requests`.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct UserAgg {
    #[diesel(sql_type = BigInt)]
    pub(crate) kind: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) k: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) service: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) model: Option<String>,
    #[diesel(embed)]
    pub(crate) measures: Measures,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(table: &str, values: &[&str]) -> Sql {
        let mut sql = Sql::new(Dialect::Postgres);
        sql.push("INSERT INTO ").push(table).push(" VALUES ");
        sql.list(values, ", ", |sql, v| {
            sql.push("(").bind_text(v).push(", '{1,2}'::int8[])");
        });
        sql
    }

    #[test]
    fn chained_statements_keep_their_binds_in_order() {
        let sql = Sql::chain(vec![
            statement("a", &["x", "y"]),
            statement("b", &["z"]),
            statement("c", &["w", "v"]),
        ])
        .unwrap();
        assert_eq!(
            sql.text(),
            "WITH w0 AS (INSERT INTO a VALUES ($1, '{1,2}'::int8[]), ($2, '{1,2}'::int8[])), \
             w1 AS (INSERT INTO b VALUES ($3, '{1,2}'::int8[])) \
             INSERT INTO c VALUES ($4, '{1,2}'::int8[]), ($5, '{1,2}'::int8[])"
        );
        let binds: Vec<&str> = sql
            .binds
            .iter()
            .map(|b| match b {
                Bind::Text(t) => t.as_str(),
                Bind::Bytes(_) => "bytes",
            })
            .collect();
        assert_eq!(binds, ["x", "y", "z", "w", "v"]);
        let one = Sql::chain(vec![statement("a", &["x"])]).unwrap();
        assert_eq!(one.text(), statement("a", &["x"]).text());
        assert!(Sql::chain(Vec::new()).is_none());
    }
}
