//! The analytics HTTP API, driven in-process: answers equal to the store's, the OpenAPI
//! document against the routes, authentication, isolation between users, hostile
//! parameters, rate limits, exports and the audit trail.
#![cfg(all(feature = "api", feature = "sqlite"))]

use std::time::Duration;

use axum::body::Body;
use axum::Router;
use chrono::{DateTime, TimeZone, Utc};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tower::ServiceExt;
use tower_usage::api::{self, ApiConfig, Jwt, JwtAlgorithm, RateLimit, Role};
use tower_usage::query::{AuditQuery, Dimension, Filter, Granularity, RankBy, TimeRange, Tz};
use tower_usage::store::DieselStore;
use tower_usage::{Recorder, TokenUsage, UsageRecord, UsageSink};

const SECRET: &str = "a test secret of at least thirty-two bytes";
const RANGE: &str = "from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z";

fn day() -> TimeRange {
    TimeRange::between(t(0), t(24 * 60))
}

fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(minutes)
}

fn now() -> i64 {
    Utc::now().timestamp()
}

/// A router over a store with a few records of alice's, bob's and nobody's.
struct Harness {
    app: Router,
    store: DieselStore,
    audit: Recorder,
}

impl Harness {
    async fn new(config: impl FnOnce(ApiConfig) -> ApiConfig) -> Harness {
        Harness::with(Jwt::hs256(SECRET).unwrap(), config).await
    }

    async fn with(jwt: Jwt, config: impl FnOnce(ApiConfig) -> ApiConfig) -> Harness {
        let store = DieselStore::connect("sqlite::memory:").await.unwrap();
        let record = |minute, user: Option<&str>, service: &str, model: &str, tokens| {
            let mut builder = UsageRecord::builder()
                .started_at(t(minute))
                .service(service)
                .model(model)
                .provider("openai")
                .status(http::StatusCode::OK)
                .tokens(TokenUsage::new(tokens, tokens / 10))
                .cost_micros(i64::try_from(tokens).unwrap() * 3);
            if let Some(user) = user {
                builder = builder.user(user);
            }
            builder.build()
        };
        let records = vec![
            record(10, Some("alice"), "chat", "gpt-4o", 1_000),
            record(70, Some("alice"), "chat", "gpt-4o-mini", 200),
            record(700, Some("alice"), "embeddings", "text-embedding-3", 50),
            record(30, Some("bob"), "images", "dall-e", 0),
            record(800, Some("bob"), "chat", "gpt-4o", 4_000),
            record(900, None, "chat", "gpt-4o", 10),
        ];
        store.write_batch(&records).await.unwrap();
        let audit = Recorder::builder(store.audit_sink()).spawn();
        let config = config(ApiConfig::new(jwt).audit(audit.clone()));
        let app = api::router(store.clone(), config);
        Harness { app, store, audit }
    }

    async fn get(&self, uri: &str, token: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
        self.get_with(uri, token, &[]).await
    }

    async fn get_with(
        &self,
        uri: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut request = Request::get(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (head, mut body) = response.into_parts();
        // An event stream does not end: its first event stands for it.
        let bytes = if head
            .headers
            .get("content-type")
            .is_some_and(|v| v == "text/event-stream")
        {
            let frame = body.frame().await.unwrap().unwrap();
            frame.into_data().unwrap().to_vec()
        } else {
            body.collect().await.unwrap().to_bytes().to_vec()
        };
        (head.status, head.headers, bytes)
    }

    /// Sends `method` with a body; the status and the body as JSON (`Null` when empty).
    async fn send(&self, method: &str, uri: &str, token: &str, body: &str) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn json(&self, uri: &str, token: &str) -> Value {
        let (status, _, body) = self.get(uri, Some(token)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{uri}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap()
    }
}

fn hs(claims: Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
        None,
    )
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: Value, kid: Option<&str>) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn admin() -> String {
    hs(json!({"sub": "ops", "role": "admin", "exp": now() + 600}))
}

fn user(name: &str) -> String {
    hs(json!({"sub": name, "role": "user", "exp": now() + 600}))
}

fn error_of(body: &[u8]) -> (String, Option<String>, String) {
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not a JSON error body: {}", String::from_utf8_lossy(body)));
    (
        v["error"].as_str().unwrap().to_owned(),
        v["parameter"].as_str().map(str::to_owned),
        v["message"].as_str().unwrap().to_owned(),
    )
}

fn key(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/keys")
            .join(name),
    )
    .unwrap()
}

