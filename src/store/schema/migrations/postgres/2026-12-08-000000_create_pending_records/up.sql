-- Records stored without their rollups (by a bulk import, or as a deferred batch of
-- records spread thin over time), waiting for the rebuild of their 7-day block
-- (`block`, as in `usage_pending_blocks`, which lists it in the same transaction). They
-- are appended as they come, in no order and with no key; the rebuild moves a block's
-- rows into `usage_records` in time order (a record stored already is skipped there) and
-- replays them into the rollups. The columns are those of `usage_records`, with the same
-- types: a later migration that adds a column there adds it here too.
CREATE TABLE usage_pending_records (
    block BIGINT NOT NULL,
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
    tokens_cache_write_in BIGINT NOT NULL,
    cost_micros BIGINT,
    metadata JSONB,
    requested_model TEXT,
    unpriced SMALLINT NOT NULL
);

CREATE INDEX usage_pending_records_block ON usage_pending_records (block);
