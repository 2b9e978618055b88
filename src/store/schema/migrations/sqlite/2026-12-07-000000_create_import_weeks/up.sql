-- The 7-day blocks of the per-user sums (`started_at_us` divided by 604,800,000,000,
-- rounded down) that a bulk import stored records in and whose rollups are still to be
-- rebuilt from them. A block is added in the transaction that stores its records, and
-- taken off in the one that rebuilds its rollups: after a crash, the next import or the
-- next `connect` finishes what is listed.
CREATE TABLE usage_import_weeks (
    week BIGINT NOT NULL PRIMARY KEY
);
