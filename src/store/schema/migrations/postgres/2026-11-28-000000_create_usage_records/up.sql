-- One row per usage record. Times are microseconds since the Unix epoch (UTC); the key
-- starts with the time, so the table can become a time-partitioned one.
CREATE TABLE usage_records (
    id BYTEA NOT NULL,
    started_at_us BIGINT NOT NULL,
    method TEXT,
    route TEXT,
    status SMALLINT,
    outcome TEXT NOT NULL,
    ttfb_us BIGINT,
    duration_us BIGINT NOT NULL,
    request_bytes BIGINT,
    response_bytes BIGINT NOT NULL,
    user_id TEXT,
    service TEXT,
    model TEXT,
    provider TEXT,
    client TEXT NOT NULL,
    country TEXT,
    tokens_in BIGINT NOT NULL,
    tokens_out BIGINT NOT NULL,
    tokens_cached_in BIGINT NOT NULL,
    cost_micros BIGINT,
    metadata JSONB,
    PRIMARY KEY (started_at_us, id)
);

CREATE INDEX usage_records_user_time ON usage_records (user_id, started_at_us);
CREATE INDEX usage_records_service_time ON usage_records (service, started_at_us);
CREATE INDEX usage_records_model_time ON usage_records (model, started_at_us);
