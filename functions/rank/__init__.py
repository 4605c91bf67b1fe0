"""The rank function."""
