-- Back to the padding collation of the first migrations.

SET @tu_sql = CONCAT('ALTER TABLE usage_records CONVERT TO CHARACTER SET utf8mb4 COLLATE ', 'utf8mb4_bin');
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;

SET @tu_sql = CONCAT('ALTER TABLE usage_rollup_15m CONVERT TO CHARACTER SET utf8mb4 COLLATE ', 'utf8mb4_bin');
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;

SET @tu_sql = CONCAT('ALTER TABLE usage_rollup_1d CONVERT TO CHARACTER SET utf8mb4 COLLATE ', 'utf8mb4_bin');
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;

SET @tu_sql = CONCAT('ALTER TABLE usage_user_1d CONVERT TO CHARACTER SET utf8mb4 COLLATE ', 'utf8mb4_bin');
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;

SET @tu_sql = CONCAT('ALTER TABLE usage_user_7d CONVERT TO CHARACTER SET utf8mb4 COLLATE ', 'utf8mb4_bin');
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;

SET @tu_sql = CONCAT('ALTER TABLE usage_totals_15m CONVERT TO CHARACTER SET utf8mb4 COLLATE ', 'utf8mb4_bin');
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;

SET @tu_sql = CONCAT('ALTER TABLE usage_audit CONVERT TO CHARACTER SET utf8mb4 COLLATE ', 'utf8mb4_bin');
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;

SET @tu_sql = CONCAT('ALTER TABLE usage_user_blocks CONVERT TO CHARACTER SET utf8mb4 COLLATE ', 'utf8mb4_bin');
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;

SET @tu_sql = CONCAT('ALTER TABLE usage_user_hours CONVERT TO CHARACTER SET utf8mb4 COLLATE ', 'utf8mb4_bin');
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;

SET @tu_sql = CONCAT('ALTER TABLE usage_user_hist CONVERT TO CHARACTER SET utf8mb4 COLLATE ', 'utf8mb4_bin');
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;