#[tokio::test]
async fn admin_answers_are_the_stores_answers() {
    let h = Harness::new(|c| c).await;
    let token = admin();
    let filter = Filter::new(day());
    let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
    let store = &h.store;
    let cases: Vec<(String, Value)> = vec![
        (
            format!("/metrics?{RANGE}"),
            json!(store.metrics(&filter).await.unwrap()),
        ),
        (
            format!("/services?{RANGE}&limit=1"),
            json!(store.by_service(&filter, 1).await.unwrap()),
        ),
        (
            format!("/models?{RANGE}"),
            json!(store.by_model(&filter, 10).await.unwrap()),
        ),
        (
            format!("/providers?{RANGE}&service=chat"),
            json!(store
                .by_provider(&filter.clone().service("chat"), 10)
                .await
                .unwrap()),
        ),
        (
            format!("/timeseries?{RANGE}&granularity=hour&tz=Asia%2FKolkata&split=model&top=2"),
            json!(store
                .time_series_split(&filter, Granularity::Hour, kolkata, Dimension::Model, 2)
                .await
                .unwrap()),
        ),
        (
            format!("/latency?{RANGE}&granularity=hour&tz=Asia%2FKolkata&model=gpt-4o"),
            json!(store
                .latency_series(&filter.clone().model("gpt-4o"), Granularity::Hour, kolkata)
                .await
                .unwrap()),
        ),
        (
            format!("/users/top?{RANGE}&by=tokens&limit=5"),
            json!(store.top_users(&filter, RankBy::Tokens, 5).await.unwrap()),
        ),
        (
            format!("/dashboard?{RANGE}&tz=Asia%2FKolkata"),
            json!(store.dashboard(&filter, kolkata).await.unwrap()),
        ),
        (
            format!(
                "/metrics?{RANGE}&user=bob&outcome=success&status_class=success&platform=unknown"
            ),
            json!(store.metrics(&filter.clone().user("bob")).await.unwrap()),
        ),
        (
            format!("/my-usage?{RANGE}"),
            with_budgets(json!(store
                .user_usage("ops", &filter, Tz::UTC)
                .await
                .unwrap())),
        ),
    ];
    for (uri, expected) in cases {
        assert_eq!(h.json(&uri, &token).await, expected, "{uri}");
    }
    // Dates are midnights in `tz`.
    let dated = h
        .json(
            "/metrics?from=2026-11-01&to=2026-11-02&tz=Asia%2FKolkata",
            &token,
        )
        .await;
    let shifted = Filter::new(TimeRange::between(
        t(0) - chrono::Duration::minutes(330),
        t(24 * 60 - 330),
    ));
    assert_eq!(dated, json!(store.metrics(&shifted).await.unwrap()));
}

