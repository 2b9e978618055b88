DROP TABLE usage_user_1d;
DROP TABLE usage_rollup_1d;
DROP TABLE usage_rollup_15m;
