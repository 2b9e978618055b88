//! [`Sender`]: sends the outbox's due deliveries, signed, and records what came of them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer, Text};
use diesel::QueryableByName;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::outbox::TABLE;
use super::sign::signature;
use super::webhook::Webhook;
use crate::store::sql::Sql;
use crate::store::{DieselStore, StoreError};

/// Deliveries read in one pass.
const BATCH: i64 = 100;
/// How long deliveries are retried before they are given up.
const GIVE_UP_AFTER_US: i64 = 24 * 3_600 * 1_000_000;
/// The longest wait between two attempts.
const MAX_BACKOFF_US: i64 = 3_600 * 1_000_000;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Sends alert events to the webhooks: what is due in the outbox, each delivery signed
/// (see the [module](super) for what a receiver gets), each endpoint on its own so that
/// one that hangs or fails holds no other back. Cheap to clone.
///
/// A delivery is leased before it is sent (so that several senders, in one process or
/// many, never send it at the same time), marked delivered when a 2xx answer comes back
/// (and never sent again), and otherwise retried after 10 s, 20 s, 40 s… up to an hour
/// apart, for a day; then it is given up. Deliveries live in the store: a restart loses
/// none. A sender that dies after the answer and before marking it leaves the delivery
/// to be sent again when its lease ends: receivers should drop an `id` they have seen.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_usage::notify::{Sender, Webhook};
/// use tower_usage::store::DieselStore;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = DieselStore::connect("sqlite://usage.db").await?;
/// store.put_webhook(Webhook::new("ops", "https://ops.example.com/usage", std::env::var("WEBHOOK_SECRET")?)).await?;
/// Sender::new(store).spawn(Duration::from_secs(1));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Sender {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: DieselStore,
    client: Client<Https, Full<Bytes>>,
    timeout: Duration,
    delivered: AtomicU64,
    failed: AtomicU64,
    given_up: AtomicU64,
}

/// What a [`Sender`] has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SenderStats {
    /// Deliveries answered with a 2xx.
    pub delivered: u64,
    /// Attempts that failed (an answer other than 2xx, no answer in time, no connection).
    pub failed: u64,
    /// Deliveries given up after a day of failures, or whose webhook was deleted.
    pub given_up: u64,
}

#[derive(QueryableByName)]
struct Due {
    #[diesel(sql_type = Text)]
    webhook: String,
    #[diesel(sql_type = Text)]
    event_id: String,
    #[diesel(sql_type = Text)]
    payload: String,
    #[diesel(sql_type = BigInt)]
    created_at_us: i64,
    #[diesel(sql_type = BigInt)]
    next_at_us: i64,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

impl Sender {
    /// Sends from `store`'s outbox, waiting at most 10 seconds for an answer.
    pub fn new(store: DieselStore) -> Sender {
        Sender::with_timeout(store, Duration::from_secs(10))
    }

    /// Sends from `store`'s outbox, waiting at most `timeout` (at least 100 ms) for an
    /// answer.
    pub fn with_timeout(store: DieselStore, timeout: Duration) -> Sender {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        Sender {
            shared: Arc::new(Shared {
                store,
                client: Client::builder(TokioExecutor::new()).build(https),
                timeout: timeout.max(Duration::from_millis(100)),
                delivered: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                given_up: AtomicU64::new(0),
            }),
        }
    }

    /// Starts a pass every `every` (at least 100 ms) on the current tokio runtime, until
    /// the returned task is aborted (or the runtime ends). Passes overlap when endpoints
    /// are slow: each takes only deliveries no other holds.
    pub fn spawn(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let every = every.max(Duration::from_millis(100));
        tokio::spawn(send_forever(self.clone(), every))
    }

    /// One pass at `now`: leases what is due, sends it all at once, and records what
    /// came of each; returns how many deliveries were attempted.
    pub async fn send_due(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let store = &self.shared.store;
        let now_us = now.timestamp_micros();
        let mut sql = Sql::new(store.dialect());
        sql.push("SELECT webhook, event_id, payload, created_at_us, next_at_us, attempts FROM ")
            .push(TABLE)
            .push(" WHERE delivered_at_us IS NULL AND gave_up = 0 AND next_at_us <= ")
            .int(now_us)
            .push(" ORDER BY next_at_us LIMIT ")
            .int(BATCH);
        let due: Vec<Due> = store.load(sql).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let webhooks = store.webhooks().await?;
        let lease_until =
            now_us + i64::try_from(self.shared.timeout.as_micros()).unwrap_or(0) + 30_000_000;
        let mut sends = Vec::new();
        for d in due {
            let Some(webhook) = webhooks.iter().find(|w| w.name == d.webhook).cloned() else {
                self.finish(
                    &d,
                    Outcome::GiveUp("the webhook was deleted".into()),
                    now_us,
                )
                .await?;
                continue;
            };
            if self.lease(&d, lease_until).await? {
                sends.push(async move {
                    let outcome = self.send(&webhook, &d, now).await;
                    (d, outcome)
                });
            }
        }
        let attempted = sends.len();
        for (d, outcome) in futures_util::future::join_all(sends).await {
            let outcome = match outcome {
                Ok(()) => Outcome::Delivered,
                Err(why) if now_us - d.created_at_us >= GIVE_UP_AFTER_US => Outcome::GiveUp(why),
                Err(why) => {
                    let attempts = u32::try_from(d.attempts).unwrap_or(0).min(20);
                    let backoff = (10_000_000i64 << attempts).min(MAX_BACKOFF_US);
                    Outcome::Retry(why, now_us + backoff)
                }
            };
            self.finish(&d, outcome, now_us).await?;
        }
        Ok(attempted)
    }