/// `/my-usage`'s answer: the user's usage and their budgets (none here).
fn with_budgets(mut usage: Value) -> Value {
    usage["budgets"] = json!([]);
    usage
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_served() {
    let h = Harness::new(|c| c.unlimited(Role::Admin)).await;
    let (status, headers, body) = h.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    let mut listed: Vec<&str> = paths.keys().map(String::as_str).collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        [
            "/alerts/events",
            "/alerts/firing",
            "/alerts/rules",
            "/alerts/rules/{name}",
            "/audit",
            "/budgets",
            "/budgets/status",
            "/budgets/{name}",
            "/countries",
            "/dashboard",
            "/export",
            "/latency",
            "/live",
            "/me",
            "/metrics",
            "/models",
            "/my-usage",
            "/openapi.json",
            "/platforms",
            "/providers",
            "/services",
            "/timeseries",
            "/users/top",
            "/webhooks",
            "/webhooks/{name}",
        ]
    );
    let token = admin();
    for (path, item) in paths {
        if item.get("get").is_none() {
            // The budget changes: a body in, and 404 for a name that is not there.
            assert!(item["put"]["requestBody"].is_object(), "{path}");
            assert!(item["delete"]["responses"]["404"].is_object(), "{path}");
            assert!(item["delete"]["responses"]["204"].is_object(), "{path}");
            continue;
        }
        let (status, _, body) = h.get(path, Some(&token)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
        // Every documented parameter is one the endpoint takes, and a name it does not
        // document is refused as unknown.
        for param in item["get"]["parameters"].as_array().into_iter().flatten() {
            let name = param["name"].as_str().unwrap();
            let (_, _, body) = h.get(&format!("{path}?{name}=x"), Some(&token)).await;
            assert!(
                !String::from_utf8_lossy(&body).contains("unknown parameter"),
                "{path} documents `{name}` but refuses it"
            );
        }
        if path != "/openapi.json" {
            let (status, _, body) = h.get(&format!("{path}?undocumented=1"), Some(&token)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(error_of(&body).1.as_deref(), Some("undocumented"));
            let responses = item["get"]["responses"].as_object().unwrap();
            for code in ["200", "400", "401", "403", "429", "500"] {
                assert!(responses.contains_key(code), "{path} documents no {code}");
            }
        }
    }
    // The root serves the dashboard page when that feature is on; it is not part of the
    // API, and not in its document.
    let (status, headers, _) = h.get("/", None).await;
    if cfg!(feature = "dashboard") {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    } else {
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    for path in ["/users", "/my-usage/bob", "/dashboard/", "/export.csv"] {
        assert_eq!(
            h.get(path, Some(&token)).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    for name in [
        "Dashboard",
        "Metrics",
        "Breakdown",
        "TimeSeries",
        "LatencySeries",
        "UserRank",
        "UserUsage",
        "AuditEntry",
        "ErrorBody",
    ] {
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "no schema {name}"
        );
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_with_a_challenge() {
    let jwt = Jwt::hs256(SECRET)
        .unwrap()
        .issuer("https://auth.test")
        .audience("analytics");
    let h = Harness::with(jwt, |c| c).await;
    let good = json!({"sub": "ops", "role": "admin", "exp": now() + 600, "iss": "https://auth.test", "aud": "analytics"});
    let with = |change: Value| {
        let mut claims = good.clone();
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    };
    let other_secret = EncodingKey::from_secret(b"another secret, just as long as the first one");
    let none = {
        use base64_url as b64;
        format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(good.to_string().as_bytes())
        )
    };
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        ("valid", hs(good.clone()), StatusCode::OK, ""),
        (
            "expired",
            hs(with(json!({"exp": now() - 3_600}))),
            StatusCode::UNAUTHORIZED,
            "expired",
        ),
        (
            "not yet valid",
            hs(with(json!({"nbf": now() + 3_600}))),
            StatusCode::UNAUTHORIZED,
            "not valid yet",
        ),
        (
            "no exp",
            hs(with(json!({"exp": null}))),
            StatusCode::UNAUTHORIZED,
            "`exp`",
        ),
        (
            "wrong signature",
            sign(Algorithm::HS256, &other_secret, good.clone(), None),
            StatusCode::UNAUTHORIZED,
            "signature",
        ),
        (
            "wrong audience",
            hs(with(json!({"aud": "billing"}))),
            StatusCode::UNAUTHORIZED,
            "audience",
        ),
        (
            "no audience",
            hs(with(json!({"aud": null}))),
            StatusCode::UNAUTHORIZED,
            "`aud`",
        ),
        (
            "wrong issuer",
            hs(with(json!({"iss": "https://evil.test"}))),
            StatusCode::UNAUTHORIZED,
            "issuer",
        ),
        ("alg none", none, StatusCode::UNAUTHORIZED, "malformed"),
        (
            "HS384",
            sign(
                Algorithm::HS384,
                &EncodingKey::from_secret(SECRET.as_bytes()),
                good.clone(),
                None,
            ),
            StatusCode::UNAUTHORIZED,
            "algorithm",
        ),
        (
            "garbage",
            "not.a.token".to_owned(),
            StatusCode::UNAUTHORIZED,
            "malformed",
        ),
        (
            "no subject",
            hs(with(json!({"sub": null}))),
            StatusCode::UNAUTHORIZED,
            "`sub`",
        ),
        (
            "blank subject",
            hs(with(json!({"sub": "  "}))),
            StatusCode::UNAUTHORIZED,
            "`sub`",
        ),
        (
            "unknown role",
            hs(with(json!({"role": "superuser"}))),
            StatusCode::FORBIDDEN,
            "no analytics role",
        ),
        (
            "role list",
            hs(with(json!({"role": ["viewer", "admin"]}))),
            StatusCode::OK,
            "",
        ),
    ];
    for (case, token, status, message) in cases {
        let (got, headers, body) = h.get("/metrics", Some(&token)).await;
        assert_eq!(got, status, "{case}: {}", String::from_utf8_lossy(&body));
        if status == StatusCode::UNAUTHORIZED {
            let challenge = headers["www-authenticate"].to_str().unwrap();
            assert!(
                challenge.starts_with("Bearer realm=\"analytics\", error=\"invalid_token\""),
                "{case}: {challenge}"
            );
        }
        if status != StatusCode::OK {
            let (_, _, text) = error_of(&body);
            assert!(text.contains(message), "{case}: {text}");
        }
    }
    let (status, headers, _) = h.get("/metrics", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"analytics\"");
    let (status, _, _) = h
        .get_with("/metrics", None, &[("authorization", "Basic b3BzOnB3")])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

#[tokio::test]
async fn public_keys_verify_and_algorithm_confusion_is_refused() {
    let claims = json!({"sub": "ops", "role": "admin", "exp": now() + 600});
    let rsa = EncodingKey::from_rsa_pem(&key("rsa_private.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(&key("ec_private.pem")).unwrap();
    let rs_token = sign(Algorithm::RS256, &rsa, claims.clone(), Some("test-rsa-1"));
    let es_token = sign(Algorithm::ES256, &ec, claims.clone(), None);
    // The classic confusion: HS256 with the RSA public key as the HMAC secret.
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&key("rsa_public.pem")),
        claims.clone(),
        None,
    );

    let h = Harness::with(
        Jwt::pem(&key("rsa_public.pem"), JwtAlgorithm::Rs256).unwrap(),
        |c| c,
    )
    .await;
    assert_eq!(h.get("/metrics", Some(&rs_token)).await.0, StatusCode::OK);
    assert_eq!(
        h.get("/metrics", Some(&confused)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.get("/metrics", Some(&es_token)).await.0,
        StatusCode::UNAUTHORIZED
    );

    let h = Harness::with(
        Jwt::pem(&key("ec_public.pem"), JwtAlgorithm::Es256).unwrap(),
        |c| c,
    )
    .await;
    assert_eq!(h.get("/metrics", Some(&es_token)).await.0, StatusCode::OK);
    assert_eq!(
        h.get("/metrics", Some(&rs_token)).await.0,
        StatusCode::UNAUTHORIZED
    );

    let jwks = String::from_utf8(key("rsa_jwks.json")).unwrap();
    let h = Harness::with(Jwt::jwks(&jwks, JwtAlgorithm::Rs256).unwrap(), |c| c).await;
    assert_eq!(h.get("/metrics", Some(&rs_token)).await.0, StatusCode::OK);
    let no_kid = sign(Algorithm::RS256, &rsa, claims.clone(), None);
    assert_eq!(
        h.get("/metrics", Some(&no_kid)).await.0,
        StatusCode::OK,
        "one key: no kid needed"
    );
    let other_kid = sign(Algorithm::RS256, &rsa, claims.clone(), Some("rotated-away"));
    assert_eq!(
        h.get("/metrics", Some(&other_kid)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.get("/metrics", Some(&confused)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Keys that cannot serve are refused when configuring, not at the first request.
    assert!(Jwt::jwks(&jwks, JwtAlgorithm::Es256).is_err());
    assert!(Jwt::jwks("{\"keys\": 3}", JwtAlgorithm::Rs256).is_err());
    assert!(Jwt::pem(
        b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n",
        JwtAlgorithm::Rs256
    )
    .is_err());
    assert!(Jwt::hs256("short").is_err());
    assert!(Jwt::pem_file("/no/such/key.pem", JwtAlgorithm::Rs256).is_err());
}

#[tokio::test]
async fn a_user_sees_only_their_own_usage() {
    let h = Harness::new(|c| c.unlimited(Role::User)).await;
    let alice = user("alice");
    let expected = with_budgets(json!(h
        .store
        .user_usage("alice", &Filter::new(day()), Tz::UTC)
        .await
        .unwrap()));
    assert_eq!(
        h.json(&format!("/my-usage?{RANGE}"), &alice).await,
        expected
    );
    // Headers that name another user change nothing.
    let (_, _, body) = h
        .get_with(
            &format!("/my-usage?{RANGE}"),
            Some(&alice),
            &[("x-user-id", "bob"), ("x-subject", "bob")],
        )
        .await;
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), expected);

    for path in [
        "/dashboard",
        "/metrics",
        "/services",
        "/models",
        "/providers",
        "/timeseries",
        "/latency",
        "/users/top",
        "/export",
        "/audit",
    ] {
        for query in ["", "?user=alice", "?user=bob"] {
            let (status, _, body) = h.get(&format!("{path}{query}"), Some(&alice)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}{query}");
            assert!(!String::from_utf8_lossy(&body).contains("bob\""), "{path}");
        }
    }
    for query in [
        "user=bob",
        "%75ser=bob",
        "user=bob&user=alice",
        "service=chat&user=bob",
        "user=alice",
    ] {
        let (status, _, body) = h.get(&format!("/my-usage?{query}"), Some(&alice)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{query}");
        assert_eq!(error_of(&body).0, "forbidden");
    }
    for query in [
        "sub=bob",
        "subject=bob",
        "user_id=bob",
        "USER=bob",
        "user%00=bob",
        "users=bob",
    ] {
        let (status, _, body) = h.get(&format!("/my-usage?{query}"), Some(&alice)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(error_of(&body).2.contains("unknown parameter"), "{query}");
    }
    // A user whose name looks like a filter or SQL still gets only their own rows.
    let sly = user("bob' OR '1'='1");
    let mine = h.json("/my-usage", &sly).await;
    assert_eq!(mine["metrics"]["requests"], 0);
}

#[tokio::test]
async fn hostile_parameters_get_an_answer_or_a_400_never_more() {
    let h = Harness::new(|c| c.unlimited(Role::Admin)).await;
    let token = admin();
    let before = h.store.count().await.unwrap();
    let values = [
        "' OR '1'='1",
        "\"; DROP TABLE usage_records; --",
        "1; DELETE FROM usage_records",
        "%25%27%22%5C",
        "ユーザー🙂",
        "\u{202e}gpt-4o",
        "%00",
        "\\x00",
        "9999999999999999999999",
        "-1",
        "2026-13-45",
        "../../etc/passwd",
    ];
    let doc: Value = serde_json::from_slice(&h.get("/openapi.json", None).await.2).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if path == "/openapi.json" {
            continue;
        }
        // `/me` takes no parameters, and lists none.
        let params = item["get"]["parameters"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        for param in params {
            let name = param["name"].as_str().unwrap();
            for value in values {
                let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
                let uri = format!("{path}?{name}={encoded}");
                let (status, _, body) = h.get(&uri, Some(&token)).await;
                assert!(
                    status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
                    "{uri}: {status} {}",
                    String::from_utf8_lossy(&body)
                );
                if status == StatusCode::BAD_REQUEST {
                    assert_eq!(error_of(&body).1.as_deref(), Some(name), "{uri}");
                }
            }
        }
    }
    assert_eq!(h.store.count().await.unwrap(), before);
}

#[tokio::test]
async fn runaway_queries_are_refused_with_the_limit() {
    let h = Harness::new(|c| c.max_limit(500)).await;
    let token = admin();
    let cases = [
        ("/metrics?from=2026-11-02&to=2026-11-01", "from", "before"),
        ("/metrics?from=2026-11-01&to=2026-11-01", "from", "before"),
        (
            "/timeseries?from=2016-01-01&to=2026-01-01&granularity=hour",
            "granularity",
            "at most 10000",
        ),
        (
            "/metrics?from=1990-01-01&to=2026-01-01",
            "from",
            "at most 3660",
        ),
        ("/services?limit=100000000000", "limit", "maximum of 500"),
        ("/users/top?limit=501", "limit", "maximum of 500"),
        ("/users/top?limit=0", "limit", "at least 1"),
        ("/audit?limit=18446744073709551616", "limit", "whole number"),
        ("/metrics?last=100000000d", "last", "before 1970"),
        ("/metrics?last=99999999999999999d", "last", "too long"),
        ("/metrics?color=blue", "color", "unknown parameter"),
        ("/metrics?service=a&service=b", "service", "more than once"),
        ("/timeseries?granularity=minute", "granularity", "one of"),
        ("/timeseries?tz=Europe%2FAtlantis", "tz", "time zone"),
    ];
    for (uri, parameter, message) in cases {
        let (status, _, body) = h.get(uri, Some(&token)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        let (code, got, text) = error_of(&body);
        assert_eq!(
            (code.as_str(), got.as_deref()),
            ("bad_parameter", Some(parameter)),
            "{uri}: {text}"
        );
        assert!(text.contains(message), "{uri}: {text}");
    }
}

#[tokio::test]
async fn rate_limits_are_per_subject_and_exports_cost_more() {
    let h = Harness::new(|c| {
        c.rate_limit(Role::User, RateLimit::per_minute(60).burst(3))
            .rate_limit(Role::Admin, RateLimit::per_minute(60).burst(12))
            .export_cost(10)
    })
    .await;
    let alice = user("alice");
    for _ in 0..3 {
        assert_eq!(h.get("/my-usage", Some(&alice)).await.0, StatusCode::OK);
    }
    let (status, headers, body) = h.get("/my-usage", Some(&alice)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(error_of(&body).0, "rate_limited");
    assert_eq!(
        h.get("/my-usage", Some(&user("carol"))).await.0,
        StatusCode::OK
    );

    let token = admin();
    assert_eq!(h.get("/export", Some(&token)).await.0, StatusCode::OK);
    assert_eq!(h.get("/metrics", Some(&token)).await.0, StatusCode::OK);
    assert_eq!(h.get("/metrics", Some(&token)).await.0, StatusCode::OK);
    assert_eq!(
        h.get("/metrics", Some(&token)).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn exports_stream_as_attachments() {
    let h = Harness::new(|c| c).await;
    let token = admin();
    let (status, headers, body) = h
        .get(&format!("/export?{RANGE}&service=chat"), Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"usage-20261101T000000Z-20261102T000000Z.csv\""
    );
    let text = String::from_utf8(body).unwrap();
    assert_eq!(
        text.lines().count(),
        1 + 4,
        "a header and the four chat records"
    );

    let (status, headers, body) = h
        .get(&format!("/export?{RANGE}&format=jsonl"), Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-ndjson");
    let records: Vec<UsageRecord> = String::from_utf8(body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 6);
    assert!(records
        .windows(2)
        .all(|w| w[0].started_at <= w[1].started_at));

    let (status, _, body) = h
        .get("/export?from=2026-11-02&to=2026-11-01", Some(&token))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a bad filter is refused before streaming"
    );
    assert_eq!(error_of(&body).1.as_deref(), Some("from"));
}

#[tokio::test]
async fn every_access_and_refusal_is_in_the_audit_trail() {
    let h = Harness::new(|c| c.rate_limit(Role::User, RateLimit::per_minute(60).burst(2))).await;
    let alice = user("alice");
    let token = admin();
    h.get(&format!("/metrics?{RANGE}&service=chat"), Some(&token))
        .await;
    h.get("/services?limit=0", Some(&token)).await;
    h.get("/metrics", Some("forged.token.here")).await;
    h.get("/dashboard", Some(&alice)).await;
    h.get("/my-usage?user=bob", Some(&alice)).await;
    h.get("/my-usage", Some(&alice)).await;
    h.audit.flush().await;

    let all = h
        .store
        .audit_log(&AuditQuery::new(TimeRange::last(Duration::from_secs(600))))
        .await
        .unwrap();
    let seen: Vec<_> = all
        .iter()
        .rev()
        .map(|e| {
            (
                e.subject.as_deref(),
                e.role.as_deref(),
                e.endpoint.as_str(),
                e.status,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (Some("ops"), Some("admin"), "/metrics", Some(200)),
            (Some("ops"), Some("admin"), "/services", Some(400)),
            (None, None, "/metrics", Some(401)),
            (Some("alice"), Some("user"), "/dashboard", Some(403)),
            (Some("alice"), Some("user"), "/my-usage", Some(403)),
            (Some("alice"), Some("user"), "/my-usage", Some(429)),
        ]
    );
    let first = all.last().unwrap();
    assert_eq!(
        first.query.as_deref(),
        Some(&*format!("{RANGE}&service=chat"))
    );
    assert_eq!(first.reason, None);
    let bad_limit = &all[all.len() - 2];
    assert!(
        bad_limit.reason.as_deref().unwrap().starts_with("limit: "),
        "{bad_limit:?}"
    );
    assert!(all[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("too many requests"));

    // The trail can be read back through the API, filtered.
    let trail = h
        .json("/audit?last=10m&subject=alice&refused=true", &token)
        .await;
    let statuses: Vec<u64> = trail
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [429, 403, 403]);
}

/// Requests with bad credentials are limited per client address (behind a proxy, by the
/// configured header's last address): a flood of forged tokens from one address gets
/// 429 with `Retry-After`, another address is still answered 401, and an admin is not
/// held back. Every one of them is in the audit trail: nothing was dropped.
#[tokio::test]
async fn bad_credentials_are_limited_per_client_address() {
    let h = Harness::new(|c| {
        c.unauthenticated_limit(RateLimit::per_minute(60).burst(3))
            .client_address_header(http::HeaderName::from_static("x-forwarded-for"))
    })
    .await;
    let flood = [("x-forwarded-for", "198.51.100.1, 203.0.113.7")];
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (status, headers, _) = h.get_with("/metrics", Some("forged.token"), &flood).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(headers.contains_key("retry-after"));
        }
        statuses.push(status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429]);
    // The proxy's own address for this client is the last one: the first is the
    // client's claim and is not trusted.
    let spoofed = [("x-forwarded-for", "203.0.113.99, 203.0.113.7")];
    let (status, _, _) = h.get_with("/metrics", None, &spoofed).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let other = [("x-forwarded-for", "203.0.113.8")];
    let (status, _, _) = h.get_with("/metrics", Some("forged.token"), &other).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = h.get_with("/metrics", Some(&admin()), &flood).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a valid token is not limited by address"
    );
    h.audit.flush().await;
    let trail = h
        .store
        .audit_log(&AuditQuery::new(TimeRange::last(Duration::from_secs(600))).limit(100))
        .await
        .unwrap();
    assert_eq!(trail.len(), 9);
    assert_eq!(h.audit.stats().dropped, 0);
    assert!(
        trail[2].reason.as_deref().unwrap().contains("too many"),
        "{:?}",
        trail[2]
    );
}

/// The router's own audit recorder is handed back: it can be flushed and shut down at
/// exit, and its counters read. It waits for room rather than dropping an entry.
#[tokio::test]
async fn the_default_audit_recorder_is_handed_back() {
    let store = DieselStore::connect("sqlite::memory:").await.unwrap();
    let config = ApiConfig::new(Jwt::hs256(SECRET).unwrap());
    let (app, audit) = api::router_with_audit(store.clone(), config);
    for _ in 0..50 {
        let request = Request::get("/metrics").body(Body::empty()).unwrap();
        app.clone().oneshot(request).await.unwrap();
    }
    audit.shutdown().await;
    let stats = audit.stats();
    assert_eq!((stats.written, stats.dropped), (50, 0));
    let trail = store
        .audit_log(&AuditQuery::new(TimeRange::last(Duration::from_secs(600))).limit(100))
        .await
        .unwrap();
    assert_eq!(trail.len(), 50);
}

#[tokio::test]
async fn me_names_the_caller_and_their_role_and_takes_no_parameters() {
    let h = Harness::new(|c| c).await;
    assert_eq!(
        h.json("/me", &user("alice")).await,
        json!({"subject": "alice", "role": "user"})
    );
    assert_eq!(
        h.json("/me", &admin()).await,
        json!({"subject": "ops", "role": "admin"})
    );
    let (status, _, body) = h.get("/me?last=24h", Some(&admin())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&body).1.as_deref(), Some("last"));
    assert_eq!(h.get("/me", None).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn live_sends_the_filters_metrics_at_once_and_a_user_only_their_own() {
    let h = Harness::new(|c| c).await;
    let event = |body: Vec<u8>| -> Value {
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with("event: metrics\n"), "{text}");
        let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        serde_json::from_str(data).unwrap()
    };
    let (status, headers, body) = h.get(&format!("/live?{RANGE}"), Some(&admin())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(event(body)["requests"], 6);
    let (status, _, body) = h.get(&format!("/live?{RANGE}"), Some(&user("alice"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(event(body)["requests"], 3);
    let (status, _, _) = h
        .get(&format!("/live?{RANGE}&user=bob"), Some(&user("alice")))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn admins_keep_budgets_and_users_see_their_own() {
    let h = Harness::new(|c| c.unlimited(Role::Admin).unlimited(Role::User)).await;
    let token = admin();
    let body = r#"{"scope":{"user":"alice"},"measure":"cost","limit":5000,"period":"month","time_zone":"Europe/Berlin","warn_at":[80,50]}"#;
    let (status, stored) = h.send("PUT", "/budgets/alice-month", &token, body).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["name"], "alice-month");
    assert_eq!(stored["warn_at"], json!([50, 80]));
    let everyone =
        r#"{"name":"all-day","measure":"requests","limit":100,"period":{"rolling":{"hours":24}}}"#;
    assert_eq!(
        h.send("PUT", "/budgets/all-day", &token, everyone).await.0,
        StatusCode::OK
    );
    let listed = h.json("/budgets", &token).await;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice-month", "all-day"]);
    let status = h.json("/budgets/status", &token).await;
    assert_eq!(status[0]["limit"], 5000);
    assert_eq!(status[1]["name"], "all-day");
    // The harness's records are from November 2026: none falls in this month's window.
    assert_eq!(status[0]["spent"], 0);

    // Bad bodies say what is wrong; nothing is written.
    for (body, says) in [
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        (
            r#"{"name":"other","measure":"cost","limit":1,"period":"day"}"#,
            "names the budget",
        ),
        (
            r#"{"measure":"cost","limit":-3,"period":"day"}"#,
            "not a budget",
        ),
        (r#"{"measure":"cost","limit":0,"period":"day"}"#, "limit"),
        (
            r#"{"measure":"cost","limit":1,"period":"day","time_zone":"Mars/Base"}"#,
            "not a budget",
        ),
        (
            r#"{"measure":"cost","limit":1,"period":{"rolling":{"hours":0}}}"#,
            "rolling",
        ),
        (
            r#"{"scope":{"team":"red"},"measure":"cost","limit":1,"period":"day"}"#,
            "not a budget",
        ),
    ] {
        let (status, answer) = h.send("PUT", "/budgets/x", &token, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer["error"], "bad_body", "{body}");
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{body}: {answer}"
        );
    }
    let (status, answer) = h
        .send(
            "PUT",
            "/budgets/bad%20name",
            &token,
            r#"{"measure":"cost","limit":1,"period":"day"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(
        h.json("/budgets", &token).await.as_array().unwrap().len(),
        2
    );

    // A user may not change or list budgets, but sees their own in `/my-usage`.
    let alice = user("alice");
    assert_eq!(
        h.send("PUT", "/budgets/mine", &alice, body).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.send("DELETE", "/budgets/all-day", &alice, "").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.get("/budgets/status", Some(&alice)).await.0,
        StatusCode::FORBIDDEN
    );
    let mine = h.json("/my-usage", &alice).await;
    assert_eq!(mine["budgets"].as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine["budgets"][0]["name"], "alice-month");
    let bob = h.json("/my-usage", &user("bob")).await;
    assert_eq!(bob["budgets"], json!([]));

    assert_eq!(
        h.send("DELETE", "/budgets/all-day", &token, "").await.0,
        StatusCode::NO_CONTENT
    );
    let (status, answer) = h.send("DELETE", "/budgets/all-day", &token, "").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    h.audit.shutdown().await;
}

#[tokio::test]
async fn admins_keep_alert_rules_and_read_what_fired() {
    let h = Harness::new(|c| c.unlimited(Role::Admin).unlimited(Role::User)).await;
    let token = admin();
    let rule = r#"{"signal":"requests","condition":"below","threshold":1,"window_minutes":15,"filter":{"service":"chat"}}"#;
    let (status, stored) = h
        .send("PUT", "/alerts/rules/chat-stopped", &token, rule)
        .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["name"], "chat-stopped");
    assert_eq!(
        h.json("/alerts/rules", &token)
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    for (body, says) in [
        (
            r#"{"signal":"error_rate","condition":"above","threshold":3}"#,
            "threshold",
        ),
        (
            r#"{"signal":"error_rate","condition":"sideways","threshold":0.1}"#,
            "not a rule",
        ),
        (
            r#"{"signal":"cost","condition":"above","threshold":1,"window_minutes":0}"#,
            "window",
        ),
    ] {
        let (status, answer) = h.send("PUT", "/alerts/rules/bad", &token, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{body}: {answer}"
        );
    }
    // No traffic in the last 15 minutes (the harness's records are from November).
    let fired = tower_usage::alert::Alerts::new(h.store.clone())
        .evaluate(chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(fired.len(), 1);
    let firing = h.json("/alerts/firing", &token).await;
    assert_eq!(firing[0]["rule"], "chat-stopped");
    assert_eq!(firing[0]["kind"], "fired");
    let events = h.json("/alerts/events?last=1h&limit=5", &token).await;
    assert_eq!(events.as_array().unwrap().len(), 1);
    assert_eq!(
        h.get("/alerts/firing", Some(&user("alice"))).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, _) = h
        .send("DELETE", "/alerts/rules/chat-stopped", &token, "")
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.send("DELETE", "/alerts/rules/chat-stopped", &token, "")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    h.audit.shutdown().await;
}

#[tokio::test]
async fn admins_keep_webhooks_whose_secrets_never_come_back() {
    let h = Harness::new(|c| c.unlimited(Role::Admin)).await;
    let token = admin();
    let body = r#"{"url":"https://ops.example.com/usage","secret":"a secret of some length"}"#;
    let (status, stored) = h.send("PUT", "/webhooks/ops", &token, body).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(
        stored,
        json!({"name": "ops", "url": "https://ops.example.com/usage"})
    );
    let listed = h.json("/webhooks", &token).await;
    assert!(!listed.to_string().contains("secret"), "{listed}");
    for (body, says) in [
        (
            r#"{"url":"ftp://x/y","secret":"a secret of some length"}"#,
            "URL",
        ),
        (r#"{"url":"https://x/y","secret":"short"}"#, "secret"),
        (r#"{"url":"https://x/y"}"#, "not a webhook"),
    ] {
        let (status, answer) = h.send("PUT", "/webhooks/bad", &token, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{body}: {answer}"
        );
    }
    assert_eq!(
        h.send("DELETE", "/webhooks/ops", &token, "").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.send("DELETE", "/webhooks/ops", &token, "").await.0,
        StatusCode::NOT_FOUND
    );
    h.audit.shutdown().await;
}

#[tokio::test]
async fn answers_over_removed_records_say_where_they_rest_on_the_rollups_alone() {
    let h = Harness::new(|c| c.unlimited(Role::Admin)).await;
    let token = admin();
    let (_, headers, before) = h.get(&format!("/metrics?{RANGE}"), Some(&token)).await;
    assert!(!headers.contains_key("usage-aggregate-only-before"));
    // The records of 2026-11-01 are over a week old: a week's policy removes them all.
    let policy = tower_usage::store::RetentionPolicy::keep_records_days(7).unwrap();
    let report = h.store.apply_retention(&policy).await.unwrap();
    assert_eq!(report.records_removed, 6);
    assert_eq!(h.store.count().await.unwrap(), 0);

    let (status, headers, after) = h.get(&format!("/metrics?{RANGE}"), Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    // The whole range lies before the horizon: the header names its end.
    assert_eq!(
        headers["usage-aggregate-only-before"],
        "2026-11-02T00:00:00Z"
    );
    // Whole quarter hours: the rollups answer as the records did.
    assert_eq!(after, before);

    let horizon = report.retained.records_before.unwrap();
    let across = format!(
        "/services?from=2026-11-01T00:00:00Z&to={}",
        (horizon + chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let (_, headers, _) = h.get(&across, Some(&token)).await;
    let said = horizon.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    assert_eq!(headers["usage-aggregate-only-before"], said.as_str());
    let recent = format!(
        "/services?from={}&to={}",
        said,
        (horizon + chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let (status, headers, _) = h.get(&recent, Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!headers.contains_key("usage-aggregate-only-before"));
    // Not on endpoints that do not read usage.
    let (_, headers, _) = h.get("/budgets", Some(&token)).await;
    assert!(!headers.contains_key("usage-aggregate-only-before"));
}
