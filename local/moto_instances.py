"""moto's models for the local stack's server, tracked weakly: a deleted item is gone from memory.

Every moto model class (``BaseModel``: a DynamoDB ``Item``, an SQS ``Message``, an S3 ``FakeKey``)
appends every instance it ever creates to a class-wide list, ``instances_tracked``, for moto's
dashboard (``/moto-api/data.json``) and its reset. Nothing takes them out in a running server, so
every item version the stack ever wrote stayed in memory: each put or update makes a new
``Item``, and a deep copy (a transaction's saved items; moto's own transactions copied whole
tables) makes one per item copied. That was the local stack's memory growth: about 25-40 KB a
rank + reward round while the data it kept was about 2 KB. Here the register holds its instances
by weak reference, so the dashboard and moto's reset still see every live instance.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from moto.core.common_models import BaseModel


class WeakRegister:
    """What moto does with ``instances_tracked`` (append, iterate), holding no instance alive."""

    def __init__(self, instances: Iterable[Any] = ()) -> None:
        self._refs: dict[int, weakref.ref[Any]] = {}
        for instance in instances:
            self.append(instance)

    def append(self, instance: Any) -> None:
        """Register ``instance`` until it is garbage collected."""
        key, refs = id(instance), self._refs

        def forget(_: weakref.ref[Any]) -> None:
            refs.pop(key, None)

        with contextlib.suppress(TypeError):  # a model without weak references: not registered
            refs[key] = weakref.ref(instance, forget)

    def __iter__(self) -> Iterator[Any]:
        return iter([obj for ref in list(self._refs.values()) if (obj := ref()) is not None])

    def __len__(self) -> int:
        return len(self._refs)


def tracked_weakly(cls: type[BaseModel], *args: Any, **kwargs: Any) -> BaseModel:
    """``BaseModel.__new__``, registering the instance weakly."""
    instance = object.__new__(cls)
    tracked = cls.__dict__.get("instances_tracked")
    if not isinstance(tracked, WeakRegister):
        # moto's own list (at import, or after moto's reset set it back to a list)
        tracked = WeakRegister(tracked or ())
        cls.instances_tracked = tracked  # type: ignore[attr-defined]
    tracked.append(instance)
    return instance


def install() -> None:
    """Track moto's model instances weakly in this process (the local stack's server)."""
    BaseModel.__new__ = staticmethod(tracked_weakly)  # type: ignore[method-assign]
