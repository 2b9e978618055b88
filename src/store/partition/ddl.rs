//! The statements that partition `usage_records` on PostgreSQL, and the reading of the
//! partitions' bounds as the server prints them.

use diesel::sql_types::Text;
use diesel::QueryableByName;

use crate::store::sql::{Dialect, Sql};

/// The partition that takes records no other partition's range holds.
pub(crate) const DEFAULT: &str = "usage_records_default";
/// The table the records were in before partitioning, kept as the partition of every
/// time before the first new one.
pub(crate) const LEGACY: &str = "usage_records_legacy";
/// The indexes of the records besides the key, as the migrations make them: a
/// partitioned table needs them on the parent, under the same names.
const INDEXES: [(&str, &str); 3] = [
    ("usage_records_user_time", "user_id, started_at_us"),
    ("usage_records_service_time", "service, started_at_us"),
    ("usage_records_model_time", "model, started_at_us"),
];
/// The lock that serialises partition upkeep between processes (any constant the crate
/// uses nowhere else).
const UPKEEP_LOCK: i64 = 0x7475_7061_7274;

fn sql(text: &str) -> Sql {
    let mut sql = Sql::new(Dialect::Postgres);
    sql.push(text);
    sql
}

/// Whether `usage_records` is partitioned, as a row `n` (1 or 0).
pub(crate) fn is_partitioned() -> Sql {
    sql("SELECT COUNT(*) AS n FROM pg_partitioned_table \
         WHERE partrelid = 'usage_records'::regclass")
}

/// Takes the upkeep lock for the rest of the transaction.
pub(crate) fn lock() -> Sql {
    let mut sql = sql("SELECT pg_advisory_xact_lock(");
    sql.int(UPKEEP_LOCK).push(")");
    sql
}

/// The partitions, with their bounds as the server prints them.
pub(crate) fn partitions() -> Sql {
    sql(
        "SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound \
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'usage_records'::regclass",
    )
}

/// A partition as listed by [`partitions`].
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct Listed {
    #[diesel(sql_type = Text)]
    pub(crate) name: String,
    #[diesel(sql_type = Text)]
    pub(crate) bound: String,
}

impl Listed {
    /// Its range `[from, to)` in microseconds (`MINVALUE` and `MAXVALUE` as the ends of
    /// `i64`); `None` for the default partition or a bound the crate does not read.
    pub(crate) fn range(&self) -> Option<(i64, i64)> {
        let value = |after: &str| {
            let start = self.bound.find(after)? + after.len();
            let end = self.bound[start..].find(')')? + start;
            let text = self.bound[start..end].trim().trim_matches('\'');
            match text {
                "MINVALUE" => Some(i64::MIN),
                "MAXVALUE" => Some(i64::MAX),
                n => n.parse().ok(),
            }
        };
        Some((value("FROM (")?, value("TO (")?))
    }
}

