DROP TABLE usage_alert_events;
DROP TABLE usage_alert_rules;
