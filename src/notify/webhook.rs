//! A webhook endpoint: where alert events go, and the secret they are signed with; kept
//! in the store's `usage_webhooks` table.

use serde::{Deserialize, Serialize};

use crate::store::definitions::{self, valid_name};
use crate::store::{DieselStore, StoreError};

/// The webhooks' table, made by the store's migrations.
const TABLE: &str = "usage_webhooks";
/// The shortest secret accepted: 16 bytes, as the length of an HMAC key should be at
/// least half the hash's output.
const MIN_SECRET: usize = 16;

/// An endpoint that receives every alert event, signed with its `secret`.
///
/// ```
/// use tower_usage::notify::Webhook;
///
/// let hook = Webhook::new("ops", "https://ops.example.com/hooks/usage", "a secret of some length")
///     .check()?;
/// # Ok::<(), tower_usage::notify::WebhookError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Webhook {
    /// Unique; letters, digits, `.`, `_` and `-`, at most 128.
    pub name: String,
    /// An `http` or `https` URL.
    pub url: String,
    /// The HMAC key deliveries are signed with; at least 16 bytes.
    pub secret: String,
}

/// A webhook as the API shows it: without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct WebhookView {
    /// The name.
    pub name: String,
    /// The URL.
    pub url: String,
}

/// Why a webhook was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The name is empty, too long or has characters other than letters, digits, `.`,
    /// `_` and `-`.
    #[error("a webhook's name is 1 to 128 letters, digits, '.', '_' or '-'; got {0:?}")]
    BadName(String),
    /// Not an absolute `http` or `https` URL.
    #[error("the URL must be an absolute http or https URL; got {0:?}")]
    BadUrl(String),
    /// A secret shorter than 16 bytes.
    #[error("the secret must be at least {MIN_SECRET} bytes")]
    ShortSecret,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Webhook {
    /// An endpoint; see [`check`](Self::check).
    pub fn new(
        name: impl Into<String>,
        url: impl Into<String>,
        secret: impl Into<String>,
    ) -> Webhook {
        Webhook {
            name: name.into(),
            url: url.into(),
            secret: secret.into(),
        }
    }

    /// The webhook if it makes sense.
    pub fn check(self) -> Result<Webhook, WebhookError> {
        if !valid_name(&self.name) {
            return Err(WebhookError::BadName(self.name));
        }
        let uri: Option<http::Uri> = self.url.parse().ok();
        let scheme_ok = uri.as_ref().is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https"))
                && u.host().is_some_and(|h| !h.is_empty())
        });
        if !scheme_ok {
            return Err(WebhookError::BadUrl(self.url));
        }
        if self.secret.len() < MIN_SECRET {
            return Err(WebhookError::ShortSecret);
        }
        Ok(self)
    }

    /// What the API shows of it.
    pub fn view(&self) -> WebhookView {
        WebhookView {
            name: self.name.clone(),
            url: self.url.clone(),
        }
    }
}

impl DieselStore {
    /// Creates the webhook, or replaces the one of the same name, after
    /// [`Webhook::check`]. It receives the events written from then on.
    pub async fn put_webhook(&self, webhook: Webhook) -> Result<Webhook, WebhookError> {
        let webhook = webhook.check()?;
        definitions::put(self, TABLE, &webhook.name, &webhook).await?;
        Ok(webhook)
    }

    /// Every webhook, by name.
    pub async fn webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        definitions::load(self, TABLE, None, |w: Webhook| w.check().ok()).await
    }

    /// Deletes the webhook named `name`; its deliveries not yet made are not made.
    /// Returns whether there was one.
    pub async fn delete_webhook(&self, name: &str) -> Result<bool, StoreError> {
        definitions::delete(self, TABLE, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonsense_is_refused_with_what_is_wrong() {
        let ok = Webhook::new("ops", "http://127.0.0.1:9/x", "0123456789abcdef");
        assert!(ok.clone().check().is_ok());
        for url in ["", "ftp://h/x", "/relative", "http://", "not a url"] {
            let mut w = ok.clone();
            w.url = url.into();
            assert!(matches!(w.check(), Err(WebhookError::BadUrl(_))), "{url}");
        }
        let mut w = ok.clone();
        w.secret = "short".into();
        assert!(matches!(w.check(), Err(WebhookError::ShortSecret)));
        let mut w = ok;
        w.name = "a/b".into();
        assert!(matches!(w.check(), Err(WebhookError::BadName(_))));
    }
}
