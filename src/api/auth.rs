//! Who is asking: the [`Authenticator`] trait, the [`Principal`] it yields and the
//! roles the API knows.

use async_trait::async_trait;

/// What a caller may see.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Every endpoint, every user's data.
    Admin,
    /// Only `/my-usage`, which answers for the caller's own subject.
    User,
}

impl Role {
    /// The role's name, as the audit trail keeps it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

/// An authenticated caller; `GET /me` answers with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct Principal {
    /// Who: the user id the usage records carry (a JWT's `sub` by default).
    pub subject: String,
    /// What they may see.
    pub role: Role,
}

impl Principal {
    /// A caller named `subject` with `role`.
    pub fn new(subject: impl Into<String>, role: Role) -> Self {
        Principal {
            subject: subject.into(),
            role,
        }
    }
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials came with the request (answered 401).
    #[error("no credentials: send `Authorization: Bearer <token>`")]
    Missing,
    /// Credentials came but are not valid (answered 401).
    #[error("invalid credentials: {0}")]
    Invalid(String),
    /// The credentials are valid but grant no access to the analytics (answered 403).
    #[error("{0}")]
    Forbidden(String),
}

/// Turns a request's head into a [`Principal`]: bearer JWTs with [`Jwt`](super::Jwt),
/// or any scheme of your own (API keys, sessions).
///
/// ```
/// use tower_usage::api::{AuthError, Authenticator, Principal, Role};
///
/// /// API keys from a fixed list.
/// struct ApiKeys;
///
/// #[async_trait::async_trait]
/// impl Authenticator for ApiKeys {
///     async fn authenticate(&self, head: &http::request::Parts) -> Result<Principal, AuthError> {
///         match head.headers.get("x-api-key").map(|v| v.as_bytes()) {
///             None => Err(AuthError::Missing),
///             Some(b"admin-key") => Ok(Principal::new("ops", Role::Admin)),
///             Some(_) => Err(AuthError::Invalid("unknown API key".into())),
///         }
///     }
/// }
/// ```
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Who sent the request, or why it cannot be told.
    async fn authenticate(&self, head: &http::request::Parts) -> Result<Principal, AuthError>;
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
///
/// ```
/// let request = http::Request::builder()
///     .header("authorization", "bearer abc.def.ghi")
///     .body(())
///     .unwrap();
/// let (head, ()) = request.into_parts();
/// assert_eq!(tower_usage::api::bearer_token(&head), Some("abc.def.ghi"));
/// ```
pub fn bearer_token(head: &http::request::Parts) -> Option<&str> {
    let value = head
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