    /// Takes `d` for one attempt, unless another sender did since it was read.
    async fn lease(&self, d: &Due, until_us: i64) -> Result<bool, StoreError> {
        let store = &self.shared.store;
        let mut sql = Sql::new(store.dialect());
        sql.push("UPDATE ")
            .push(TABLE)
            .push(" SET next_at_us = ")
            .int(until_us)
            .push(", attempts = attempts + 1 WHERE webhook = ")
            .bind_text(&d.webhook)
            .push(" AND event_id = ")
            .bind_text(&d.event_id)
            .push(" AND next_at_us = ")
            .int(d.next_at_us)
            .push(" AND delivered_at_us IS NULL AND gave_up = 0");
        Ok(store.execute(vec![sql]).await? == 1)
    }

    /// One attempt: the signed `POST`, answered with a 2xx in time, or why not.
    async fn send(&self, webhook: &Webhook, d: &Due, now: DateTime<Utc>) -> Result<(), String> {
        let body = Bytes::from(d.payload.clone());
        let signed = signature(webhook.secret.as_bytes(), now.timestamp(), &body);
        let request = http::Request::post(webhook.url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("tower-usage/", env!("CARGO_PKG_VERSION")),
            )
            .header("usage-event-id", d.event_id.as_str())
            .header("usage-signature", signed)
            .body(Full::new(body))
            .map_err(|e| format!("the request cannot be made: {e}"))?;
        let exchange = async {
            let response = self.shared.client.request(request).await.map_err(|e| {
                let mut why = format!("no answer: {e}");
                let mut source = std::error::Error::source(&e);
                while let Some(inner) = source {
                    why.push_str(&format!(": {inner}"));
                    source = inner.source();
                }
                why
            })?;
            let status = response.status();
            // Read (a bounded amount of) the answer, so that the connection can be reused.
            let _ =
                tokio::time::timeout(Duration::from_secs(1), response.into_body().collect()).await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("answered {status}"))
            }
        };
        match tokio::time::timeout(self.shared.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", self.shared.timeout)),
        }
    }

    async fn finish(&self, d: &Due, outcome: Outcome, now_us: i64) -> Result<(), StoreError> {
        let store = &self.shared.store;
        let mut sql = Sql::new(store.dialect());
        sql.push("UPDATE ").push(TABLE).push(" SET ");
        let counter = match &outcome {
            Outcome::Delivered => {
                sql.push("delivered_at_us = ")
                    .int(now_us)
                    .push(", last_error = NULL");
                &self.shared.delivered
            }
            Outcome::Retry(why, next_us) => {
                sql.push("next_at_us = ")
                    .int(*next_us)
                    .push(", last_error = ");
                sql.bind_text(&cut(why));
                &self.shared.failed
            }
            Outcome::GiveUp(why) => {
                sql.push("gave_up = 1, last_error = ").bind_text(&cut(why));
                &self.shared.given_up
            }
        };
        sql.push(" WHERE webhook = ")
            .bind_text(&d.webhook)
            .push(" AND event_id = ")
            .bind_text(&d.event_id);
        store.execute(vec![sql]).await?;
        counter.fetch_add(1, Ordering::Relaxed);
        if let Outcome::GiveUp(why) = &outcome {
            tracing::warn!(webhook = %d.webhook, event = %d.event_id, "webhook delivery given up: {why}");
        }
        Ok(())
    }

    /// What has been done so far.
    pub fn stats(&self) -> SenderStats {
        let s = &self.shared;
        SenderStats {
            delivered: s.delivered.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            given_up: s.given_up.load(Ordering::Relaxed),
        }
    }
}

enum Outcome {
    Delivered,
    Retry(String, i64),
    GiveUp(String),
}

/// An error as the outbox keeps it (the MySQL column's width).
fn cut(why: &str) -> String {
    why.chars().take(500).collect()
}

async fn send_forever(sender: Sender, every: Duration) {
    let mut failing = false;
    loop {
        tokio::time::sleep(every).await;
        let pass = sender.clone();
        // A pass of its own: a slow endpoint holds back no later pass.
        let pass = tokio::spawn(async move { pass.send_due(Utc::now()).await });
        // Only the start of the pass is waited for here, to learn whether the store
        // answers; the sends go on in the background.
        if let Ok(Ok(Err(e))) = tokio::time::timeout(every, pass).await {
            if !failing {
                tracing::warn!("webhooks: the outbox could not be read (retrying quietly): {e}");
            }
            failing = true;
        } else {
            failing = false;
        }
    }
}
