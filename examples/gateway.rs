//! An OpenAI-compatible pass-through gateway that meters every call: each `/v1/...`
//! request is forwarded to `UPSTREAM_URL` and its answer passed back byte for byte,
//! streamed or not, while the usage layer records who called, the requested and the
//! resolved model, the tokens (read from the answer by the inspector) and the cost (with
//! the price table in `PRICES`, if set) into `DATABASE_URL` (SQLite `usage.db` by
//! default).
//!
//! ```sh
//! UPSTREAM_URL=https://api.openai.com cargo run --example gateway   # on 127.0.0.1:3002 (ADDR)
//! OPENAI_BASE_URL=http://127.0.0.1:3002/v1 python my_app.py          # any OpenAI client
//! ```
//!
//! The user is the `x-user-id` header, else an id of the caller's API key: `key:` and
//! the first 24 hex digits of an HMAC-SHA256 of the whole key under `KEY_ID_SECRET`.
//! The id is stable while the secret is, differs for any two keys (however much of them
//! they share), and cannot be turned back into the key. Keep the secret as you keep the
//! keys: anyone who has it can test whether a key they hold was used.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use hmac::{KeyInit, Mac};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::ServiceBuilder;
use tower_usage::extract::{self, Extract};
use tower_usage::inspect::{InspectLayer, RequestModelLayer};
use tower_usage::pricing::PriceTable;
use tower_usage::store::DieselStore;
use tower_usage::{Recorder, UsageLayer};

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

#[derive(Clone)]
struct Upstream {
    base: Uri,
    client: Client<Connector, Body>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3002".to_owned());
    let upstream: Uri = std::env::var("UPSTREAM_URL")
        .unwrap_or_else(|_| "https://api.openai.com".to_owned())
        .parse()
        .map_err(|e| format!("UPSTREAM_URL: {e}"))?;
    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://usage.db".to_owned());
    let store = DieselStore::connect(&database_url).await?;
    let mut recorder = Recorder::builder(store.clone()).flush_interval(Duration::from_millis(200));
    if let Ok(path) = std::env::var("PRICES") {
        recorder = recorder.pricing(PriceTable::load(&path)?);
    }
    let recorder = recorder.spawn();
    let key_ids = match std::env::var("KEY_ID_SECRET") {
        Ok(secret) if secret.len() >= 32 => KeyIds::new(secret.as_bytes()),
        _ => {
            eprintln!("!!! KEY_ID_SECRET (32 bytes or more) is not set: callers known only by");
            eprintln!("!!! their API key get ids that change when this process restarts.");
            KeyIds::new(&random_secret())
        }
    };

    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    eprintln!(
        "gateway on http://{addr}/v1 → {upstream}, recording into {}",
        store.backend_name()
    );
    axum::serve(listener, app(recorder.clone(), upstream, key_ids))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    recorder.shutdown().await;
    eprintln!("stopped; {} records in the database", store.count().await?);
    Ok(())
}

/// The gateway's routes under the usage layer, the request-model reader and the
/// response inspector.
fn app(recorder: Recorder, base: Uri, key_ids: KeyIds) -> Router {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build(connector);
    Router::new()
        .route("/v1/{*path}", any(forward))
        .with_state(Upstream { base, client })
        .layer(
            ServiceBuilder::new()
                .layer(
                    UsageLayer::new(recorder)
                        .user(
                            extract::header("x-user-id")
                                .or(move |request: &http::request::Parts| key_ids.of(request)),
                        )
                        .service(extract::fixed("gateway")),
                )
                .layer(RequestModelLayer::new())
                .layer(InspectLayer::new()),
        )
}

/// Names callers by their API key without keeping it: a keyed hash of the whole key.
#[derive(Clone)]
struct KeyIds {
    secret: Arc<[u8]>,
}

impl KeyIds {
    fn new(secret: &[u8]) -> Self {
        KeyIds {
            secret: secret.into(),
        }
    }

    /// `key:` and 96 bits of HMAC-SHA256(secret, key) in hex, for the bearer token.
    fn of(&self, request: &http::request::Parts) -> Option<String> {
        let value = request.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let key = value.strip_prefix("Bearer ")?.trim();
        if key.is_empty() {
            return None;
        }
        // HMAC takes a key of any length: this cannot fail.
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.secret).ok()?;
        mac.update(key.as_bytes());
        let digest = mac.finalize().into_bytes();
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        Some(format!("key:{hex}"))
    }
}

/// A secret for this process alone, from the standard library's random hasher seeds.
fn random_secret() -> Vec<u8> {
    use std::hash::{BuildHasher, Hasher};
    (0..4)
        .flat_map(|_| {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u8(0);
            hasher.finish().to_le_bytes()
        })
        .collect()
}

