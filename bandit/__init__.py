"""Serendip's pure core: featurizing, VW scoring, slate sampling, exploration budgets,
cold start, rewards, decision logs and simulation. Imports nothing from AWS."""
