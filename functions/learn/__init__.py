"""The learn function."""
