"""The rewards function."""
