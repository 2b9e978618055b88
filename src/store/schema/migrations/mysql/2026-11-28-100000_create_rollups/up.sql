-- Sums and latency histograms per time slot, kept by the writer in the transaction that
-- inserts a batch. `slot` counts slots of the table's width since the Unix epoch (UTC).
-- Missing names are stored as '' (key columns cannot be NULL). Histograms are
-- `bucket:count` pairs, comma-separated (see the crate's query module).

-- 15-minute slots.
CREATE TABLE usage_rollup_15m (
    slot BIGINT NOT NULL,
    service VARCHAR(128) NOT NULL,
    model VARCHAR(128) NOT NULL,
    provider VARCHAR(64) NOT NULL,
    outcome VARCHAR(16) NOT NULL,
    status_class INTEGER NOT NULL,
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
    latency_hist MEDIUMTEXT NOT NULL,
    ttfb_hist MEDIUMTEXT NOT NULL,
    PRIMARY KEY (slot, service, model, provider, outcome, status_class)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- UTC days.
CREATE TABLE usage_rollup_1d (
    slot BIGINT NOT NULL,
    service VARCHAR(128) NOT NULL,
    model VARCHAR(128) NOT NULL,
    provider VARCHAR(64) NOT NULL,
    outcome VARCHAR(16) NOT NULL,
    status_class INTEGER NOT NULL,
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
    latency_hist MEDIUMTEXT NOT NULL,
    ttfb_hist MEDIUMTEXT NOT NULL,
    PRIMARY KEY (slot, service, model, provider, outcome, status_class)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Per user and UTC day: top users and unique users without scanning records.
CREATE TABLE usage_user_1d (
    slot BIGINT NOT NULL,
    user_id VARCHAR(256) NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    tokens_in BIGINT NOT NULL,
    tokens_out BIGINT NOT NULL,
    tokens_cached BIGINT NOT NULL,
    cost_micros BIGINT NOT NULL,
    PRIMARY KEY (slot, user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Per user and 7-day block since the epoch: the whole weeks of a long range.
CREATE TABLE usage_user_7d (
    slot BIGINT NOT NULL,
    user_id VARCHAR(256) NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    tokens_in BIGINT NOT NULL,
    tokens_out BIGINT NOT NULL,
    tokens_cached BIGINT NOT NULL,
    cost_micros BIGINT NOT NULL,
    PRIMARY KEY (slot, user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Per 15-minute slot, every record: series and peak hours in any zone when only the
-- time range filters.
CREATE TABLE usage_totals_15m (
    slot BIGINT NOT NULL,
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
    PRIMARY KEY (slot)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
