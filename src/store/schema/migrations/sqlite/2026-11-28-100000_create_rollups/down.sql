DROP TABLE usage_totals_15m;
DROP TABLE usage_user_7d;
DROP TABLE usage_user_1d;
DROP TABLE usage_rollup_1d;
DROP TABLE usage_rollup_15m;
