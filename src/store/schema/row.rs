//! Conversion between [`UsageRecord`] and the stored row.

use std::time::Duration;

use chrono::DateTime;
use diesel::prelude::*;
use uuid::Uuid;

use super::usage_records;
use crate::query::Totals;
use crate::record::{TokenUsage, UsageRecord};
use crate::store::error::StoreError;

/// The longest text each column keeps, in characters. Longer values are cut on a
/// character boundary (the record is kept), but for user ids: see [`stored_user`]. MySQL enforces these as `VARCHAR` sizes; the
/// other backends get the same cut so that every backend stores the same data.
pub(crate) mod limits {
    pub(crate) const METHOD: usize = 16;
    pub(crate) const ROUTE: usize = 512;
    pub(crate) const USER: usize = 256;
    pub(crate) const SERVICE: usize = 128;
    pub(crate) const MODEL: usize = 128;
    pub(crate) const PROVIDER: usize = 64;
    pub(crate) const COUNTRY: usize = 64;
}

#[derive(Debug, Clone, PartialEq, Insertable, Queryable, QueryableByName)]
#[diesel(table_name = usage_records)]
// Without this, SQLite turns a multi-row insert with `None`s into one INSERT per row.
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct Row {
    pub(crate) id: Vec<u8>,
    pub(crate) started_at_us: i64,
    pub(crate) method: Option<String>,
    pub(crate) route: Option<String>,
    pub(crate) status: Option<i16>,
    pub(crate) outcome: String,
    pub(crate) ttfb_us: Option<i64>,
    pub(crate) duration_us: i64,
    pub(crate) request_bytes: Option<i64>,
    pub(crate) response_bytes: i64,
    pub(crate) user_id: Option<String>,
    pub(crate) service: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) provider: Option<String>,
    pub(crate) client: String,
    pub(crate) country: Option<String>,
    pub(crate) tokens_in: i64,
    pub(crate) tokens_out: i64,
    pub(crate) tokens_cached_in: i64,
    pub(crate) tokens_cache_write_in: i64,
    pub(crate) cost_micros: Option<i64>,
    pub(crate) metadata: Option<String>,
    pub(crate) requested_model: Option<String>,
    /// 1 when the pricing knew no price for the model (see [`crate::pricing`]).
    pub(crate) unpriced: i16,
}

/// Cuts `text` to at most `max` characters.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_owned(),
        None => text.to_owned(),
    }
}

/// An empty name is stored as no name: the rollups cannot tell them apart.
fn cut_opt(text: Option<&str>, max: usize) -> Option<String> {
    text.filter(|t| !t.is_empty()).map(|t| cut(t, max))
}

/// Starts the stored form of a user id that is kept as a digest: a Unicode
/// noncharacter, which no name a person or an identity provider gives starts with.
const DIGEST_MARK: char = '\u{FFFF}';

/// How a user id is stored and looked up: as it is when it fits the column; otherwise
/// (and for the rare id that starts with [`DIGEST_MARK`]) the mark, its first 128
/// characters, `…` and the SHA-256 of the whole id in hex. An identity is never cut:
/// two ids are stored alike only if they are equal (short of a SHA-256 collision), so
/// an id equal to the first characters of a longer one reads nothing of it.
pub(crate) fn stored_user(user: &str) -> std::borrow::Cow<'_, str> {
    use sha2::Digest;
    let fits = user.chars().nth(limits::USER).is_none();
    if fits && !user.starts_with(DIGEST_MARK) {
        return std::borrow::Cow::Borrowed(user);
    }
    let digest = sha2::Sha256::digest(user.as_bytes());
    let mut stored: String = std::iter::once(DIGEST_MARK)
        .chain(user.chars().take(128))
        .chain(std::iter::once('…'))
        .collect();
    for byte in digest {
        stored.push_str(&format!("{byte:02x}"));
    }
    std::borrow::Cow::Owned(stored)
}

