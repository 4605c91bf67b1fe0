"""Request bodies, path segments and query strings of the client's calls."""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

_YAML_SUFFIXES = (".yaml", ".yml")

PolicySource = Mapping[str, Any] | str | os.PathLike[str]


def encode(body: Any) -> bytes:
    """``body`` as UTF-8 JSON; ``ValueError`` for NaN or an infinity."""
    # NaN and Infinity are not JSON: refused here rather than sent for a 422.
    return json.dumps(body, ensure_ascii=False, allow_nan=False).encode()


def seg(value: str) -> str:
    """One path segment, percent-encoded (ids may hold any character)."""
    return urllib.parse.quote(value, safe="")


def query_string(values: Mapping[str, Any] | None) -> str:
    """``?a=1&b=x`` of the values that are not None (floats exactly), or ``""``.

    >>> query_string({"since": 1.5, "until": None, "next_token": "a b"})
    '?since=1.5&next_token=a%20b'
    """
    given = {name: _text(value) for name, value in (values or {}).items() if value is not None}
    # %20, not "+": not every gateway reads "+" in a query as a space
    encoded = urllib.parse.urlencode(given, quote_via=urllib.parse.quote)
    return "?" + encoded if encoded else ""


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def without_none(**fields: Any) -> dict[str, Any]:
    """The fields that were given (not None): the service applies its defaults to the rest."""
    return {name: value for name, value in fields.items() if value is not None}


def listed(values: Sequence[Any] | None) -> list[Any] | None:
    """A sequence as a list for JSON (None stays None)."""
    return None if values is None else list(values)


def chunks(values: list[Any], size: int) -> Iterator[list[Any]]:
    """``values`` in consecutive slices of at most ``size``."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def policy_body(spec: PolicySource) -> tuple[bytes, str]:
    """The body and media type of a policy spec given as a dict, a file path or text."""
    if isinstance(spec, Mapping):
        return encode(dict(spec)), "application/json"
    if isinstance(spec, str) and ("\n" in spec or not os.path.isfile(spec)):
        text = spec
        is_json = text.lstrip().startswith("{")
    else:
        file = Path(spec)
        text = file.read_text(encoding="utf-8")
        suffix = file.suffix.lower()
        is_json = suffix == ".json" or (
            suffix not in _YAML_SUFFIXES and text.lstrip().startswith("{")
        )
    return text.encode(), "application/json" if is_json else "application/yaml"
