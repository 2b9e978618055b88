DROP TABLE usage_retention;
