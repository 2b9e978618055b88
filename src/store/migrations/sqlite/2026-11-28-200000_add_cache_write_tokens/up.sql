-- Input tokens written to a prompt cache (part of tokens_in, like tokens_cached_in).
ALTER TABLE usage_records ADD COLUMN tokens_cache_write_in BIGINT NOT NULL DEFAULT 0;
