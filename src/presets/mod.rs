//! Usage layers configured for the routes an AI platform mounts first. Each preset is an
//! ordinary [`UsageLayer`]: its setters still adjust it (`.user(...)`, `.country(...)`).
//!
//! | preset | service | also records |
//! |---|---|---|
//! | [`credits`] | `"credits"` | the credit amount (as the cost) and the operation |
//! | [`auth`] | `"auth"` | whether the login succeeded, and the subject |
//! | [`mcp`] (with [`McpLayer`] inside it) | `"mcp"` | the JSON-RPC method and tool; JSON-RPC errors as errors |

mod mcp;

pub use mcp::{
    Mcp, McpFuture, McpLayer, McpRequestBody, McpRequestRead, McpResponseBody, McpResponseRead,
};

use http::header::HeaderName;
use http::response::Parts;

use crate::extract::{self, Fixed, OnResponse};
use crate::layer::Extractors;
use crate::{Recorder, UsageLayer, UsageRecord};

/// A usage layer for an MCP server's streamable HTTP endpoint: service `"mcp"`.
///
/// Put [`McpLayer`] inside it to read the JSON-RPC method, the tool called and JSON-RPC
/// errors from the bodies.
///
/// ```
/// use axum::{routing::post, Router};
/// use tower::ServiceBuilder;
/// use tower_usage::{extract, presets, MemorySink, Recorder};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let recorder = Recorder::builder(MemorySink::new()).spawn();
/// let app: Router = Router::new()
///     .route("/mcp", post(|body: String| async move { body }))
///     .layer(
///         ServiceBuilder::new()
///             .layer(presets::mcp(recorder).user(extract::header("x-user-id")))
///             .layer(presets::McpLayer::new()),
///     );
/// # }
/// ```
pub fn mcp(recorder: Recorder) -> UsageLayer<Extractors<(), Fixed>> {
    UsageLayer::new(recorder).service(extract::fixed("mcp"))
}

/// A usage layer for credit routes (top-ups, spending, refunds).
///
/// The amount is the record's cost, in micro-units of credits, and the operation goes into
/// the metadata as `"operation"`. Handlers say them through the
/// [`UsageHandle`](crate::UsageHandle) (`set_cost_micros`, `insert_metadata("operation",
/// …)`), or in the response headers `x-credits-amount` and `x-credits-operation`
/// (names set with [`CreditsHook`]'s methods); the handle wins.
///
/// ```
/// use axum::{routing::post, Router};
/// use tower_usage::{extract, presets, MemorySink, Recorder};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let recorder = Recorder::builder(MemorySink::new()).spawn();
/// let app: Router = Router::new()
///     .route("/credits/spend", post(|| async {
///         ([("x-credits-amount", "2500000"), ("x-credits-operation", "spend")], "ok")
///     }))
///     .layer(presets::credits(recorder).user(extract::header("x-user-id")));
/// # }
/// ```
pub fn credits(recorder: Recorder) -> UsageLayer<Extractors<(), Fixed>, CreditsHook> {
    UsageLayer::new(recorder)
        .service(extract::fixed("credits"))
        .on_response(CreditsHook::default())
}

/// Reads the credit amount and operation from response headers; used by [`credits`].
#[derive(Debug, Clone)]
pub struct CreditsHook {
    amount: HeaderName,
    operation: HeaderName,
}

impl Default for CreditsHook {
    fn default() -> Self {
        CreditsHook {
            amount: HeaderName::from_static("x-credits-amount"),
            operation: HeaderName::from_static("x-credits-operation"),
        }
    }
}

impl CreditsHook {
    /// The header with the amount, in micro-units of credits (default `x-credits-amount`).
    pub fn amount_header(mut self, name: HeaderName) -> Self {
        self.amount = name;
        self
    }

    /// The header with the operation (default `x-credits-operation`).
    pub fn operation_header(mut self, name: HeaderName) -> Self {
        self.operation = name;
        self
    }
}

impl OnResponse for CreditsHook {
    fn on_response(&self, response: &Parts, record: &mut UsageRecord) {
        if let Some(amount) =
            extract::header_text(response, &self.amount).and_then(|v| v.parse::<i64>().ok())
        {
            record.cost_micros = Some(amount);
        }
        if let Some(operation) = extract::header_text(response, &self.operation) {
            let operation: String = operation.chars().take(64).collect();
            record.insert_metadata("operation", operation.into());
        }
    }
}

/// A usage layer for authentication routes (login, token refresh).
///
/// The metadata says `"login": "success"` for a 2xx answer and `"failure"` for a 4xx
/// one; the subject is the record's user, from the handle (`set_user`) or the response
/// header `x-auth-subject`. Failed logins are errors in the analytics, as every 4xx is.
///
/// ```
/// use axum::{routing::post, Router};
/// use tower_usage::{presets, MemorySink, Recorder};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let recorder = Recorder::builder(MemorySink::new()).spawn();
/// let app: Router = Router::new()
///     .route("/login", post(|| async { ([("x-auth-subject", "alice")], "welcome") }))
///     .layer(presets::auth(recorder));
/// # }
/// ```
pub fn auth(recorder: Recorder) -> UsageLayer<Extractors<(), Fixed>, AuthHook> {
    UsageLayer::new(recorder)
        .service(extract::fixed("auth"))
        .on_response(AuthHook::default())
}

/// Records the login result and the subject; used by [`auth`].
#[derive(Debug, Clone)]
pub struct AuthHook {
    subject: HeaderName,
}

impl Default for AuthHook {
    fn default() -> Self {
        AuthHook {
            subject: HeaderName::from_static("x-auth-subject"),
        }
    }
}

impl AuthHook {
    /// The response header with the subject (default `x-auth-subject`).
    pub fn subject_header(mut self, name: HeaderName) -> Self {
        self.subject = name;
        self
    }
}

impl OnResponse for AuthHook {
    fn on_response(&self, response: &Parts, record: &mut UsageRecord) {
        let result = if response.status.is_success() {
            "success"
        } else if response.status.is_client_error() {
            "failure"
        } else {
            return;
        };
        record.insert_metadata("login", result.into());
        if let Some(subject) = extract::header_text(response, &self.subject) {
            record.user = Some(subject.chars().take(256).collect());
        }
    }
}
