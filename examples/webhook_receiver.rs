//! A webhook receiver for the crate's alert events: checks each delivery's signature
//! and age, drops an event id it has seen, and prints the event.
//!
//! ```sh
//! WEBHOOK_SECRET=… cargo run --example webhook_receiver   # on 127.0.0.1:3003 (ADDR)
//! ```
//!
//! Point a webhook at `http://127.0.0.1:3003/hook` with the same secret (the analytics
//! example does when `WEBHOOK_URL` is set).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use tower_usage::notify::signature;

/// How old a delivery's timestamp may be: a replayed one is refused.
const MAX_AGE_SECONDS: i64 = 300;

#[derive(Clone)]
struct Receiver {
    secret: Arc<String>,
    seen: Arc<Mutex<HashSet<String>>>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3003".to_owned());
    let secret = std::env::var("WEBHOOK_SECRET")
        .map_err(|_| "set WEBHOOK_SECRET to the secret the webhook was given")?;
    let app = app(secret);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    eprintln!("receiving alert events at http://{addr}/hook");
    axum::serve(listener, app).await?;
    Ok(())
}

fn app(secret: String) -> Router {
    let receiver = Receiver {
        secret: Arc::new(secret),
        seen: Arc::default(),
    };
    Router::new()
        .route("/hook", post(receive))
        .with_state(receiver)
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    match check(&r, &headers, &body) {
        Ok(Some(event)) => {
            println!("{event}");
            StatusCode::OK
        }
        // A repeat of an event already taken: acknowledged, not taken again.
        Ok(None) => StatusCode::OK,
        Err(why) => {
            eprintln!("refused a delivery: {why}");
            StatusCode::UNAUTHORIZED
        }
    }
}

/// The event, if the delivery is signed with the secret, recent, and not seen before.
fn check(r: &Receiver, headers: &HeaderMap, body: &[u8]) -> Result<Option<String>, String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(format!("no {name} header"))
    };
    let signed = header("usage-signature")?;
    let t: i64 = signed
        .strip_prefix("t=")
        .and_then(|rest| rest.split(',').next())
        .and_then(|t| t.parse().ok())
        .ok_or("a signature without a timestamp")?;
    let expected = signature(r.secret.as_bytes(), t, body);
    // Compared in constant time, as a signature must be.
    let same = expected.len() == signed.len()
        && expected
            .bytes()
            .zip(signed.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err("the signature does not match".to_owned());
    }
    if (chrono::Utc::now().timestamp() - t).abs() > MAX_AGE_SECONDS {
        return Err("the delivery is too old".to_owned());
    }
    let id = header("usage-event-id")?;
    let fresh = r
        .seen
        .lock()
        .map_err(|_| "the receiver's memory is poisoned")?
        .insert(id.to_owned());
    Ok(fresh.then(|| String::from_utf8_lossy(body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::Request;
    use tower::ServiceExt;

    const SECRET: &str = "a secret of some length";

    async fn deliver(app: &Router, signed: &str, id: &str, body: &'static str) -> StatusCode {
        let request = Request::post("/hook")
            .header("usage-signature", signed)
            .header("usage-event-id", id)
            .body(Body::from(body))
            .unwrap();
        app.clone().oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn signed_recent_deliveries_pass_once_and_forgeries_never() {
        let app = app(SECRET.to_owned());
        let body = r#"{"id":"e1","type":"alert.fired"}"#;
        let now = chrono::Utc::now().timestamp();
        let good = signature(SECRET.as_bytes(), now, body.as_bytes());
        assert_eq!(deliver(&app, &good, "e1", body).await, StatusCode::OK);
        assert_eq!(deliver(&app, &good, "e1", body).await, StatusCode::OK);
        let forged = signature(b"another secret entirely", now, body.as_bytes());
        assert_eq!(
            deliver(&app, &forged, "e2", body).await,
            StatusCode::UNAUTHORIZED
        );
        let old = signature(SECRET.as_bytes(), now - 3_600, body.as_bytes());
        assert_eq!(
            deliver(&app, &old, "e3", body).await,
            StatusCode::UNAUTHORIZED
        );
    }
}
