//! Database URLs: which backend they name, and how to show them without the password.

use crate::store::StoreError;

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

/// `url` with any password replaced by `***`, for errors and logs.
pub(crate) fn mask(url: &str) -> String {
    let mut masked = url.to_owned();
    if let Some(scheme_end) = url.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = url[authority_start..]
            .find(['/', '?', '#'])
            .map_or(url.len(), |i| authority_start + i);
        let authority = &url[authority_start..authority_end];
        if let Some(at) = authority.rfind('@') {
            if let Some(colon) = authority[..at].find(':') {
                masked = format!(
                    "{}***{}",
                    &url[..authority_start + colon + 1],
                    &url[authority_start + at..]
                );
            }
        }
    }
    // Query-string passwords (`?password=…`, as libpq and mysql accept).
    if let Some(query_start) = masked.find('?') {
        let (head, query) = masked.split_at(query_start + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        masked = format!("{head}{}", query.join("&"));
    }
    masked
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
    fn passwords_are_masked() {
        assert_eq!(
            mask("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(mask("mysql://u:p@ss@h/db"), "mysql://u:***@h/db");
        assert_eq!(
            mask("postgres://u@h/db?password=x&sslmode=off"),
            "postgres://u@h/db?password=***&sslmode=off"
        );
        assert_eq!(mask("postgres://h/db"), "postgres://h/db");
        assert_eq!(mask("sqlite://a:b@c"), "sqlite://a:***@c");
        let err = Target::parse("ftp://u:hunter2@h").unwrap_err().to_string();
        assert!(!err.contains("hunter2") && err.contains("***"), "{err}");
    }
}
