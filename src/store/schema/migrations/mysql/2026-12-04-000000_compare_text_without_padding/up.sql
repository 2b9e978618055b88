-- `utf8mb4_bin` is a PAD SPACE collation: `=`, `GROUP BY` and keys ignore trailing
-- spaces, so 'alice' and 'alice ' were one user. Every table moves to a binary NO PAD
-- collation, which compares byte for byte as the other backends do: MariaDB's
-- `utf8mb4_nopad_bin` (10.2 and later), MySQL's `utf8mb4_0900_bin` (8.0 and later).
-- Tables created by later migrations must use the same statement.
SET @tu_collation = IF(VERSION() LIKE '%MariaDB%', 'utf8mb4_nopad_bin', 'utf8mb4_0900_bin');

SET @tu_sql = CONCAT('ALTER TABLE usage_records CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @tu_collation);
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;

SET @tu_sql = CONCAT('ALTER TABLE usage_rollup_15m CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @tu_collation);
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;

SET @tu_sql = CONCAT('ALTER TABLE usage_rollup_1d CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @tu_collation);
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;

SET @tu_sql = CONCAT('ALTER TABLE usage_user_1d CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @tu_collation);
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;

SET @tu_sql = CONCAT('ALTER TABLE usage_user_7d CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @tu_collation);
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;

SET @tu_sql = CONCAT('ALTER TABLE usage_totals_15m CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @tu_collation);
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;

SET @tu_sql = CONCAT('ALTER TABLE usage_audit CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @tu_collation);
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;

SET @tu_sql = CONCAT('ALTER TABLE usage_user_blocks CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @tu_collation);
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;

SET @tu_sql = CONCAT('ALTER TABLE usage_user_hours CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @tu_collation);
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;

SET @tu_sql = CONCAT('ALTER TABLE usage_user_hist CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @tu_collation);
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;

-- Rollup rows written under padding may hold two names as one. They are derived data:
-- emptied here, the store rebuilds them from the records once the migrations are done.
DELETE FROM usage_rollup_15m;
DELETE FROM usage_rollup_1d;
DELETE FROM usage_user_1d;
DELETE FROM usage_user_7d;
DELETE FROM usage_totals_15m;
DELETE FROM usage_user_blocks;
DELETE FROM usage_user_hours;
DELETE FROM usage_user_hist;
