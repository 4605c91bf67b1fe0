"""DynamoDB item values serialized by moto's local server without its per-member lookups.

moto serializes every response through the service's botocore shapes. A DynamoDB
``AttributeValue`` is a structure of ten possible members (``S``, ``N``, ``B``, ``M``, ``L``...)
of which a value holds one, and moto looks every one of the ten up (trying several spellings of
each) for every attribute of every item: a ``BatchGetItem`` of 30 small items took about 8 ms,
nearly all of it there, and in the local stack those calls hold the DynamoDB lock that every
other table call waits on. Here a value that is a plain dict naming only ``AttributeValue``
members is serialized member by member as it stands: each member present goes through moto's
own serialization of its shape (strings, numbers, blobs, booleans, nested maps and lists), so
the response is the same (``tests/functional/test_moto_items.py`` compares the two on generated
items); anything else takes moto's general path.
"""

from __future__ import annotations

from typing import Any

from moto.core.serialize import BaseJSONSerializer

ATTRIBUTE_VALUE = "AttributeValue"
_general = BaseJSONSerializer._serialize_type_structure


def _serialize_type_structure(
    self: BaseJSONSerializer, serialized: Any, value: Any, shape: Any, key: str
) -> None:
    """moto's structure serialization, with a direct path for DynamoDB attribute values."""
    if (
        key
        and shape.name == ATTRIBUTE_VALUE
        and type(value) is dict
        and value.keys() <= shape.members.keys()
        and self.operation_model.service_model.endpoint_prefix == "dynamodb"
    ):
        members = shape.members
        wrapper: Any = self.MAP_TYPE()
        for member_key, member_value in value.items():
            if member_value is not None:
                self._serialize(wrapper, member_value, members[member_key], member_key)
        self._default_serialize(serialized, wrapper, shape, key)
        return
    _general(self, serialized, value, shape, key)


def install() -> None:
    """Serialize DynamoDB attribute values directly in this process's moto."""
    BaseJSONSerializer._serialize_type_structure = _serialize_type_structure  # type: ignore[method-assign]


def uninstall() -> None:
    """moto's own serialization again (tests compare the two)."""
    BaseJSONSerializer._serialize_type_structure = _general  # type: ignore[method-assign]