/// The largest amount a row keeps (see [`UsageRecord::MAX_AMOUNT`]): sums of rows then
/// need thousands of records at the limit to reach `i64::MAX`, where they saturate.
const MAX: i64 = UsageRecord::MAX_AMOUNT as i64;

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(MAX).min(MAX)
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(MAX).min(MAX)
}

impl From<&UsageRecord> for Row {
    fn from(r: &UsageRecord) -> Self {
        Row {
            id: r.id.as_bytes().to_vec(),
            started_at_us: r.started_at.timestamp_micros(),
            method: cut_opt(r.method.as_ref().map(http::Method::as_str), limits::METHOD),
            route: cut_opt(r.route.as_deref(), limits::ROUTE),
            status: r
                .status
                .map(|s| i16::try_from(s.as_u16()).unwrap_or(i16::MAX)),
            outcome: r.outcome.as_str().to_owned(),
            ttfb_us: r.ttfb.map(micros),
            duration_us: micros(r.duration),
            request_bytes: r.request_bytes.map(clamp),
            response_bytes: clamp(r.response_bytes),
            user_id: r
                .user
                .as_deref()
                .filter(|u| !u.is_empty())
                .map(|u| stored_user(u).into_owned()),
            service: cut_opt(r.service.as_deref(), limits::SERVICE),
            model: cut_opt(r.model.as_deref(), limits::MODEL),
            provider: cut_opt(r.provider.as_deref(), limits::PROVIDER),
            client: r.client.as_str().to_owned(),
            country: cut_opt(r.country.as_deref(), limits::COUNTRY),
            tokens_in: clamp(r.tokens.input),
            tokens_out: clamp(r.tokens.output),
            tokens_cached_in: clamp(r.tokens.cached_input),
            tokens_cache_write_in: clamp(r.tokens.cache_write_input),
            cost_micros: r.cost_micros.map(|c| c.clamp(-MAX, MAX)),
            metadata: (!r.metadata.is_null()).then(|| r.metadata.to_string()),
            requested_model: cut_opt(r.requested_model.as_deref(), limits::MODEL),
            unpriced: i16::from(r.metadata.get("unpriced") == Some(&serde_json::Value::Bool(true))),
        }
    }
}

