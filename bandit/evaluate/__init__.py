"""Evaluation: off-policy estimators, replay, business metrics."""
