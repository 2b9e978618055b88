-- Budgets by name; `definition` is the budget as JSON (the crate's `alert::Budget`),
-- checked by the crate before it is written. Times are microseconds since the Unix epoch.
CREATE TABLE usage_budgets (
    name TEXT NOT NULL PRIMARY KEY,
    definition TEXT NOT NULL,
    updated_at_us BIGINT NOT NULL
);
