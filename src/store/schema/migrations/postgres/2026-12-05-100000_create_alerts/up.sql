-- Alert rules by name; `definition` is the rule as JSON (the crate's `alert::Rule`).
CREATE TABLE usage_alert_rules (
    name TEXT NOT NULL PRIMARY KEY,
    definition TEXT NOT NULL,
    updated_at_us BIGINT NOT NULL
);

-- Every time a rule started or stopped firing, numbered per rule: the last one says
-- whether it fires now. Two evaluators that see the same crossing write the same
-- (rule, seq); the key lets only the first through. `detail` is the event as JSON.
CREATE TABLE usage_alert_events (
    rule TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at_us BIGINT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (rule, seq)
);

CREATE INDEX usage_alert_events_time ON usage_alert_events (at_us);
