//! The usage record: what one request (or one piece of non-HTTP usage) consumed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::client::ClientPlatform;
use crate::id;
use crate::unknown_name::UnknownName;

/// How a request ended.
///
/// The outcome is decided once, when the record is finished:
///
/// | outcome | when |
/// |---|---|
/// | [`Success`](Outcome::Success) | the body was sent to the end and the status is 1xx, 2xx or 3xx |
/// | [`ClientError`](Outcome::ClientError) | the body was sent to the end and the status is 4xx |
/// | [`ServerError`](Outcome::ServerError) | the body was sent to the end and the status is 5xx |
/// | [`ServiceError`](Outcome::ServiceError) | the inner service returned `Err` instead of a response |
/// | [`BodyError`](Outcome::BodyError) | the response body yielded an error while it was being sent |
/// | [`Cancelled`](Outcome::Cancelled) | the client went away: the body or the response future was dropped early |
/// | [`Refused`](Outcome::Refused) | a layer refused the request before the service ran (a spent budget); set through [`UsageHandle::mark_failed`](crate::UsageHandle::mark_failed) |
///
/// Records that are not HTTP requests (see [`Recorder::record_usage`](crate::Recorder::record_usage))
/// are [`Success`](Outcome::Success).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Sent completely with a 1xx, 2xx or 3xx status.
    Success,
    /// Sent completely with a 4xx status.
    ClientError,
    /// Sent completely with a 5xx status.
    ServerError,
    /// The inner service returned an error instead of a response.
    ServiceError,
    /// The response body failed while it was being sent.
    BodyError,
    /// The client went away before the response was complete.
    Cancelled,
    /// Refused before the service ran, by a layer that said so (a
    /// [`BudgetLayer`](crate::alert::BudgetLayer) whose budget is spent). Such a
    /// record counts toward no budget.
    Refused,
}

impl Outcome {
    /// The outcome of a response that was sent completely with `status`.
    ///
    /// ```
    /// use tower_usage::Outcome;
    /// assert_eq!(Outcome::from_status(http::StatusCode::NOT_FOUND), Outcome::ClientError);
    /// ```
    pub fn from_status(status: http::StatusCode) -> Self {
        if status.is_server_error() {
            Outcome::ServerError
        } else if status.is_client_error() {
            Outcome::ClientError
        } else {
            Outcome::Success
        }
    }

    /// Whether this outcome counts as an error in the analytics (everything but
    /// [`Success`](Outcome::Success)).
    pub fn is_error(self) -> bool {
        self != Outcome::Success
    }

    /// The outcome's name as it is serialized (`"success"`, `"client_error"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
            Outcome::ServiceError => "service_error",
            Outcome::BodyError => "body_error",
            Outcome::Cancelled => "cancelled",
            Outcome::Refused => "refused",
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = UnknownName;

    /// Parses the serialized name (`"success"`, `"client_error"`, …).
    fn from_str(name: &str) -> Result<Self, UnknownName> {
        [
            Outcome::Success,
            Outcome::ClientError,
            Outcome::ServerError,
            Outcome::ServiceError,
            Outcome::BodyError,
            Outcome::Cancelled,
            Outcome::Refused,
        ]
        .into_iter()
        .find(|o| o.as_str() == name)
        .ok_or_else(|| UnknownName::new("outcome", name))
    }
}

/// Tokens an AI call consumed.
///
/// `cached_input` is the part of `input` that was served from a prompt cache: it is
/// **included** in `input` (the OpenAI convention), never added on top of it.
///
/// ```
/// use tower_usage::TokenUsage;
/// let mut usage = TokenUsage::new(1000, 100);
/// usage += TokenUsage::new(10, 1);
/// assert_eq!(usage.total(), 1111);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenUsage {
    /// Input (prompt) tokens, cached ones included.
    pub input: u64,
    /// Output (completion) tokens.
    pub output: u64,
    /// The part of `input` that was read from a prompt cache.
    pub cached_input: u64,
    /// The part of `input` that was written to a prompt cache (Anthropic's
    /// `cache_creation_input_tokens`), priced apart by some vendors.
    pub cache_write_input: u64,
}

impl TokenUsage {
    /// Input and output tokens, none of them cached.
    pub const fn new(input: u64, output: u64) -> Self {
        TokenUsage {
            input,
            output,
            cached_input: 0,
            cache_write_input: 0,
        }
    }

    /// Sets the cached part of the input.
    pub const fn with_cached_input(mut self, cached_input: u64) -> Self {
        self.cached_input = cached_input;
        self
    }

    /// Sets the part of the input written to a prompt cache.
    pub const fn with_cache_write_input(mut self, cache_write_input: u64) -> Self {
        self.cache_write_input = cache_write_input;
        self
    }

