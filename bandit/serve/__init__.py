"""Serving: featurizing, VW scoring, slate sampling, exploration budgets, cold start, work cost."""
