-- Webhook endpoints by name; `definition` is the endpoint as JSON (the crate's
-- `notify::Webhook`, its signing secret included).
CREATE TABLE usage_webhooks (
    name TEXT NOT NULL PRIMARY KEY,
    definition TEXT NOT NULL,
    updated_at_us BIGINT NOT NULL
);

-- One row per event and endpoint, written in the transaction that writes the event, so
-- that no event is lost between the two. A row is due at `next_at_us`; a sender leases
-- it by moving that time on before it sends, so two senders never send it at once.
-- `delivered_at_us` is set once a 2xx answer came back; `gave_up` after a day of failures.
CREATE TABLE usage_webhook_outbox (
    webhook TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    next_at_us BIGINT NOT NULL,
    attempts INTEGER NOT NULL,
    delivered_at_us BIGINT,
    gave_up SMALLINT NOT NULL,
    last_error TEXT,
    PRIMARY KEY (webhook, event_id)
);

CREATE INDEX usage_webhook_outbox_due ON usage_webhook_outbox (next_at_us);
