-- The 7-day blocks of the per-user sums (`started_at_us` divided by 604,800,000,000,
-- rounded down) that hold records stored without their rollups (by a bulk import, or
-- as a deferred batch of late records), whose rollups are still to be rebuilt from them.
-- A block is added in the transaction that stores such records, and taken off in the one
-- that rebuilds its rollups: after a crash, the next import, settle or `connect`
-- finishes what is listed.
CREATE TABLE usage_pending_blocks (
    block BIGINT NOT NULL PRIMARY KEY
);
