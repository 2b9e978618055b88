DROP TABLE usage_user_hist;
DROP TABLE usage_user_hours;
ALTER TABLE usage_user_7d DROP COLUMN detailed;
