-- Alert rules by name; `definition` is the rule as JSON (the crate's `alert::Rule`).
CREATE TABLE usage_alert_rules (
    name VARCHAR(128) NOT NULL PRIMARY KEY,
    definition TEXT NOT NULL,
    updated_at_us BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Every time a rule started or stopped firing, numbered per rule: the last one says
-- whether it fires now. Two evaluators that see the same crossing write the same
-- (rule, seq); the key lets only the first through. `detail` is the event as JSON.
CREATE TABLE usage_alert_events (
    rule VARCHAR(128) NOT NULL,
    seq BIGINT NOT NULL,
    at_us BIGINT NOT NULL,
    kind VARCHAR(16) NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (rule, seq),
    INDEX usage_alert_events_time (at_us)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Byte-for-byte names, as every other table compares them.
SET @tu_collation = IF(VERSION() LIKE '%MariaDB%', 'utf8mb4_nopad_bin', 'utf8mb4_0900_bin');
SET @tu_sql = CONCAT('ALTER TABLE usage_alert_rules CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @tu_collation);
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;
SET @tu_sql = CONCAT('ALTER TABLE usage_alert_events CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @tu_collation);
PREPARE tu_convert FROM @tu_sql;
EXECUTE tu_convert;
DEALLOCATE PREPARE tu_convert;
