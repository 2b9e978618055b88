-- One row per access to the analytics API: who asked what, and what they were told.
-- Times are microseconds since the Unix epoch (UTC).
CREATE TABLE usage_audit (
    id BLOB NOT NULL,
    at_us BIGINT NOT NULL,
    subject TEXT,
    role TEXT,
    method TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    query TEXT,
    status SMALLINT,
    outcome TEXT NOT NULL,
    duration_us BIGINT NOT NULL,
    reason TEXT,
    PRIMARY KEY (at_us, id)
) WITHOUT ROWID;

CREATE INDEX usage_audit_subject_time ON usage_audit (subject, at_us);
