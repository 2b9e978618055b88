//! Telling the world: alert events delivered to webhook endpoints through a persistent
//! outbox, signed so that receivers can check where they come from.
//!
//! | piece | what it does |
//! |---|---|
//! | [`Webhook`] | an endpoint: a URL and the secret its deliveries are signed with, kept in the store ([`DieselStore::put_webhook`](crate::store::DieselStore::put_webhook)) |
//! | the outbox | a row per event and endpoint, written in the transaction that writes the event: an event is never lost between the two |
//! | `Sender` (feature `webhooks`) | sends what is due, retries with backoff for a day, and never sends a delivery again once it was answered with a 2xx |
//!
//! # What a receiver gets
//!
//! A `POST` with a JSON body
//! `{"id": "…", "type": "alert.fired" | "alert.resolved", "created_at": "…", "data": {…}}`
//! (`data` is the [`AlertEvent`](crate::alert::AlertEvent)) and the headers
//! `Usage-Event-Id` (the `id`: the same on every retry of one event, so a receiver can
//! drop a repeat) and `Usage-Signature: t=<unix seconds>,v1=<hex>`, where `v1` is the
//! HMAC-SHA256, keyed with the endpoint's secret, of `<t>.<body>` (the way Stripe signs
//! its webhooks). To check a delivery, compute the same HMAC over the timestamp, a dot
//! and the raw body, compare it in constant time with `v1`, and refuse a `t` older than
//! a few minutes. [`signature`] computes it.

mod outbox;
#[cfg(feature = "webhooks")]
mod sender;
mod sign;
mod webhook;

pub(crate) use outbox::enqueue;
#[cfg(feature = "webhooks")]
pub use sender::{Sender, SenderStats};
pub use sign::signature;
pub use webhook::{Webhook, WebhookError, WebhookView};
