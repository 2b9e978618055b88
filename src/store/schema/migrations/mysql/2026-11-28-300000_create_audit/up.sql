-- One row per access to the analytics API: who asked what, and what they were told.
-- Times are microseconds since the Unix epoch (UTC).
CREATE TABLE usage_audit (
    id BINARY(16) NOT NULL,
    at_us BIGINT NOT NULL,
    subject VARCHAR(256),
    role VARCHAR(32),
    method VARCHAR(16) NOT NULL,
    endpoint VARCHAR(256) NOT NULL,
    query VARCHAR(2048),
    status SMALLINT,
    outcome VARCHAR(16) NOT NULL,
    duration_us BIGINT NOT NULL,
    reason VARCHAR(512),
    PRIMARY KEY (at_us, id),
    INDEX usage_audit_subject_time (subject, at_us)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
