//! Snapshots of the SQL the store generates for its main statements, per dialect, in
//! the `.sql` files beside this one: a change to a statement shows in review as a
//! change to its file. `UPDATE_SNAPSHOTS=1 cargo test --all-features snapshots` writes
//! them anew; otherwise each must equal what the builders make now.

use std::path::PathBuf;

use chrono::DateTime;

use super::read::{export, plan};
use super::schema::slots::DAY_US;
use super::sql::{Bind, Dialect, Sql};
use super::write::steps::{self, Step};
use crate::query::{Dimension, Filter, RankBy, TimeRange};

const DIALECTS: [(Dialect, &str); 3] = [
    (Dialect::Sqlite, "sqlite"),
    (Dialect::Postgres, "postgres"),
    (Dialect::Mysql, "mysql"),
];

/// A range from 05:07 on one day to 03:00 nine days later: raw edges, 15-minute
/// slots, whole days and, for users, whole 7-day blocks.
fn range() -> (i64, i64) {
    let from = 20_000 * DAY_US + 18_420_000_000;
    (from, 20_009 * DAY_US + 10_800_000_000)
}

fn filter() -> Filter {
    let (from, to) = range();
    let at = |us| DateTime::from_timestamp_micros(us).unwrap();
    Filter::new(TimeRange::between(at(from), at(to))).service("chat")
}

/// The statement's text and its binds, as a snapshot file holds them.
fn render(sql: &Sql) -> String {
    let mut out = sql.text();
    out.push('\n');
    for (i, bind) in sql.binds.iter().enumerate() {
        let value = match bind {
            Bind::Text(text) => format!("{text:?}"),
            Bind::Bytes(bytes) => format!("{} bytes", bytes.len()),
        };
        out.push_str(&format!("-- bind {}: {value}\n", i + 1));
    }
    out
}

fn check(shape: &str, dialect: &str, rendered: &str) -> Result<(), String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/store/snapshots")
        .join(format!("{shape}.{dialect}.sql"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, rendered).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(());
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    if stored == rendered {
        Ok(())
    } else {
        Err(format!(
            "{shape}.{dialect}.sql differs from what is generated now \
             (UPDATE_SNAPSHOTS=1 writes it anew):\n{rendered}"
        ))
    }
}

/// Each shape's statements for one dialect.
fn shapes(dialect: Dialect) -> Vec<(&'static str, String)> {
    let (from, to) = range();
    let f = filter();
    let mut out = Vec::new();
    let mut aggregate = |name, group: plan::Group, totals: bool| {
        let mut sql = Sql::new(dialect);
        let parts = plan::parts(from, to, true, true, totals);
        plan::aggregate(&mut sql, &f, group, &parts);
        out.push((name, render(&sql)));
    };
    let none = plan::Group {
        key: None,
        slot_us: None,
    };
    aggregate("metrics", none, false);
    let by_model = plan::Group {
        key: Some(Dimension::Model),
        slot_us: None,
    };
    aggregate("breakdown_by_model", by_model, false);
    let quarters = plan::Group {
        key: None,
        slot_us: Some(900_000_000),
    };
    aggregate("series_by_quarter", quarters, false);

    let mut sql = Sql::new(dialect);
    let all = Filter::new(f.range);
    plan::user_sums(
        &mut sql,
        &all,
        &plan::user_parts(from, to),
        RankBy::Tokens,
        10,
    );
    out.push(("top_users_by_tokens", render(&sql)));

    let mut sql = Sql::new(dialect);
    let alice = f.clone().user("alice");
    let days: Vec<i64> = (20_000..20_010).map(|d| d * DAY_US).collect();
    let detail = [(20_002 * DAY_US, 20_009 * DAY_US)];
    let raw = [(from, 20_002 * DAY_US), (20_009 * DAY_US, to)];
    plan::user_usage(
        &mut sql,
        &alice,
        &raw,
        &detail,
        &days,
        &[i64::MIN, 1_000, 50_000],
    );
    out.push(("user_usage", render(&sql)));

    out.push((
        "export_page",
        render(&export::page(dialect, &f, from, to, None)),
    ));

    let rows: Vec<super::schema::row::Row> = [("alice", 0), ("bob", 8 * DAY_US)]
        .iter()
        .map(|&(user, at)| {
            let record = crate::UsageRecord::builder()
                .started_at(DateTime::from_timestamp_micros(from + at).unwrap())
                .user(user)
                .service("chat")
                .model("gpt-4o")
                .build();
            let mut row = super::schema::row::Row::from(&record);
            // Fixed, so the snapshot does not change with each run.
            row.id = vec![7; 16];
            row
        })
        .collect();
    let mut write = String::new();
    for step in steps::steps(dialect, &rows) {
        let sql = match step {
            Step::Execute(sql) | Step::Blocks(sql) | Step::Select(_, sql, _) => sql,
        };
        write.push_str(&render(&sql));
        write.push('\n');
    }
    out.push(("batch_rollups", write));
    out
}

#[test]
fn generated_sql_matches_its_snapshots() {
    let mut failures = Vec::new();
    for (dialect, name) in DIALECTS {
        for (shape, rendered) in shapes(dialect) {
            if let Err(e) = check(shape, name, &rendered) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