/// Sends the request on to the upstream and its answer back, both unchanged but for the
/// connection's own headers.
async fn forward(State(upstream): State<Upstream>, mut request: Request) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let base = upstream.base.to_string();
    let Ok(uri) = format!("{}{}", base.trim_end_matches('/'), path).parse::<Uri>() else {
        return (StatusCode::BAD_REQUEST, "bad path").into_response();
    };
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    for hop in [header::HOST, header::CONNECTION, header::TRANSFER_ENCODING] {
        headers.remove(hop);
    }
    if let Some(host) = upstream.base.authority() {
        if let Ok(value) = HeaderValue::from_str(host.as_str()) {
            headers.insert(header::HOST, value);
        }
    }
    match upstream.client.request(request).await {
        Ok(response) => response.map(Body::new),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("upstream: {e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    use tower_usage::{MemorySink, TokenUsage};

    const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14,"prompt_tokens_details":{"cached_tokens":0}}}"#;
    const STREAM: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\ndata: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":7,\"total_tokens\":27}}\n\ndata: [DONE]\n\n";

    /// An upstream that answers like the OpenAI API, streamed when asked.
    async fn stub() -> Uri {
        let app = Router::new().route(
            "/v1/chat/completions",
            post(|headers: http::HeaderMap, body: String| async move {
                assert_eq!(
                    headers.get("authorization").unwrap(),
                    "Bearer sk-test-0123456789abcdef"
                );
                if body.contains("\"stream\":true") {
                    ([("content-type", "text/event-stream")], STREAM)
                } else {
                    ([("content-type", "application/json")], COMPLETION)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}").parse().unwrap()
    }

    async fn call(app: &Router, body: &'static str, user: Option<&str>) -> String {
        let mut request = http::Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .header("authorization", "Bearer sk-test-0123456789abcdef");
        if let Some(user) = user {
            request = request.header("x-user-id", user);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn id(ids: &KeyIds, key: &str) -> Option<String> {
        let request = http::Request::get("/")
            .header("authorization", format!("Bearer {key}"))
            .body(())
            .unwrap();
        ids.of(&request.into_parts().0)
    }

    /// Keys that share their ends (every `sk-proj-…` key shares its first characters),
    /// and short keys, are different callers; one key is always the same caller, and
    /// another secret gives other ids.
    #[test]
    fn every_key_has_an_id_of_its_own() {
        let ids = KeyIds::new(b"a test secret");
        let keys = [
            "sk-proj-aaaa1111-x-cdef",
            "sk-proj-bbbb2222-y-cdef",
            "sk-proj-aaaa1111-z-cdef",
            "short",
            "shorter",
            "s",
        ];
        let all: std::collections::BTreeSet<_> = keys.iter().map(|k| id(&ids, k)).collect();
        assert_eq!(all.len(), keys.len());
        assert_eq!(id(&ids, keys[0]), id(&ids, keys[0]));
        assert_ne!(
            id(&ids, keys[0]),
            id(&KeyIds::new(b"another secret"), keys[0])
        );
        assert_eq!(id(&ids, ""), None);
    }

    #[tokio::test]
    async fn calls_pass_through_unchanged_and_are_recorded_with_their_usage() {
        let sink = MemorySink::new();
        let prices = PriceTable::new().with(
            "gpt-4o-mini*",
            tower_usage::pricing::Price::per_million(150_000, 600_000),
        );
        let recorder = Recorder::builder(sink.clone()).pricing(prices).spawn();
        let app = app(
            recorder.clone(),
            stub().await,
            KeyIds::new(b"a test secret"),
        );

        let plain = call(
            &app,
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
            Some("alice"),
        )
        .await;
        assert_eq!(plain, COMPLETION);
        let streamed = call(&app, r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#, None).await;
        assert_eq!(streamed, STREAM);

        recorder.shutdown().await;
        let records = sink.records();
        assert_eq!(records.len(), 2);
        let (a, b) = (&records[0], &records[1]);
        assert_eq!(a.user.as_deref(), Some("alice"));
        let id = b.user.as_deref().unwrap();
        assert!(
            id.starts_with("key:") && id.len() == 28 && !id.contains("sk-"),
            "the key is never stored, even in part: {id}"
        );
        for r in [a, b] {
            assert_eq!(r.requested_model.as_deref(), Some("gpt-4o-mini"));
            assert_eq!(r.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
            assert_eq!(r.service.as_deref(), Some("gateway"));
        }
        assert_eq!(a.tokens, TokenUsage::new(12, 2));
        assert_eq!(b.tokens, TokenUsage::new(20, 7));
        // 12 · 0.15 + 2 · 0.6 = 3 µ; 20 · 0.15 + 7 · 0.6 = 7.2 → 7 µ.
        assert_eq!(a.cost_micros, Some(3));
        assert_eq!(b.cost_micros, Some(7));
        assert_eq!(a.route.as_deref(), Some("/v1/{*path}"));
    }
}
