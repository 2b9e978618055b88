DROP TABLE usage_import_weeks;
