//! Hooks that read usage from the response head.

use http::{response::Parts, HeaderName};

use crate::record::{TokenUsage, UsageRecord};

/// Fills in the record from the response head, when the inner service has answered.
///
/// Runs once per response, before the body is sent. What the hook writes wins over the
/// request extractors' values, and values set through the
/// [`UsageHandle`](crate::UsageHandle) win over both. To keep the request path short,
/// the record is completed later: when the hook runs, the request-side text fields (user,
/// service, model, provider, country, route, client), the start time, the id and the
/// status and timings are still empty. Read the status from `response`. Implemented for
/// `()` (nothing), for pairs `(A, B)` (both, in order), for the built-ins of this module and
/// for every `Fn(&http::response::Parts, &mut UsageRecord)`.
///
/// ```
/// use tower_usage::{extract, UsageRecord};
///
/// // The provider an upstream reported in a header, then the handler's `TokenUsage`.
/// let hook = (
///     |res: &http::response::Parts, record: &mut UsageRecord| {
///         if let Some(p) = res.headers.get("x-provider").and_then(|v| v.to_str().ok()) {
///             record.provider = Some(p.to_owned());
///         }
///     },
///     extract::token_usage(),
/// );
/// # let _ = hook;
/// ```
pub trait OnResponse {
    /// Reads what it needs from `response` into `record`.
    fn on_response(&self, response: &Parts, record: &mut UsageRecord);

    /// Whether this hook never does anything, so the layer can skip handing it the
    /// record. Only `()` says so.
    #[doc(hidden)]
    fn is_noop(&self) -> bool {
        false
    }
}

impl OnResponse for () {
    #[inline]
    fn on_response(&self, _: &Parts, _: &mut UsageRecord) {}

    fn is_noop(&self) -> bool {
        true
    }
}

impl<F> OnResponse for F
where
    F: Fn(&Parts, &mut UsageRecord),
{
    fn on_response(&self, response: &Parts, record: &mut UsageRecord) {
        self(response, record);
    }
}

impl<A: OnResponse, B: OnResponse> OnResponse for (A, B) {
    fn on_response(&self, response: &Parts, record: &mut UsageRecord) {
        self.0.on_response(response, record);
        self.1.on_response(response, record);
    }
}

/// Reads a [`TokenUsage`] from the response extensions; made by [`token_usage`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenUsageExtension;

/// A hook that adds the [`TokenUsage`] a handler put into the response extensions.
///
/// ```
/// use axum::response::IntoResponse;
/// use tower_usage::TokenUsage;
///
/// async fn embed() -> impl IntoResponse {
///     // … call the model …
///     (axum::Extension(TokenUsage::new(512, 0)), "[0.1, 0.2]")
/// }
/// ```
pub fn token_usage() -> TokenUsageExtension {
    TokenUsageExtension
}

impl OnResponse for TokenUsageExtension {
    fn on_response(&self, response: &Parts, record: &mut UsageRecord) {
        if let Some(usage) = response.extensions.get::<TokenUsage>() {
            record.tokens += *usage;
        }
    }
}

/// Reads usage from response headers; made by [`usage_headers`].
///
/// A header that is missing or does not hold a whole number in range is skipped; the
/// others are still read. The headers are left in the response.
#[derive(Debug, Clone)]
pub struct UsageHeaders {
    input_tokens: HeaderName,
    output_tokens: HeaderName,
    cached_input_tokens: HeaderName,
    cost_micros: HeaderName,
    model: HeaderName,
    provider: HeaderName,
}

/// A hook that reads usage from the response headers `x-usage-input-tokens`,
/// `x-usage-output-tokens`, `x-usage-cached-input-tokens`, `x-usage-cost-micros`,
/// `x-usage-model` and `x-usage-provider` (each name can be changed).
///
/// ```
/// use tower_usage::extract;
///
/// let hook = extract::usage_headers().model(http::HeaderName::from_static("openai-model"));
/// # let _ = hook;
/// ```
pub fn usage_headers() -> UsageHeaders {
    UsageHeaders {
        input_tokens: HeaderName::from_static("x-usage-input-tokens"),
        output_tokens: HeaderName::from_static("x-usage-output-tokens"),
        cached_input_tokens: HeaderName::from_static("x-usage-cached-input-tokens"),
        cost_micros: HeaderName::from_static("x-usage-cost-micros"),
        model: HeaderName::from_static("x-usage-model"),
        provider: HeaderName::from_static("x-usage-provider"),
    }
}

macro_rules! header_setters {
    ($($(#[$doc:meta])* $field:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $field(mut self, name: HeaderName) -> Self {
                self.$field = name;
                self
            }
        )*
    };
}

impl UsageHeaders {
    header_setters! {
        /// The header with the input token count.
        input_tokens,
        /// The header with the output token count.
        output_tokens,
        /// The header with the cached input token count.
        cached_input_tokens,
        /// The header with the cost in micro-units.
        cost_micros,
        /// The header with the model name.
        model,
        /// The header with the provider name.
        provider,
    }
}

/// A response header's value as trimmed, non-empty text.
pub(crate) fn text<'a>(response: &'a Parts, name: &HeaderName) -> Option<&'a str> {
    let value = response.headers.get(name)?.to_str().ok()?.trim();
    (!value.is_empty()).then_some(value)
}

fn number<T: std::str::FromStr>(response: &Parts, name: &HeaderName) -> Option<T> {
    text(response, name)?.parse().ok()
}

impl OnResponse for UsageHeaders {
    fn on_response(&self, response: &Parts, record: &mut UsageRecord) {
        let tokens = TokenUsage {
            input: number(response, &self.input_tokens).unwrap_or(0),
            output: number(response, &self.output_tokens).unwrap_or(0),
            cached_input: number(response, &self.cached_input_tokens).unwrap_or(0),
            cache_write_input: 0,
        };
        record.tokens += tokens;
        if let Some(cost) = number::<i64>(response, &self.cost_micros) {
            record.cost_micros = Some(record.cost_micros.unwrap_or(0).saturating_add(cost));
        }
        if let Some(model) = text(response, &self.model) {
            record.model = Some(model.to_owned());
        }
        if let Some(provider) = text(response, &self.provider) {
            record.provider = Some(provider.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_headers_skip_bad_numbers_and_keep_the_rest() {
        let (parts, ()) = http::Response::builder()
            .header("x-usage-input-tokens", "12")
            .header("x-usage-output-tokens", "-3")
            .header("x-usage-cached-input-tokens", "99999999999999999999999")
            .header("x-usage-cost-micros", " 40 ")
            .header("x-usage-model", "gpt-4o-2024-08-06")
            .body(())
            .unwrap()
            .into_parts();
        let mut record = UsageRecord::builder().build();
        usage_headers().on_response(&parts, &mut record);
        assert_eq!(record.tokens, TokenUsage::new(12, 0));
        assert_eq!(record.cost_micros, Some(40));
        assert_eq!(record.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(record.provider, None);
    }

    #[test]
    fn token_usage_extension_and_pairs() {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.extensions.insert(TokenUsage::new(5, 6));
        let mut record = UsageRecord::builder().build();
        let hook = (token_usage(), |_: &Parts, r: &mut UsageRecord| {
            r.provider = Some("p".into())
        });
        hook.on_response(&parts, &mut record);
        assert_eq!(record.tokens, TokenUsage::new(5, 6));
        assert_eq!(record.provider.as_deref(), Some("p"));
    }
}
