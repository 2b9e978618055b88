DROP TABLE usage_user_blocks;