    /// Input plus output tokens.
    pub const fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }

    /// Whether no token was counted at all.
    pub const fn is_empty(&self) -> bool {
        self.input == 0 && self.output == 0 && self.cached_input == 0 && self.cache_write_input == 0
    }
}

impl std::ops::AddAssign for TokenUsage {
    fn add_assign(&mut self, rhs: Self) {
        self.input = self.input.saturating_add(rhs.input);
        self.output = self.output.saturating_add(rhs.output);
        self.cached_input = self.cached_input.saturating_add(rhs.cached_input);
        self.cache_write_input = self.cache_write_input.saturating_add(rhs.cache_write_input);
    }
}

/// One metered request, or one piece of usage recorded by hand.
///
/// Records are made by [`UsageLayer`](crate::UsageLayer) or with [`UsageRecord::builder`],
/// and finished exactly once. The fields are public to read and adjust (for example in an
/// [`OnResponse`](crate::extract::OnResponse) hook); new fields may be added, so records are
/// built with the builder.
///
/// Durations serialize as whole microseconds, times as RFC 3339 UTC.
///
/// ```
/// use tower_usage::{TokenUsage, UsageRecord};
///
/// let record = UsageRecord::builder()
///     .user("user-1")
///     .service("embeddings")
///     .model("text-embedding-3-small")
///     .tokens(TokenUsage::new(512, 0))
///     .cost_micros(10)
///     .build();
/// assert_eq!(record.user.as_deref(), Some("user-1"));
/// assert!(record.id.get_version_num() == 7);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UsageRecord {
    /// Unique and time-ordered (UUID v7); a store ignores an id it already holds.
    pub id: Uuid,
    /// When the request arrived (UTC).
    pub started_at: DateTime<Utc>,
    /// The request method; `None` for usage that is not an HTTP request.
    #[serde(with = "method_serde")]
    pub method: Option<http::Method>,
    /// The route: axum's matched path template when there is one, else the path without
    /// its query.
    pub route: Option<String>,
    /// The response status; `None` when no response head was produced.
    #[serde(with = "status_serde")]
    pub status: Option<http::StatusCode>,
    /// How the request ended.
    pub outcome: Outcome,
    /// Time from arrival to the response head.
    #[serde(with = "micros_opt")]
    pub ttfb: Option<Duration>,
    /// Time from arrival until the body's last frame (or the error or cancellation).
    #[serde(with = "micros")]
    pub duration: Duration,
    /// The request body's declared size (`Content-Length` or an exact size hint), when known.
    pub request_bytes: Option<u64>,
    /// Response body bytes actually handed to the server, counted frame by frame.
    pub response_bytes: u64,
    /// Who made the request.
    pub user: Option<String>,
    /// Which service or product area was used.
    pub service: Option<String>,
    /// Which model answered (the resolved model, when the response names it; else the
    /// requested one, if it was read).
    pub model: Option<String>,
    /// Which model the request asked for, when it was read from the request.
    #[serde(default)]
    pub requested_model: Option<String>,
    /// Which provider served the model.
    pub provider: Option<String>,
    /// What kind of client called, from its `User-Agent`.
    pub client: ClientPlatform,
    /// The caller's country, as the configured extractor gave it.
    pub country: Option<String>,
    /// Tokens consumed.
    pub tokens: TokenUsage,
    /// Cost in integer micro-units of the account currency or credits; `None` when unknown.
    pub cost_micros: Option<i64>,
    /// Free-form JSON; `Null` when there is none.
    pub metadata: serde_json::Value,
}

impl UsageRecord {
    /// The largest amount a stored record keeps: each token count, each byte count, each
    /// duration in microseconds, and the cost's absolute value in micro-units. It is
    /// 2^53 − 1, the largest integer a JSON number carries exactly (about 285 years of
    /// microseconds, or 9 billion units of currency in micro-units).
    ///
    /// A [`Recorder`](crate::Recorder) clamps larger amounts to it before a record
    /// reaches the sink, counting each record it clamped in
    /// [`RecorderStats::clamped`](crate::RecorderStats::clamped), and the
    /// [`DieselStore`](crate::store::DieselStore) clamps what it is handed directly. Sums
    /// over many records saturate at `i64::MAX` (and `-i64::MAX` for costs) instead of
    /// overflowing, in the stored rollups as in the answers.
    ///
    /// ```
    /// use tower_usage::{TokenUsage, UsageRecord};
    ///
    /// let mut record = UsageRecord::builder().tokens(TokenUsage::new(u64::MAX, 7)).build();
    /// assert!(record.clamp_amounts());
    /// assert_eq!(record.tokens.input, UsageRecord::MAX_AMOUNT);
    /// assert_eq!(record.tokens.output, 7);
    /// assert!(!record.clamp_amounts());
    /// ```
    pub const MAX_AMOUNT: u64 = (1 << 53) - 1;

