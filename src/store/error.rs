use super::backend::url::mask;

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