/// One record's contribution to the sums.
pub(crate) fn row_totals(row: &Row) -> Totals {
    Totals {
        requests: 1,
        errors: i64::from(row.outcome != "success"),
        tokens_in: row.tokens_in,
        tokens_out: row.tokens_out,
        tokens_cached: row.tokens_cached_in,
        cost_micros: row.cost_micros.unwrap_or(0),
        response_bytes: row.response_bytes,
        duration_sum_us: row.duration_us,
        ttfb_sum_us: row.ttfb_us.unwrap_or(0),
        ttfb_count: i64::from(row.ttfb_us.is_some()),
        unpriced: i64::from(row.unpriced),
    }
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn duration(us: i64) -> Duration {
    Duration::from_micros(unsigned(us))
}

impl TryFrom<Row> for UsageRecord {
    type Error = StoreError;

    fn try_from(row: Row) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("{what} in stored row"));
        let id = Uuid::from_slice(&row.id).map_err(|_| corrupt("an id that is not 16 bytes"))?;
        let started_at = DateTime::from_timestamp_micros(row.started_at_us)
            .ok_or_else(|| corrupt("a start time out of range"))?;
        let mut record = UsageRecord::builder().started_at(started_at).id(id).build();
        record.method = row
            .method
            .map(|m| http::Method::from_bytes(m.as_bytes()))
            .transpose()
            .map_err(|_| corrupt("a bad method"))?;
        record.route = row.route;
        record.status = row
            .status
            .map(|s| {
                u16::try_from(s)
                    .ok()
                    .and_then(|s| http::StatusCode::from_u16(s).ok())
            })
            .map(|s| s.ok_or_else(|| corrupt("a bad status")))
            .transpose()?;
        record.outcome = row
            .outcome
            .parse()
            .map_err(|_| corrupt("an unknown outcome"))?;
        record.ttfb = row.ttfb_us.map(duration);
        record.duration = duration(row.duration_us);
        record.request_bytes = row.request_bytes.map(unsigned);
        record.response_bytes = unsigned(row.response_bytes);
        record.user = row.user_id;
        record.service = row.service;
        record.model = row.model;
        record.requested_model = row.requested_model;
        record.provider = row.provider;
        record.client = row
            .client
            .parse()
            .map_err(|_| corrupt("an unknown client platform"))?;
        record.country = row.country;
        record.tokens = TokenUsage::new(unsigned(row.tokens_in), unsigned(row.tokens_out))
            .with_cached_input(unsigned(row.tokens_cached_in))
            .with_cache_write_input(unsigned(row.tokens_cache_write_in));
        record.cost_micros = row.cost_micros;
        record.metadata = match row.metadata {
            Some(text) => {
                serde_json::from_str(&text).map_err(|_| corrupt("metadata that is not JSON"))?
            }
            None => serde_json::Value::Null,
        };
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientPlatform, Outcome};

    #[test]
    fn a_record_survives_the_round_trip() {
        let record = UsageRecord::builder()
            .user("u")
            .requested_model("m")
            .route("/v1/{model}")
            .method(http::Method::POST)
            .status(http::StatusCode::BAD_GATEWAY)
            .outcome(Outcome::Cancelled)
            .ttfb(Duration::from_micros(12))
            .duration(Duration::from_micros(3400))
            .request_bytes(5)
            .response_bytes(6)
            .client(ClientPlatform::Browser)
            .tokens(
                TokenUsage::new(1, 2)
                    .with_cached_input(1)
                    .with_cache_write_input(1),
            )
            .cost_micros(-3)
            .metadata(serde_json::json!({"a": [1, "x"]}))
            .build();
        let back = UsageRecord::try_from(Row::from(&record)).unwrap();
        let mut expected = record;
        // Storage keeps microseconds.
        expected.started_at =
            DateTime::from_timestamp_micros(expected.started_at.timestamp_micros()).unwrap();
        assert_eq!(back, expected);
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let record = UsageRecord::builder().service("é".repeat(1000)).build();
        let row = Row::from(&record);
        assert_eq!(
            row.service.as_deref().map(|u| u.chars().count()),
            Some(limits::SERVICE)
        );
    }

    #[test]
    fn a_long_user_id_is_stored_as_a_digest_never_cut() {
        let long = "é".repeat(1000);
        let stored = stored_user(&long);
        assert!(stored.starts_with(DIGEST_MARK) && stored.chars().count() <= limits::USER);
        assert_ne!(stored, stored_user(&"é".repeat(999)));
        assert_eq!(stored, stored_user(&long));
        let fits = "é".repeat(limits::USER);
        assert_eq!(stored_user(&fits), fits.as_str());
        // An id that looks like a stored digest is itself stored as one.
        assert_ne!(stored_user(&stored), stored);
        let row = Row::from(&UsageRecord::builder().user(long.as_str()).build());
        assert_eq!(row.user_id.as_deref(), Some(&*stored));
    }

    #[test]
    fn huge_numbers_are_clamped_not_wrapped() {
        let record = UsageRecord::builder()
            .tokens(TokenUsage::new(u64::MAX, 1))
            .duration(Duration::MAX)
            .build();
        let row = Row::from(&record);
        assert_eq!((row.tokens_in, row.duration_us), (MAX, MAX));
    }

    #[test]
    fn a_corrupt_row_is_an_error() {
        let mut row = Row::from(&UsageRecord::builder().build());
        row.outcome = "exploded".into();
        assert!(matches!(
            UsageRecord::try_from(row.clone()),
            Err(StoreError::Corrupt(_))
        ));
        row.outcome = "success".into();
        row.id.pop();
        assert!(UsageRecord::try_from(row).is_err());
    }
}
