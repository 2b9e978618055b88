-- One row per usage record. Times are microseconds since the Unix epoch (UTC).
-- utf8mb4_bin pads trailing spaces; the 2026-12-04 migration moves every table to a
-- NO PAD binary collation so that text compares byte for byte, as on the other backends.
CREATE TABLE usage_records (
    id BINARY(16) NOT NULL,
    started_at_us BIGINT NOT NULL,
    method VARCHAR(16),
    route VARCHAR(512),
    status SMALLINT,
    outcome VARCHAR(16) NOT NULL,
    ttfb_us BIGINT,
    duration_us BIGINT NOT NULL,
    request_bytes BIGINT,
    response_bytes BIGINT NOT NULL,
    user_id VARCHAR(256),
    service VARCHAR(128),
    model VARCHAR(128),
    provider VARCHAR(64),
    client VARCHAR(16) NOT NULL,
    country VARCHAR(64),
    tokens_in BIGINT NOT NULL,
    tokens_out BIGINT NOT NULL,
    tokens_cached_in BIGINT NOT NULL,
    cost_micros BIGINT,
    metadata LONGTEXT,
    PRIMARY KEY (started_at_us, id),
    INDEX usage_records_user_time (user_id, started_at_us),
    INDEX usage_records_service_time (service, started_at_us),
    INDEX usage_records_model_time (model, started_at_us)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
