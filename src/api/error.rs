//! The API's refusals, each answered with its status and a JSON [`ErrorBody`].

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use super::auth::AuthError;
use crate::query::QueryError;
use crate::store::StoreError;

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct ErrorBody {
    /// A stable code: `bad_parameter`, `bad_body`, `unauthorized`, `forbidden`,
    /// `not_found`, `rate_limited`, `internal`.
    pub error: String,
    /// The query parameter at fault, for `bad_parameter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// What was wrong, for a person to read.
    pub message: String,
}

/// Why a request was refused, recorded in the audit trail as the entry's reason.
#[derive(Debug, Clone)]
pub(crate) struct Refusal(pub(crate) String);

/// A request the API refuses.
#[derive(Debug)]
pub(crate) enum ApiError {
    BadParameter {
        parameter: String,
        reason: String,
    },
    /// A request body that is not what the endpoint takes.
    BadBody(String),
    Unauthorized(AuthError),
    Forbidden(String),
    NotFound(String),
    RateLimited {
        retry_after: Duration,
    },
    Internal,
}

impl ApiError {
    pub(crate) fn bad(parameter: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::BadParameter {
            parameter: parameter.into(),
            reason: reason.into(),
        }
    }

    /// A store error: a refused query names the parameter behind it; anything else is
    /// logged and answered without detail, so no database message reaches a client.
    pub(crate) fn store(error: StoreError) -> Self {
        match error {
            StoreError::Invalid(query) => {
                let parameter = match &query {
                    QueryError::EmptyName { field } => field,
                    QueryError::TooManyBuckets { .. } => "granularity",
                    QueryError::LimitTooLarge { .. } | QueryError::ZeroLimit => "limit",
                    _ => "from",
                };
                ApiError::bad(parameter, query.to_string())
            }
            other => {
                tracing::error!(error = %other, "analytics query failed");
                ApiError::Internal
            }
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, Option<&str>, String) {
        match self {
            ApiError::BadParameter { parameter, reason } => (
                StatusCode::BAD_REQUEST,
                "bad_parameter",
                Some(parameter),
                reason.clone(),
            ),
            ApiError::Unauthorized(error) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                None,
                error.to_string(),
            ),
            ApiError::BadBody(reason) => {
                (StatusCode::BAD_REQUEST, "bad_body", None, reason.clone())
            }
            ApiError::Forbidden(reason) => {
                (StatusCode::FORBIDDEN, "forbidden", None, reason.clone())
            }
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, "not_found", None, what.clone()),
            ApiError::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                None,
                format!("too many requests; retry in {} s", retry_secs(*retry_after)),
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
                "the analytics could not be read; the error is in the server's log".to_owned(),
            ),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Forbidden(reason) => ApiError::Forbidden(reason),
            other => ApiError::Unauthorized(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, parameter, message) = self.parts();
        let reason = match parameter {
            Some(parameter) => format!("{parameter}: {message}"),
            None => message.clone(),
        };
        let body = ErrorBody {
            error: code.to_owned(),
            parameter: parameter.map(str::to_owned),
            message,
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthorized(error) => {
                // RFC 6750: no error code when no credentials were sent at all.
                let challenge = match error {
                    AuthError::Missing => "Bearer realm=\"analytics\"".to_owned(),
                    other => format!(
                        "Bearer realm=\"analytics\", error=\"invalid_token\", error_description=\"{}\"",
                        other.to_string().replace(['"', '\\'], "'")
                    ),
                };
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            ApiError::RateLimited { retry_after } => {
                headers.insert(header::RETRY_AFTER, retry_secs(*retry_after).into());
            }
            _ => {}
        }
        response.extensions_mut().insert(Refusal(reason));
        response
    }
}

/// Whole seconds to wait, rounded up and at least one.
fn retry_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_secs(Duration::ZERO), 1);
        assert_eq!(retry_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_secs(Duration::from_millis(2_001)), 3);
    }
}
