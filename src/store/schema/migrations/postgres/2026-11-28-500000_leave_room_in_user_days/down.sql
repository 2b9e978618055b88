ALTER TABLE usage_user_1d RESET (fillfactor);
