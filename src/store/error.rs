type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in the store. URLs in messages have their password masked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names no backend this crate knows.
    #[error("unsupported database URL {url}: {reason}")]
    UnsupportedUrl {
        /// The URL, password masked.
        url: String,
        /// What was expected.
        reason: &'static str,
    },
    /// The URL names a backend whose Cargo feature is not enabled.
    #[error("{url} needs the `{feature}` feature of tower-usage")]
    BackendNotEnabled {
        /// The URL, password masked.
        url: String,
        /// The feature to enable.
        feature: &'static str,
    },
    /// The database could not be reached or refused the connection.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL, password masked.
        url: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// Running or reverting the migrations failed.
    #[error("migrations failed on {url}: {source}")]
    Migration {
        /// The URL, password masked.
        url: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// A query failed.
    #[error("query failed on {url}: {source}")]
    Query {
        /// The URL, password masked.
        url: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// A stored row could not be read back as a record.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The query was refused before it ran: a bad filter or limit.
    #[error(transparent)]
    Invalid(#[from] crate::query::QueryError),
    /// Writing an export failed.
    #[error("writing the export failed: {0}")]
    Write(#[source] std::io::Error),
}

impl StoreError {
    pub(crate) fn connect(url: &str, source: impl Into<BoxError>) -> Self {
        StoreError::Connect {
            url: mask(url),
            source: source.into(),
        }
    }

    pub(crate) fn migration(url: &str, source: impl Into<BoxError>) -> Self {
        StoreError::Migration {
            url: mask(url),
            source: source.into(),
        }
    }

    pub(crate) fn query(url: &str, source: impl Into<BoxError>) -> Self {
        StoreError::Query {
            url: mask(url),
            source: source.into(),
        }
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
    }
}
