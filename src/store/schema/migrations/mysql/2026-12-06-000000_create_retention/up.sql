-- How far retention has cut, in microseconds since the Unix epoch (UTC), always at the
-- start of a 7-day block of the per-user sums: the records start at `raw_before_us` or
-- later (older ones were removed; their sums stay in the rollups), and the rollups hold
-- nothing before `rollups_before_us`. NULL: nothing was removed. One row, id 1; the
-- horizons only move forward.
CREATE TABLE usage_retention (
    id SMALLINT NOT NULL PRIMARY KEY,
    raw_before_us BIGINT,
    rollups_before_us BIGINT
) ENGINE = InnoDB;

INSERT INTO usage_retention (id, raw_before_us, rollups_before_us) VALUES (1, NULL, NULL);
