DROP TABLE usage_audit;
