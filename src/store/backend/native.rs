//! What the PostgreSQL and MySQL backends share: both are native async connections.

use diesel::backend::Backend;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

/// Runs (or reverts) `migrations` on a connection of its own. diesel's migration runner
/// is synchronous, so it runs on a blocking thread through `AsyncConnectionWrapper` (the
/// async harness would need a multi-threaded runtime).
pub(crate) async fn run_migrations<C>(
    url: &str,
    migrations: EmbeddedMigrations,
    revert: bool,
) -> Result<usize, String>
where
    C: diesel_async::AsyncConnection + 'static,
    C::Backend: Backend,
    AsyncConnectionWrapper<C>: diesel::Connection + MigrationHarness<C::Backend>,
{
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = <AsyncConnectionWrapper<C> as diesel::Connection>::establish(&url)
            .map_err(|e| e.to_string())?;
        let done = if revert {
            conn.revert_all_migrations(migrations)
        } else {
            conn.run_pending_migrations(migrations)
        };
        done.map(|v| v.len()).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}