/// Turns the plain `usage_records` into a partitioned table with a default partition:
/// statements of one transaction. With a `cut`, the old table becomes the partition of
/// every time before it: its index names move to the new parent, whose indexes take
/// the old ones in as theirs when it is attached (no index is built again), and the
/// check constraint lets the attach skip a scan of its own. Without one (the table is
/// empty), the old table is dropped.
pub(crate) fn convert(cut: Option<i64>) -> Vec<Sql> {
    let mut statements = vec![
        sql("LOCK TABLE usage_records IN ACCESS EXCLUSIVE MODE"),
        sql(&format!("ALTER TABLE usage_records RENAME TO {LEGACY}")),
        sql(&format!(
            "ALTER TABLE {LEGACY} RENAME CONSTRAINT usage_records_pkey TO {LEGACY}_pkey"
        )),
    ];
    for (name, _) in INDEXES {
        let old = name.replacen("usage_records", LEGACY, 1);
        statements.push(sql(&format!(
            "ALTER INDEX IF EXISTS {name} RENAME TO {old}"
        )));
    }
    statements.push(sql(&format!(
        "CREATE TABLE usage_records (LIKE {LEGACY} INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
         INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE (started_at_us)"
    )));
    statements.push(sql(
        "ALTER TABLE usage_records ADD CONSTRAINT usage_records_pkey PRIMARY KEY (started_at_us, id)",
    ));
    for (name, columns) in INDEXES {
        statements.push(sql(&format!(
            "CREATE INDEX {name} ON usage_records ({columns})"
        )));
    }
    match cut {
        Some(cut) => {
            statements.push(sql(&format!(
                "ALTER TABLE {LEGACY} ADD CONSTRAINT {LEGACY}_range CHECK (started_at_us < {cut})"
            )));
            statements.push(sql(&format!(
                "ALTER TABLE usage_records ATTACH PARTITION {LEGACY} \
                 FOR VALUES FROM (MINVALUE) TO ({cut})"
            )));
        }
        None => statements.push(sql(&format!("DROP TABLE {LEGACY}"))),
    }
    statements.push(sql(&format!(
        "CREATE TABLE {DEFAULT} PARTITION OF usage_records DEFAULT"
    )));
    statements
}

/// The statements that make the partition `name` for `[from, to)`, of one transaction
/// holding the upkeep lock: the table made on its own, the default partition's rows of
/// its range moved in, then attached (which takes a brief lock on the default
/// partition only).
pub(crate) fn create(name: &str, from: i64, to: i64) -> Vec<Sql> {
    vec![
        sql(&format!(
            "CREATE TABLE {name} (LIKE usage_records INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
             INCLUDING STORAGE)"
        )),
        sql(&format!(
            "WITH moved AS (DELETE FROM {DEFAULT} WHERE started_at_us >= {from} \
             AND started_at_us < {to} RETURNING *) INSERT INTO {name} SELECT * FROM moved"
        )),
        sql(&format!(
            "ALTER TABLE usage_records ATTACH PARTITION {name} FOR VALUES FROM ({from}) TO ({to})"
        )),
    ]
}

/// Gives up a lock the transaction waits for after 2 s: a partition's drop waits for
/// every running read of the records, and holds back new ones while it waits.
pub(crate) fn lock_timeout() -> Sql {
    sql("SET LOCAL lock_timeout = '2s'")
}

/// Keeps writers out of partition `name` for the rest of the transaction (readers go
/// on), so that its count stays true until it is dropped.
pub(crate) fn lock_partition(name: &str) -> Sql {
    sql(&format!("LOCK TABLE {name} IN SHARE MODE"))
}

/// The number of rows of partition `name`, as a row `n`.
pub(crate) fn count(name: &str) -> Sql {
    sql(&format!("SELECT COUNT(*) AS n FROM {name}"))
}

/// Drops partition `name` and what it holds.
pub(crate) fn drop(name: &str) -> Sql {
    sql(&format!("DROP TABLE {name}"))
}

/// The latest start time stored and whether any record is, as rows `n`: none when the
/// table is empty.
pub(crate) fn latest() -> Sql {
    sql("SELECT started_at_us AS n FROM usage_records ORDER BY started_at_us DESC LIMIT 1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(bound: &str) -> Listed {
        Listed {
            name: "p".to_owned(),
            bound: bound.to_owned(),
        }
    }

    #[test]
    fn bounds_are_read_as_the_server_prints_them() {
        let day = listed("FOR VALUES FROM ('1796515200000000') TO ('1796601600000000')");
        assert_eq!(
            day.range(),
            Some((1_796_515_200_000_000, 1_796_601_600_000_000))
        );
        let plain = listed("FOR VALUES FROM (5) TO (9)");
        assert_eq!(plain.range(), Some((5, 9)));
        let legacy = listed("FOR VALUES FROM (MINVALUE) TO ('7')");
        assert_eq!(legacy.range(), Some((i64::MIN, 7)));
        assert_eq!(listed("DEFAULT").range(), None);
    }
}
