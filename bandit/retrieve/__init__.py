"""Retrieval for recommend: the catalog index (items, vector spaces, orders) and its sources."""
