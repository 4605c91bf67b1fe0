"""Request bodies sent as YAML (a policy spec as a person writes it), read as safely as JSON.

YAML can say much more than JSON. What it may say here is JSON's data model written as YAML:
mappings, sequences, strings, numbers, booleans and null. So, before anything is built from
the document, its events are read once and refused (400 naming ``body``, with the line and
column) when they hold an anchor or an alias, which is how a small document expands into a
huge one (the "billion laughs"), or nest deeper than ``MAX_DEPTH``. Then PyYAML's safe loader
builds it, with dates left as strings; a tag that builds anything JSON has no value for
(``!!binary``, ``!!set``) is refused too.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import yaml

from functions.common.errors import BadRequestError

MAX_DEPTH = 64

# The C parser when PyYAML has libyaml (its wheels do), which reads a 1 MB body in a fraction
# of a second; the pure Python one otherwise.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _JsonLikeLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """The safe loader without YAML 1.1's implicit timestamps: a date stays a string."""

    yaml_implicit_resolvers: ClassVar[dict[Any, list[tuple[str, Any]]]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
    }


def _where(mark: Any) -> str:
    if mark is None:
        return ""
    return f" at line {mark.line + 1}, column {mark.column + 1}"


def _refuse(detail: str, mark: Any = None) -> BadRequestError:
    return BadRequestError(f"body: {detail}{_where(mark)}", field="body")


def _check_events(text: str) -> None:
    """Refuse anchors, aliases and deep nesting before anything is built from ``text``."""
    depth = 0
    for event in yaml.parse(text, Loader=_JsonLikeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _refuse("YAML anchors and aliases (& and *) are not accepted", event.start_mark)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _refuse(f"YAML nests deeper than {MAX_DEPTH} levels", event.start_mark)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def parse_yaml_object(body: str | bytes) -> dict[str, Any]:
    """The mapping a YAML body holds, as JSON would give it; ``BadRequestError`` naming
    ``body`` (with the parser's line and column) for anything else.

    >>> parse_yaml_object("name: explore\\nexploration: {budget: 0.2}\\n")
    {'name': 'explore', 'exploration': {'budget': 0.2}}
    >>> parse_yaml_object("a: &x [1]\\nb: *x\\n")
    Traceback (most recent call last):
    ...
    functions.common.errors.BadRequestError: body: YAML anchors and aliases (& and *) are not
    accepted at line 1, column 4
    """
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        _check_events(text)
        data = yaml.load(text, Loader=_JsonLikeLoader)
    except UnicodeDecodeError as exc:
        raise _refuse("not valid UTF-8 text") from exc
    except yaml.MarkedYAMLError as exc:
        problem = ", ".join(part for part in (exc.context, exc.problem) if part)
        raise _refuse(f"not valid YAML: {problem or exc}", exc.problem_mark) from exc
    except yaml.YAMLError as exc:
        raise _refuse(f"not valid YAML: {exc}") from exc
    except ValueError as exc:  # an integer longer than Python converts (4,300 digits)
        raise _refuse(f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise _refuse(f"must be a YAML mapping (a policy spec), not {kind}")
    try:
        # What JSON would have parsed: string keys, no bytes, sets or other tagged values.
        parsed: dict[str, Any] = json.loads(json.dumps(data))
    except (TypeError, ValueError) as exc:
        raise _refuse(f"holds a value JSON cannot: {exc}") from exc
    return parsed
