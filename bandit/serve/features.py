"""JSON features -> Vowpal Wabbit text examples, with no way to inject VW syntax.

Rules:
- Each top-level context key becomes its own VW namespace, named ``C<key>``; item features live
  in ``I`` (id, category, creator and scalar features) and ``I<key>`` for each top-level dict.
  Interactions such as ``-q CI`` therefore cross every context namespace with every item one.
- Strings are categorical (``name=value``, weight 1); numbers are weighted (``name:value``),
  magnitudes below ``MIN_ABS_VALUE`` are written as 0 (VW would misread some as infinity);
  booleans are categorical (``name=true``); lists of strings or booleans are sets of categorical
  features; numbers, dicts and lists inside lists are indexed (``name.0``); nested dicts flatten
  with ``.``; ``None`` is skipped.
- Every name and value is percent-encoded outside ``[A-Za-z0-9_/+-]``, so no input can produce
  ``|``, ``:``, whitespace, newlines, NUL or any non-ASCII byte in the example, and different
  inputs never collide.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from bandit.domain import Candidate
from bandit.errors import FeatureError

CONTEXT_PREFIX = "C"
ITEM_PREFIX = "I"
MAX_DEPTH = 8
MAX_STRING_LENGTH = 512
MAX_FEATURES_PER_EXAMPLE = 4096
MAX_ABS_VALUE = 1e30
MIN_ABS_VALUE = 1e-30

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_/+-")
_ALL_SAFE = re.compile(r"[A-Za-z0-9_/+-]+").fullmatch
_EMPTY = "~"

Namespace = tuple[str, list[str]]


def escape(text: str) -> str:
    """Encode ``text`` as a VW-safe token: injective, ASCII, no separators.

    >>> escape("sci fi|x:1")
    'sci%20fi%7Cx%3A1'
    >>> escape("")
    '~'
    """
    if not text:
        return _EMPTY
    if _ALL_SAFE(text):
        return text
    out: list[str] = []
    for ch in text:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"%{byte:02X}" for byte in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


def _number(value: float, field: str) -> str:
    try:
        number = float(value)
    except OverflowError as exc:
        raise FeatureError(field, "number is too large") from exc
    if not math.isfinite(number):
        raise FeatureError(field, "must be a finite number (NaN and infinity are rejected)")
    if abs(number) > MAX_ABS_VALUE:
        raise FeatureError(field, f"magnitude must be at most {MAX_ABS_VALUE:g}")
    if abs(number) < MIN_ABS_VALUE:
        # VW's text parser reads some tiny numbers (e.g. 1e-150) as infinity, poisoning the model.
        return "0.0"
    return repr(number)


def _string(value: str, field: str) -> str:
    if len(value) > MAX_STRING_LENGTH:
        raise FeatureError(field, f"string longer than {MAX_STRING_LENGTH} characters")
    return escape(value)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


class _Flattener:
    """Collects the features of one example, counting them against the cap."""

    def __init__(self) -> None:
        self.count = 0

    def _emit(self, out: list[str], token: str, field: str) -> None:
        self.count += 1
        if self.count > MAX_FEATURES_PER_EXAMPLE:
            raise FeatureError(field, f"more than {MAX_FEATURES_PER_EXAMPLE} features")
        out.append(token)

    def flatten(self, value: Any, name: str, field: str, depth: int, out: list[str]) -> None:
        """Append the VW feature tokens of ``value`` under feature ``name`` to ``out``."""
        if depth > MAX_DEPTH:
            raise FeatureError(field, f"nested deeper than {MAX_DEPTH} levels")
        if value is None:
            return
        if isinstance(value, bool):
            self._emit(out, f"{name}={'true' if value else 'false'}", field)
        elif isinstance(value, str):
            self._emit(out, f"{name}={_string(value, field)}", field)
        elif isinstance(value, int | float):
            self._emit(out, f"{name}:{_number(value, field)}", field)
        elif isinstance(value, Mapping):
            for key, inner in value.items():
                if not isinstance(key, str):
                    raise FeatureError(field, "object keys must be strings")
                child = _join(name, _string(key, f"{field}.{key}"))
                self.flatten(inner, child, f"{field}.{key}", depth + 1, out)
        elif isinstance(value, list | tuple):
            for index, inner in enumerate(value):
                inner_field = f"{field}[{index}]"
                if isinstance(inner, str | bool):
                    self.flatten(inner, name, inner_field, depth + 1, out)
                else:
                    self.flatten(inner, _join(name, str(index)), inner_field, depth + 1, out)
        else:
            raise FeatureError(field, f"unsupported type {type(value).__name__}")


def context_namespaces(context: Mapping[str, Any], field: str = "context") -> list[Namespace]:
    """Namespaces of a context: one per top-level key that yields at least one feature.

    >>> context_namespaces({"user": {"age": 31, "tags": ["a", "b"]}, "device": "ios"})
    [('Cuser', ['age:31.0', 'tags=a', 'tags=b']), ('Cdevice', ['device=ios'])]
    """
    if not isinstance(context, Mapping):
        raise FeatureError(field, "must be an object")
    flattener = _Flattener()
    namespaces: list[Namespace] = []
    for key, value in context.items():
        if not isinstance(key, str):
            raise FeatureError(field, "object keys must be strings")
        name = _string(key, f"{field}.{key}")
        features: list[str] = []
        if isinstance(value, Mapping):
            flattener.flatten(value, "", f"{field}.{key}", 1, features)
        else:
            flattener.flatten(value, name, f"{field}.{key}", 1, features)
        if features:
            namespaces.append((CONTEXT_PREFIX + name, features))
    return namespaces


def item_namespaces(candidate: Candidate, field: str = "candidate") -> list[Namespace]:
    """Namespaces of one candidate: ``I`` with its identity and scalars, ``I<key>`` per dict."""
    flattener = _Flattener()
    base: list[str] = []
    flattener.flatten(candidate.id, "id", f"{field}.id", 1, base)
    flattener.flatten(candidate.category, "category", f"{field}.category", 1, base)
    flattener.flatten(candidate.creator, "creator", f"{field}.creator", 1, base)
    extra: list[Namespace] = []
    features = candidate.features
    if not isinstance(features, Mapping):
        raise FeatureError(f"{field}.features", "must be an object")
    for key, value in features.items():
        if not isinstance(key, str):
            raise FeatureError(f"{field}.features", "object keys must be strings")
        name = _string(key, f"{field}.features.{key}")
        path = f"{field}.features.{key}"
        if isinstance(value, Mapping):
            tokens: list[str] = []
            flattener.flatten(value, "", path, 2, tokens)
            if tokens:
                extra.append((ITEM_PREFIX + name, tokens))
        else:
            flattener.flatten(value, name, path, 2, base)
    return [(ITEM_PREFIX, base), *extra]


def render(namespaces: Iterable[Namespace]) -> str:
    """Render namespaces as the feature part of a VW text line."""
    return " ".join(f"|{name} {' '.join(tokens)}" for name, tokens in namespaces)


def shared_line(context: Mapping[str, Any], extra: Namespace | None = None) -> str:
    """The ``shared`` line of a cb_adf example for ``context`` (and an ``extra`` namespace,
    such as the user's history, ``bandit.learn.history``)."""
    namespaces = context_namespaces(context)
    if extra is not None:
        namespaces.append(extra)
    body = render(namespaces)
    return f"shared {body}" if body else "shared |"


def action_line(candidate: Candidate, field: str = "candidate") -> str:
    """The unlabeled action line of one candidate (starts with ``|``)."""
    return render(item_namespaces(candidate, field))


def action_lines(candidates: Sequence[Candidate]) -> list[str]:
    """Unlabeled action lines of all candidates, with errors naming ``candidates[i]``."""
    return [action_line(c, f"candidates[{i}]") for i, c in enumerate(candidates)]


class ActionLines:
    """Action lines of recently seen candidates, so a catalog's items are featurized once.

    Keyed by everything a line depends on (id, category, creator and the ``repr`` of the
    features, which is exact for JSON values); at most ``capacity`` lines are kept, the oldest
    dropped first. Only lines that featurized without error are kept, so a bad candidate fails
    every time it is sent.

    >>> lines = ActionLines(capacity=2)
    >>> lines([Candidate("a", {"x": 1})]) == action_lines([Candidate("a", {"x": 1})])
    True
    >>> len(lines), lines.hits
    (1, 0)
    >>> _ = lines([Candidate("a", {"x": 1}), Candidate("b"), Candidate("c")])
    >>> len(lines), lines.hits
    (2, 1)
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self.hits = 0
        self._lines: dict[tuple[str, str | None, str | None, str], str] = {}

    def __len__(self) -> int:
        return len(self._lines)

    def __call__(self, candidates: Sequence[Candidate]) -> list[str]:
        """Action lines of ``candidates``, as ``action_lines`` would write them."""
        cached = self._lines
        found = cached.get
        out = [found((c.id, c.category, c.creator, repr(c.features))) for c in candidates]
        if None not in out:
            self.hits += len(out)
            return cast(list[str], out)
        lines: list[str] = []
        for i, (candidate, hit) in enumerate(zip(candidates, out, strict=True)):
            if hit is None:
                line = action_line(candidate, f"candidates[{i}]")
                if len(cached) >= self.capacity:
                    cached.pop(next(iter(cached)), None)
                features = repr(candidate.features)
                cached[(candidate.id, candidate.category, candidate.creator, features)] = line
            else:
                line = hit
                self.hits += 1
            lines.append(line)
        return lines


def labeled(line: str, cost: float, probability: float) -> str:
    """Prefix an action line with a cb label ``0:cost:probability``.

    A cost or probability of magnitude below ``MIN_ABS_VALUE`` is written as 0 (the cost) or
    ``MIN_ABS_VALUE`` (the probability): VW's text parser reads some tiny numbers as infinity.

    >>> labeled("|I id=x", -1e-150, 0.5)
    '0:0.0:0.5 |I id=x'
    """
    cost_text = "0.0" if abs(cost) < MIN_ABS_VALUE else repr(cost)
    return f"0:{cost_text}:{max(probability, MIN_ABS_VALUE)!r} {line}"
