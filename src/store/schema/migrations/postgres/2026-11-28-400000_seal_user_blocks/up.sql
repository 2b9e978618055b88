-- The 7-day blocks of the per-user sums. A block's rows in `usage_user_7d` are written
-- once, from its days in `usage_user_1d`, when a later block's first records arrive
-- (`sealed` = 1); until then readers sum its days. Writers lock a block's row while
-- they write its days, so a block is never sealed under a writer.
CREATE TABLE usage_user_blocks (
    block BIGINT NOT NULL PRIMARY KEY,
    sealed SMALLINT NOT NULL
);

-- Until now every block's sums were kept up to date: all of them are sealed.
INSERT INTO usage_user_blocks (block, sealed) SELECT DISTINCT slot, 1 FROM usage_user_7d;
