"""Personalizer's feature lists -> one Serendip feature object.

Personalizer takes ``contextFeatures`` and each action's ``features`` as lists of JSON objects
("a dictionary of dictionaries"), and makes every top-level key a namespace. Serendip takes one
object and also makes every top-level key of the context a namespace (``C<key>``,
``bandit.serve.features``), so the lists merge into one object, key by key. A key that comes
again is merged rather than lost: two objects merge recursively, anything else becomes the list
of the values given (a list of strings is a set of categorical features).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bandit.errors import FieldError


def merge_feature_list(items: Sequence[Any] | None, field: str) -> dict[str, Any]:
    """One feature object from Personalizer's list of objects; ``FieldError`` on a non-object.

    >>> merge_feature_list([{"user": {"tier": "gold"}}, {"device": {"mobile": True}}], "c")
    {'user': {'tier': 'gold'}, 'device': {'mobile': True}}
    >>> merge_feature_list([{"t": "a"}, {"t": "b"}, {"u": {"x": 1}}, {"u": {"y": 2}}], "c")
    {'t': ['a', 'b'], 'u': {'x': 1, 'y': 2}}
    >>> merge_feature_list([{"a": 1}, 3], "contextFeatures")
    Traceback (most recent call last):
    ...
    bandit.errors.FieldError: contextFeatures[1]: must be a JSON object of features
    """
    merged: dict[str, Any] = {}
    for index, item in enumerate(items or ()):
        if item is None:
            continue
        if not isinstance(item, dict):
            raise FieldError(f"{field}[{index}]", "must be a JSON object of features")
        _merge_into(merged, item)
    plain: dict[str, Any] = _plain(merged)
    return plain


def _plain(value: Any) -> Any:
    """``value`` with every merged list a plain list again (and the merged objects copied)."""
    if isinstance(value, _Merged):
        return [_plain(inner) for inner in value]
    if isinstance(value, dict):
        return {key: _plain(inner) for key, inner in value.items()}
    return value


def _merge_into(target: dict[str, Any], source: dict[str, Any]) -> None:
    for key, value in source.items():
        if key not in target:
            target[key] = value
            continue
        kept = target[key]
        if isinstance(kept, dict) and isinstance(value, dict):
            combined = dict(kept)
            _merge_into(combined, value)
            target[key] = combined
        elif isinstance(kept, list) and getattr(kept, "_merged", False):
            kept.append(value)
        else:
            target[key] = _Merged([kept, value])


class _Merged(list[Any]):
    """The values of a key given more than once (more may follow)."""

    _merged = True
