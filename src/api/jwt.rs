//! Bearer JSON Web Tokens, checked with the jsonwebtoken crate.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::auth::{bearer_token, AuthError, Authenticator, Principal, Role};

/// The public-key algorithms [`Jwt`] accepts from a PEM file or a JWKS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
}

impl JwtAlgorithm {
    fn algorithm(self) -> Algorithm {
        match self {
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Es256 => Algorithm::ES256,
        }
    }
}

/// Why a [`Jwt`] could not be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtKeyError {
    /// An HS256 secret shorter than the 32 bytes RFC 7518 asks for.
    #[error("an HS256 secret needs at least 32 bytes; this one has {0}")]
    ShortSecret(usize),
    /// The key could not be read as the algorithm's kind of key.
    #[error("cannot read the key: {0}")]
    Key(#[source] jsonwebtoken::errors::Error),
    /// The JWKS is not a JSON Web Key Set, or has no key for the algorithm.
    #[error("cannot read the JWKS: {0}")]
    Jwks(String),
    /// A key file could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Where the verifying keys come from.
#[derive(Clone)]
enum Keys {
    One(Box<DecodingKey>),
    /// A JWKS's keys for the algorithm, by key id.
    Set(Vec<(Option<String>, DecodingKey)>),
}

/// An [`Authenticator`] for `Authorization: Bearer <JWT>`.
///
/// The algorithm is fixed here, never read from the token: a token signed otherwise,
/// `alg: none` included, is refused, and so is an HS256 token made with an RS256 public
/// key as its secret. `exp` is required and checked, `nbf` checked when present, with 30 s
/// of leeway for clock skew; the issuer and audience when configured. The subject comes
/// from the `sub` claim and the role from the `role` claim (a string or an array of
/// strings): `admin` or `user`. Claim names and role values are configurable.
///
/// ```
/// use tower_usage::api::Jwt;
///
/// let jwt = Jwt::hs256("a secret of at least thirty-two bytes!")?
///     .issuer("https://auth.example.com")
///     .audience("analytics")
///     .role_claim("https://example.com/role");
/// # Ok::<(), tower_usage::api::JwtKeyError>(())
/// ```
#[derive(Clone)]
pub struct Jwt {
    keys: Keys,
    validation: Validation,
    subject_claim: String,
    role_claim: String,
    admin_role: String,
    user_role: String,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("algorithms", &self.validation.algorithms)
            .field("issuer", &self.validation.iss)
            .field("audience", &self.validation.aud)
            .field("subject_claim", &self.subject_claim)
            .field("role_claim", &self.role_claim)
            .finish_non_exhaustive()
    }
}

impl Jwt {
    fn new(keys: Keys, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp"]);
        Jwt {
            keys,
            validation,
            subject_claim: "sub".to_owned(),
            role_claim: "role".to_owned(),
            admin_role: "admin".to_owned(),
            user_role: "user".to_owned(),
        }
    }

    /// Tokens signed with HMAC-SHA256 and `secret` (at least 32 bytes).
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, JwtKeyError> {
        let secret = secret.as_ref();
        if secret.len() < 32 {
            return Err(JwtKeyError::ShortSecret(secret.len()));
        }
        let key = DecodingKey::from_secret(secret);
        Ok(Jwt::new(Keys::One(Box::new(key)), Algorithm::HS256))
    }

    /// Tokens signed with the private key of this PEM public key (`-----BEGIN PUBLIC
    /// KEY-----`, or an RSA `BEGIN RSA PUBLIC KEY`).
    pub fn pem(pem: &[u8], algorithm: JwtAlgorithm) -> Result<Self, JwtKeyError> {
        let key = match algorithm {
            JwtAlgorithm::Rs256 => DecodingKey::from_rsa_pem(pem),
            JwtAlgorithm::Es256 => DecodingKey::from_ec_pem(pem),
        }
        .map_err(JwtKeyError::Key)?;
        Ok(Jwt::new(Keys::One(Box::new(key)), algorithm.algorithm()))
    }

    /// [`pem`](Self::pem), read from a file.
    pub fn pem_file(path: impl AsRef<Path>, algorithm: JwtAlgorithm) -> Result<Self, JwtKeyError> {
        Jwt::pem(&read(path.as_ref())?, algorithm)
    }

