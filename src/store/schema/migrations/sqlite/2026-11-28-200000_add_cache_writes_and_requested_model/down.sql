ALTER TABLE usage_records DROP COLUMN unpriced;
ALTER TABLE usage_records DROP COLUMN requested_model;
ALTER TABLE usage_records DROP COLUMN tokens_cache_write_in;
