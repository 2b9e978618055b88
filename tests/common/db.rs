//! Fresh databases for the store tests: SQLite always; PostgreSQL and MySQL/MariaDB when
//! `TOWER_USAGE_POSTGRES_URL` / `TOWER_USAGE_MYSQL_URL` name a server. A URL that is set
//! but unreachable fails the test: it never skips. When `CI` is set, a missing URL (or a
//! URL whose backend feature is off) fails the test too; otherwise the skip is written
//! to the terminal, past the test harness's capture, once per backend and test binary.

#[cfg(any(feature = "postgres", feature = "mysql"))]
use diesel_async::{AsyncConnection, RunQueryDsl};

/// One database made for one test; dropped by [`TestDb::cleanup`].
#[derive(Debug)]
pub struct TestDb {
    pub backend: &'static str,
    pub url: String,
    admin: Option<(String, String)>,
}

fn unique_name(test: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let test: String = test
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect();
    format!("tu_{test}_{}_{n}_{nanos}", std::process::id())
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let head = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{head}/{name}?{q}"),
        None => format!("{head}/{name}"),
    }
}

/// Says on the terminal, once per process and `what`, that tests were skipped: written to
/// stderr directly, which the test harness does not capture.
pub fn skipped(what: &'static str) {
    use std::io::Write;
    static SAID: std::sync::Mutex<Vec<&str>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if !said.contains(&what) {
        said.push(what);
        let _ = writeln!(std::io::stderr(), "note: {what}: tests on it skipped");
    }
}

/// The server URL in `var` for a backend whose feature is `compiled` in: `None` (said
/// aloud) when the tests cannot use it; a panic under CI, where every backend must run.
pub fn server_url(var: &'static str, compiled: bool) -> Option<String> {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    match (std::env::var(var), compiled) {
        (Ok(url), true) => Some(url),
        (Ok(_), false) if ci => panic!("{var} is set but its backend feature is off"),
        (Ok(_), false) => {
            skipped(match var {
                "TOWER_USAGE_POSTGRES_URL" => {
                    "TOWER_USAGE_POSTGRES_URL is set but the `postgres` feature is off"
                }
                _ => "TOWER_USAGE_MYSQL_URL is set but the `mysql` feature is off",
            });
            None
        }
        (Err(_), true) if ci => {
            panic!("CI is set but {var} is not: its backend's tests would not run")
        }
        (Err(_), true) => {
            skipped(match var {
                "TOWER_USAGE_POSTGRES_URL" => "TOWER_USAGE_POSTGRES_URL is not set",
                _ => "TOWER_USAGE_MYSQL_URL is not set",
            });
            None
        }
        (Err(_), false) => None,
    }
}

/// A database of each configured backend, made for `test`.
pub async fn fresh(test: &str) -> Vec<TestDb> {
    let mut dbs = Vec::new();
    let name = unique_name(test);
    let dir = std::env::temp_dir().join("tower-usage-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dbs.push(TestDb {
        backend: "sqlite",
        url: format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
        admin: None,
    });
    #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
    let postgres = server_url("TOWER_USAGE_POSTGRES_URL", cfg!(feature = "postgres"));
    #[cfg(feature = "postgres")]
    if let Some(admin) = postgres {
        let mut conn = diesel_async::AsyncPgConnection::establish(&admin)
            .await
            .unwrap_or_else(|e| panic!("TOWER_USAGE_POSTGRES_URL is set but unreachable: {e}"));
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        dbs.push(TestDb {
            backend: "postgres",
            url: with_database(&admin, &name),
            admin: Some((admin, name.clone())),
        });
    }
    #[cfg_attr(not(feature = "mysql"), allow(unused_variables))]
    let mysql = server_url("TOWER_USAGE_MYSQL_URL", cfg!(feature = "mysql"));
    #[cfg(feature = "mysql")]
    if let Some(admin) = mysql {
        let mut conn = diesel_async::AsyncMysqlConnection::establish(&admin)
            .await
            .unwrap_or_else(|e| panic!("TOWER_USAGE_MYSQL_URL is set but unreachable: {e}"));
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        dbs.push(TestDb {
            backend: "mysql",
            url: with_database(&admin, &name),
            admin: Some((admin, name.clone())),
        });
    }
    dbs
}

impl TestDb {
    /// Runs `sql` (one statement or several) on the database through a client of its
    /// own, as an operator would.
    pub async fn execute(&self, sql: &str) {
        match self.backend {
            #[cfg(feature = "sqlite")]
            "sqlite" => {
                use diesel::connection::SimpleConnection;
                use diesel::Connection;
                let path = self.url.trim_start_matches("sqlite://");
                let mut conn = diesel::SqliteConnection::establish(path).unwrap();
                conn.batch_execute(sql).unwrap();
            }
            #[cfg(feature = "postgres")]
            "postgres" => {
                use diesel_async::SimpleAsyncConnection;
                let mut conn = diesel_async::AsyncPgConnection::establish(&self.url)
                    .await
                    .unwrap();
                conn.batch_execute(sql).await.unwrap();
            }
            #[cfg(feature = "mysql")]
            "mysql" => {
                use diesel_async::SimpleAsyncConnection;
                let mut conn = diesel_async::AsyncMysqlConnection::establish(&self.url)
                    .await
                    .unwrap();
                conn.batch_execute(sql).await.unwrap();
            }
            other => panic!("no client for {other}"),
        }
    }

    /// Drops the database (best effort: a failed test leaves it for inspection).
    pub async fn cleanup(self) {
        match (self.backend, self.admin) {
            #[cfg(feature = "postgres")]
            ("postgres", Some((admin, name))) => {
                if let Ok(mut conn) = diesel_async::AsyncPgConnection::establish(&admin).await {
                    let _ =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                }
            }
            #[cfg(feature = "mysql")]
            ("mysql", Some((admin, name))) => {
                if let Ok(mut conn) = diesel_async::AsyncMysqlConnection::establish(&admin).await {
                    let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}"))
                        .execute(&mut conn)
                        .await;
                }
            }
            _ => {
                if let Some(path) = self.url.strip_prefix("sqlite://") {
                    for suffix in ["", "-wal", "-shm"] {
                        let _ = std::fs::remove_file(format!("{path}{suffix}"));
                    }
                }
            }
        }
    }
}