    /// Clamps every amount to [`MAX_AMOUNT`](Self::MAX_AMOUNT); returns whether any was
    /// larger.
    pub fn clamp_amounts(&mut self) -> bool {
        const MAX: u64 = UsageRecord::MAX_AMOUNT;
        let max_duration = Duration::from_micros(MAX);
        let mut clamped = false;
        let mut count = |n: &mut u64| {
            if *n > MAX {
                *n = MAX;
                clamped = true;
            }
        };
        count(&mut self.tokens.input);
        count(&mut self.tokens.output);
        count(&mut self.tokens.cached_input);
        count(&mut self.tokens.cache_write_input);
        count(&mut self.response_bytes);
        if let Some(bytes) = &mut self.request_bytes {
            count(bytes);
        }
        let mut time = |d: &mut Duration| {
            if *d > max_duration {
                *d = max_duration;
                clamped = true;
            }
        };
        time(&mut self.duration);
        if let Some(ttfb) = &mut self.ttfb {
            time(ttfb);
        }
        if let Some(cost) = &mut self.cost_micros {
            let limit = MAX as i64;
            if cost.unsigned_abs() > MAX {
                *cost = (*cost).clamp(-limit, limit);
                clamped = true;
            }
        }
        clamped
    }

    /// A builder for a record that starts now and has a fresh id.
    pub fn builder() -> UsageRecordBuilder {
        UsageRecordBuilder {
            record: UsageRecord::starting_at(Utc::now()),
        }
    }

    /// An empty record with a fresh id for `started_at`, no values yet.
    pub(crate) fn starting_at(started_at: DateTime<Utc>) -> Self {
        Self::blank(id::new_v7(started_at), started_at)
    }

    /// The empty record the layer fills in while a request runs: its start time and id
    /// are made by the recorder's worker, off the request path.
    pub(crate) fn unstarted() -> Self {
        Self::blank(Uuid::nil(), DateTime::UNIX_EPOCH)
    }

    fn blank(id: Uuid, started_at: DateTime<Utc>) -> Self {
        UsageRecord {
            id,
            started_at,
            method: None,
            route: None,
            status: None,
            outcome: Outcome::Success,
            ttfb: None,
            duration: Duration::ZERO,
            request_bytes: None,
            response_bytes: 0,
            user: None,
            service: None,
            model: None,
            requested_model: None,
            provider: None,
            client: ClientPlatform::Unknown,
            country: None,
            tokens: TokenUsage::default(),
            cost_micros: None,
            metadata: serde_json::Value::Null,
        }
    }

    /// Adds `key: value` to the metadata, turning it into an object if it was `Null`.
    ///
    /// Metadata that was some other JSON value is kept under the key `"value"`.
    pub fn insert_metadata(&mut self, key: impl Into<String>, value: serde_json::Value) {
        if !self.metadata.is_object() {
            let previous = std::mem::take(&mut self.metadata);
            let mut map = serde_json::Map::new();
            if !previous.is_null() {
                map.insert("value".to_owned(), previous);
            }
            self.metadata = serde_json::Value::Object(map);
        }
        if let serde_json::Value::Object(map) = &mut self.metadata {
            map.insert(key.into(), value);
        }
    }
}

/// Builds a [`UsageRecord`]; see [`UsageRecord::builder`].
#[derive(Debug, Clone)]
pub struct UsageRecordBuilder {
    record: UsageRecord,
}

macro_rules! string_setters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: impl Into<String>) -> Self {
                self.record.$name = Some(value.into());
                self
            }
        )*
    };
}

impl UsageRecordBuilder {
    string_setters! {
        /// Sets the user.
        user,
        /// Sets the service.
        service,
        /// Sets the model.
        model,
        /// Sets the model the request asked for.
        requested_model,
        /// Sets the provider.
        provider,
        /// Sets the country.
        country,
        /// Sets the route.
        route,
    }

    /// Sets the start time; the id is made anew so that it stays ordered by this time.
    pub fn started_at(mut self, started_at: DateTime<Utc>) -> Self {
        self.record.started_at = started_at;
        self.record.id = id::new_v7(started_at);
        self
    }

    /// Sets the id (for records replayed from elsewhere that already have one).
    pub fn id(mut self, id: Uuid) -> Self {
        self.record.id = id;
        self
    }

    /// Sets the request method.
    pub fn method(mut self, method: http::Method) -> Self {
        self.record.method = Some(method);
        self
    }

