-- One heavy user's usage without their raw rows: sums per user, UTC hour, service and
-- model, and latency histograms per user and UTC day (one row per bucket). When a 7-day
-- block is sealed, the users with enough records in it get these rows, built from the
-- records, and `detailed` = 1 in their `usage_user_7d` row; later records of theirs in
-- the block are added. Readers take every other user's and block's records from
-- `usage_records`. Missing names are stored as '' (key columns cannot be NULL).
CREATE TABLE usage_user_hours (
    user_id TEXT NOT NULL,
    slot BIGINT NOT NULL,
    service TEXT NOT NULL,
    model TEXT NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    tokens_in BIGINT NOT NULL,
    tokens_out BIGINT NOT NULL,
    tokens_cached BIGINT NOT NULL,
    cost_micros BIGINT NOT NULL,
    response_bytes BIGINT NOT NULL,
    duration_sum_us BIGINT NOT NULL,
    ttfb_sum_us BIGINT NOT NULL,
    ttfb_count BIGINT NOT NULL,
    unpriced BIGINT NOT NULL,
    PRIMARY KEY (user_id, slot, service, model)
) WITHOUT ROWID;

-- `kind` 1 counts latencies, 2 times to first byte; `bucket` is the histogram's.
CREATE TABLE usage_user_hist (
    user_id TEXT NOT NULL,
    slot BIGINT NOT NULL,
    kind SMALLINT NOT NULL,
    bucket INTEGER NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (user_id, slot, kind, bucket)
) WITHOUT ROWID;

-- Blocks sealed until now have no such rows: their records are read raw until
-- `rebuild_rollups` runs.
ALTER TABLE usage_user_7d ADD COLUMN detailed SMALLINT NOT NULL DEFAULT 0;
