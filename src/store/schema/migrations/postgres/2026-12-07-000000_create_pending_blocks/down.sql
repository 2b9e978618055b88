DROP TABLE usage_pending_blocks;
