"""Domain errors of the core. Each names the offending field so callers can answer 4xx."""

from __future__ import annotations


class SerendipError(Exception):
    """Base class of every error the core raises on purpose."""


class FieldError(SerendipError, ValueError):
    """Input rejected because of one named field.

    >>> str(FieldError("context.user.age", "must be finite"))
    'context.user.age: must be finite'
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class FeatureError(FieldError):
    """A context or item feature that cannot be turned into a VW feature."""


class SpecError(FieldError):
    """A policy spec that fails validation."""


class ModelError(SerendipError):
    """A model blob that cannot be loaded (corrupt, wrong format or failed checksum)."""
