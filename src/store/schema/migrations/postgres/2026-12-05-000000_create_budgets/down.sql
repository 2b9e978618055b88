DROP TABLE usage_budgets;
