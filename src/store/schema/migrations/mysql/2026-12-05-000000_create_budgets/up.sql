-- Budgets by name; `definition` is the budget as JSON (the crate's `alert::Budget`),
-- checked by the crate before it is written. Times are microseconds since the Unix epoch.
CREATE TABLE usage_budgets (
    name VARCHAR(128) NOT NULL PRIMARY KEY,
    definition TEXT NOT NULL,
    updated_at_us BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Byte-for-byte names, as every other table compares them (see the migration that
-- moved them to a NO PAD binary collation).
SET @tu_collation = IF(VERSION() LIKE '%MariaDB%', 'utf8mb4_nopad_bin', 'utf8mb4_0900_bin');
SET @tu_sql = CONCAT('ALTER TABLE usage_budgets CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @tu_collation);
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;
