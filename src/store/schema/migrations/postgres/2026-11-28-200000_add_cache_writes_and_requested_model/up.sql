-- Input tokens written to a prompt cache (part of tokens_in, like tokens_cached_in).
ALTER TABLE usage_records ADD COLUMN tokens_cache_write_in BIGINT NOT NULL DEFAULT 0;
-- The model the request asked for; `model` is the one that answered.
ALTER TABLE usage_records ADD COLUMN requested_model TEXT;
-- 1 when no price was known for the record's model (its cost is 0, not a guess).
ALTER TABLE usage_records ADD COLUMN unpriced SMALLINT NOT NULL DEFAULT 0;
