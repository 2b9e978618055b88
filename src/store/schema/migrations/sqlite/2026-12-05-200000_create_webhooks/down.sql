DROP TABLE usage_webhook_outbox;
DROP TABLE usage_webhooks;
