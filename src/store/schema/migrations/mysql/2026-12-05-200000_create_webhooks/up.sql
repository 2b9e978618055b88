-- Webhook endpoints by name; `definition` is the endpoint as JSON (the crate's
-- `notify::Webhook`, its signing secret included).
CREATE TABLE usage_webhooks (
    name VARCHAR(128) NOT NULL PRIMARY KEY,
    definition TEXT NOT NULL,
    updated_at_us BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- One row per event and endpoint, written in the transaction that writes the event, so
-- that no event is lost between the two. A row is due at `next_at_us`; a sender leases
-- it by moving that time on before it sends, so two senders never send it at once.
-- `delivered_at_us` is set once a 2xx answer came back; `gave_up` after a day of failures.
CREATE TABLE usage_webhook_outbox (
    webhook VARCHAR(128) NOT NULL,
    event_id VARCHAR(36) NOT NULL,
    payload TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    next_at_us BIGINT NOT NULL,
    attempts INTEGER NOT NULL,
    delivered_at_us BIGINT,
    gave_up SMALLINT NOT NULL,
    last_error VARCHAR(512),
    PRIMARY KEY (webhook, event_id),
    INDEX usage_webhook_outbox_due (next_at_us)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Byte-for-byte names, as every other table compares them.
SET @tu_collation = IF(VERSION() LIKE '%MariaDB%', 'utf8mb4_nopad_bin', 'utf8mb4_0900_bin');
SET @tu_sql = CONCAT('ALTER TABLE usage_webhooks CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @tu_collation);
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;
SET @tu_sql = CONCAT('ALTER TABLE usage_webhook_outbox CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @tu_collation);
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;
