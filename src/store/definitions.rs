//! Named definitions kept as JSON in a table of three columns (`name`, `definition`,
//! `updated_at_us`): how budgets, alert rules and webhooks are stored. The caller checks
//! a definition before it writes it, and again when it reads it back.

use chrono::Utc;
use diesel::sql_types::Text;
use diesel::QueryableByName;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::sql::Sql;
use super::{DieselStore, StoreError};

/// The longest name a definition may have (it is a path segment of the API).
pub(crate) const MAX_NAME_LEN: usize = 128;

/// Whether `name` may name a definition: 1 to [`MAX_NAME_LEN`] letters, digits, `.`,
/// `_` and `-`.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[derive(QueryableByName)]
struct Definition {
    #[diesel(sql_type = Text)]
    definition: String,
}

/// Writes `value` under `name` in `table`, replacing what was there.
pub(crate) async fn put<T: Serialize>(
    store: &DieselStore,
    table: &str,
    name: &str,
    value: &T,
) -> Result<(), StoreError> {
    let definition = serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("a definition that cannot be written: {e}")))?;
    let mut sql = Sql::new(store.dialect());
    sql.push("INSERT INTO ")
        .push(table)
        .push(" (name, definition, updated_at_us) VALUES (")
        .bind_text(name)
        .push(", ")
        .bind_text(&definition)
        .push(", ")
        .int(Utc::now().timestamp_micros())
        .push(")");
    sql.on_conflict(&["name"], &["definition", "updated_at_us"], table, false);
    store.execute(vec![sql]).await.map(drop)
}

/// Every definition in `table` by name, or the one named `name`; each read back through
/// `check`, and one that does not pass is a corrupt store, said with its text.
pub(crate) async fn load<T: DeserializeOwned>(
    store: &DieselStore,
    table: &str,
    name: Option<&str>,
    check: impl Fn(T) -> Option<T>,
) -> Result<Vec<T>, StoreError> {
    let mut sql = Sql::new(store.dialect());
    sql.push("SELECT definition FROM ").push(table);
    if let Some(name) = name {
        sql.push(" WHERE name = ").bind_text(name);
    }
    sql.push(" ORDER BY name");
    let rows: Vec<Definition> = store.load(sql).await?;
    rows.into_iter()
        .map(|row| {
            serde_json::from_str::<T>(&row.definition)
                .ok()
                .and_then(&check)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "an unreadable entry in {table}: {}",
                        row.definition
                    ))
                })
        })
        .collect()
}

/// Deletes the definition named `name` from `table`; whether there was one.
pub(crate) async fn delete(
    store: &DieselStore,
    table: &str,
    name: &str,
) -> Result<bool, StoreError> {
    let mut sql = Sql::new(store.dialect());
    sql.push("DELETE FROM ")
        .push(table)
        .push(" WHERE name = ")
        .bind_text(name);
    Ok(store.execute(vec![sql]).await? > 0)
}
