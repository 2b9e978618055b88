-- Records stored without their rollups (by a bulk import, or as a deferred batch of
-- records spread thin over time), waiting for the rebuild of their 7-day block
-- (`block`, as in `usage_pending_blocks`, which lists it in the same transaction). They
-- are appended as they come, in no order and with no key; the rebuild moves a block's
-- rows into `usage_records` in time order (a record stored already is skipped there) and
-- replays them into the rollups. The columns are those of `usage_records`, with the same
-- types: a later migration that adds a column there adds it here too.
-- The collation is the binary NO PAD one of every table (see the 2026-12-04 migration).
CREATE TABLE usage_pending_records (
    block BIGINT NOT NULL,
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
    tokens_cache_write_in BIGINT NOT NULL,
    cost_micros BIGINT,
    metadata LONGTEXT,
    requested_model VARCHAR(128),
    unpriced SMALLINT NOT NULL,
    INDEX usage_pending_records_block (block)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

SET @tu_collation = IF(VERSION() LIKE '%MariaDB%', 'utf8mb4_nopad_bin', 'utf8mb4_0900_bin');
SET @tu_sql = CONCAT('ALTER TABLE usage_pending_records CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @tu_collation);
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;