    /// Tokens signed by any key of this JSON Web Key Set that is for `algorithm`, chosen
    /// by the token's `kid` (a token without one needs a set with one such key).
    pub fn jwks(json: &str, algorithm: JwtAlgorithm) -> Result<Self, JwtKeyError> {
        let set: JwkSet =
            serde_json::from_str(json).map_err(|e| JwtKeyError::Jwks(e.to_string()))?;
        let alg = algorithm.algorithm();
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let declared = jwk.common.key_algorithm.map(|a| format!("{a:?}"));
            if declared.is_some_and(|d| d != format!("{alg:?}")) {
                continue;
            }
            // Keys of another family (an RSA key in an ES256 set) are skipped too.
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                if matches_family(jwk, algorithm) {
                    keys.push((jwk.common.key_id.clone(), key));
                }
            }
        }
        if keys.is_empty() {
            return Err(JwtKeyError::Jwks(format!("no key for {alg:?}")));
        }
        Ok(Jwt::new(Keys::Set(keys), alg))
    }

    /// [`jwks`](Self::jwks), read from a file.
    pub fn jwks_file(path: impl AsRef<Path>, algorithm: JwtAlgorithm) -> Result<Self, JwtKeyError> {
        let bytes = read(path.as_ref())?;
        let json = String::from_utf8(bytes)
            .map_err(|_| JwtKeyError::Jwks("the file is not UTF-8".into()))?;
        Jwt::jwks(&json, algorithm)
    }

    /// Requires the `iss` claim to be `issuer`.
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self.require("iss");
        self
    }

    /// Requires the `aud` claim to be (or to contain) `audience`.
    pub fn audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.validate_aud = true;
        self.require("aud");
        self
    }

    /// How far `exp` and `nbf` may be off, for clock skew (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.validation.leeway = leeway.as_secs();
        self
    }

    /// The claim that names the subject (default `sub`).
    pub fn subject_claim(mut self, claim: impl Into<String>) -> Self {
        self.subject_claim = claim.into();
        self
    }

    /// The claim that holds the role (default `role`).
    pub fn role_claim(mut self, claim: impl Into<String>) -> Self {
        self.role_claim = claim.into();
        self
    }

    /// The role claim's values for admins and users (default `admin` and `user`).
    pub fn role_values(mut self, admin: impl Into<String>, user: impl Into<String>) -> Self {
        self.admin_role = admin.into();
        self.user_role = user.into();
        self
    }

    fn require(&mut self, claim: &str) {
        self.validation
            .required_spec_claims
            .insert(claim.to_owned());
    }

    /// The token's claims, once its signature and times are checked.
    fn claims(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        let key = match &self.keys {
            Keys::One(key) => &**key,
            Keys::Set(keys) => {
                let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
                let found = match header.kid.as_deref() {
                    Some(kid) => keys.iter().find(|(id, _)| id.as_deref() == Some(kid)),
                    None if keys.len() == 1 => keys.first(),
                    None => None,
                };
                &found
                    .ok_or_else(|| AuthError::Invalid("no known key signed this token".into()))?
                    .1
            }
        };
        jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(invalid)
    }

    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, AuthError> {
        let subject = claims
            .get(&self.subject_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                AuthError::Invalid(format!("the token has no `{}` claim", self.subject_claim))
            })?;
        let roles: Vec<&str> = match claims.get(&self.role_claim) {
            Some(Value::String(role)) => vec![role.as_str()],
            Some(Value::Array(roles)) => roles.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let role = if roles.contains(&self.admin_role.as_str()) {
            Role::Admin
        } else if roles.contains(&self.user_role.as_str()) {
            Role::User
        } else {
            return Err(AuthError::Forbidden(format!(
                "the token's `{}` claim grants no analytics role",
                self.role_claim
            )));
        };
        Ok(Principal::new(subject, role))
    }
}

#[async_trait]
impl Authenticator for Jwt {
    async fn authenticate(&self, head: &http::request::Parts) -> Result<Principal, AuthError> {
        let token = bearer_token(head).ok_or(AuthError::Missing)?;
        let claims = self.claims(token)?;
        self.principal(&claims)
    }
}

fn matches_family(jwk: &jsonwebtoken::jwk::Jwk, algorithm: JwtAlgorithm) -> bool {
    use jsonwebtoken::jwk::AlgorithmParameters;
    matches!(
        (&jwk.algorithm, algorithm),
        (AlgorithmParameters::RSA(_), JwtAlgorithm::Rs256)
            | (AlgorithmParameters::EllipticCurve(_), JwtAlgorithm::Es256)
    )
}

fn read(path: &Path) -> Result<Vec<u8>, JwtKeyError> {
    std::fs::read(path).map_err(|source| JwtKeyError::File {
        path: path.display().to_string(),
        source,
    })
}

/// A token jsonwebtoken refused, said in words a client can act on (and nothing more).
fn invalid(error: jsonwebtoken::errors::Error) -> AuthError {
    let reason = match error.kind() {
        ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".to_owned(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".to_owned(),
        ErrorKind::InvalidAudience => "the token is for another audience".to_owned(),
        ErrorKind::InvalidIssuer => "the token is from another issuer".to_owned(),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "the token's algorithm is not the one this API accepts".to_owned()
        }
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
        _ => "the token is malformed".to_owned(),
    };
    AuthError::Invalid(reason)
}
