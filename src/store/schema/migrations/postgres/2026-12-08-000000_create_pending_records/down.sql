DROP TABLE usage_pending_records;
