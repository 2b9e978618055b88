//! Database URLs: which backend they name, and how to show them without the password.

use crate::store::error::{mask, StoreError};

/// The backend a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A SQLite file path, or `None` for a private in-memory database.
    Sqlite(Option<String>),
    Postgres(String),
    Mysql(String),
}

impl Target {
    /// Reads the scheme: `sqlite://path`, `sqlite::memory:`, `postgres://…`,
    /// `postgresql://…`, `mysql://…` or `mariadb://…`.
    pub(crate) fn parse(url: &str) -> Result<Self, StoreError> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            return match path {
                "" => Err(StoreError::UnsupportedUrl {
                    url: mask(url),
                    reason: "a SQLite URL needs a file path or :memory:",
                }),
                ":memory:" => Ok(Target::Sqlite(None)),
                path => Ok(Target::Sqlite(Some(path.to_owned()))),
            };
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Target::Postgres(url.to_owned()));
        }
        if url.starts_with("mysql://") {
            return Ok(Target::Mysql(url.to_owned()));
        }
        if let Some(rest) = url.strip_prefix("mariadb://") {
            return Ok(Target::Mysql(format!("mysql://{rest}")));
        }
        Err(StoreError::UnsupportedUrl {
            url: mask(url),
            reason: "expected sqlite://, postgres:// or mysql:// (or mariadb://)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(
            Target::parse("sqlite://usage.db").unwrap(),
            Target::Sqlite(Some("usage.db".into()))
        );
        assert_eq!(
            Target::parse("sqlite:///tmp/u.db").unwrap(),
            Target::Sqlite(Some("/tmp/u.db".into()))
        );
        assert_eq!(
            Target::parse("sqlite::memory:").unwrap(),
            Target::Sqlite(None)
        );
        assert_eq!(
            Target::parse("sqlite://:memory:").unwrap(),
            Target::Sqlite(None)
        );
        assert!(matches!(
            Target::parse("postgresql://h/db").unwrap(),
            Target::Postgres(_)
        ));
        assert_eq!(
            Target::parse("mariadb://root@h/db").unwrap(),
            Target::Mysql("mysql://root@h/db".into())
        );
        assert!(Target::parse("sqlite://").is_err());
        assert!(Target::parse("redis://h").is_err());
        assert!(Target::parse("").is_err());
    }

    #[test]
    fn passwords_are_masked_in_errors() {
        let err = Target::parse("ftp://u:hunter2@h").unwrap_err().to_string();
        assert!(!err.contains("hunter2") && err.contains("***"), "{err}");
    }
}