    /// Sets the status and derives the outcome from it.
    pub fn status(mut self, status: http::StatusCode) -> Self {
        self.record.status = Some(status);
        self.record.outcome = Outcome::from_status(status);
        self
    }

    /// Sets the outcome.
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.record.outcome = outcome;
        self
    }

    /// Sets the time to first byte.
    pub fn ttfb(mut self, ttfb: Duration) -> Self {
        self.record.ttfb = Some(ttfb);
        self
    }

    /// Sets the total duration.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.record.duration = duration;
        self
    }

    /// Sets the request size.
    pub fn request_bytes(mut self, bytes: u64) -> Self {
        self.record.request_bytes = Some(bytes);
        self
    }

    /// Sets the response size.
    pub fn response_bytes(mut self, bytes: u64) -> Self {
        self.record.response_bytes = bytes;
        self
    }

    /// Sets the client platform.
    pub fn client(mut self, client: ClientPlatform) -> Self {
        self.record.client = client;
        self
    }

    /// Sets the tokens.
    pub fn tokens(mut self, tokens: TokenUsage) -> Self {
        self.record.tokens = tokens;
        self
    }

    /// Sets the cost in micro-units.
    pub fn cost_micros(mut self, cost: i64) -> Self {
        self.record.cost_micros = Some(cost);
        self
    }

    /// Sets the metadata.
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.record.metadata = metadata;
        self
    }

    /// The finished record.
    pub fn build(self) -> UsageRecord {
        self.record
    }
}

mod micros {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_micros)
    }
}

mod micros_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::micros::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_micros))
    }
}

mod method_serde {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        m: &Option<http::Method>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => s.serialize_str(m.as_str()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<http::Method>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|m| http::Method::from_bytes(m.as_bytes()).map_err(D::Error::custom))
            .transpose()
    }
}

mod status_serde {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        m: &Option<http::StatusCode>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => s.serialize_u16(m.as_u16()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<http::StatusCode>, D::Error> {
        Option::<u16>::deserialize(d)?
            .map(|m| http::StatusCode::from_u16(m).map_err(D::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_round_trip_keeps_every_field() {
        let record = UsageRecord::builder()
            .user("u")
            .service("s")
            .model("m")
            .provider("p")
            .country("DE")
            .route("/v1/chat")
            .method(http::Method::POST)
            .status(http::StatusCode::TOO_MANY_REQUESTS)
            .ttfb(Duration::from_micros(1500))
            .duration(Duration::from_micros(250_000))
            .request_bytes(10)
            .response_bytes(20)
            .client(ClientPlatform::Sdk)
            .tokens(TokenUsage::new(3, 4).with_cached_input(1))
            .cost_micros(-5)
            .metadata(serde_json::json!({"k": [1, 2]}))
            .build();
        assert_eq!(record.outcome, Outcome::ClientError);
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains("\"duration\":250000"), "{json}");
        let back: UsageRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn bad_method_or_status_in_json_is_an_error_not_a_panic() {
        let record = UsageRecord::builder().build();
        let mut value = serde_json::to_value(&record).unwrap();
        value["status"] = serde_json::json!(1000);
        assert!(serde_json::from_value::<UsageRecord>(value.clone()).is_err());
        value["status"] = serde_json::Value::Null;
        value["method"] = serde_json::json!("BAD METHOD");
        assert!(serde_json::from_value::<UsageRecord>(value).is_err());
    }

    #[test]
    fn insert_metadata_keeps_a_previous_scalar() {
        let mut record = UsageRecord::builder()
            .metadata(serde_json::json!(7))
            .build();
        record.insert_metadata("a", serde_json::json!(true));
        assert_eq!(record.metadata, serde_json::json!({"value": 7, "a": true}));
        let mut empty = UsageRecord::builder().build();
        empty.insert_metadata("a", serde_json::json!(1));
        assert_eq!(empty.metadata, serde_json::json!({"a": 1}));
    }

    #[test]
    fn outcome_from_status() {
        assert_eq!(Outcome::from_status(http::StatusCode::OK), Outcome::Success);
        assert_eq!(
            Outcome::from_status(http::StatusCode::NOT_MODIFIED),
            Outcome::Success
        );
        assert_eq!(
            Outcome::from_status(http::StatusCode::BAD_GATEWAY),
            Outcome::ServerError
        );
        assert!(Outcome::Cancelled.is_error());
        assert_eq!(Outcome::ClientError.as_str(), "client_error");
        assert_eq!("body_error".parse::<Outcome>(), Ok(Outcome::BodyError));
        assert_eq!("refused".parse::<Outcome>(), Ok(Outcome::Refused));
        assert!(Outcome::Refused.is_error());
        assert!("nope".parse::<Outcome>().is_err());
    }
}
