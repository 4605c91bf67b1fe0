"""DynamoDB's own measure of an item, so that writes AWS would refuse are refused at the edge.

moto stores items of any size; DynamoDB refuses one over 400 KB (``MAX_ITEM_BYTES``), counted as
the UTF-8 length of every attribute name plus the size of every value: strings by their UTF-8
bytes, binaries by their raw bytes, numbers by about one byte per two significant digits plus
one (at most 21), booleans and nulls one byte, lists and maps 3 bytes plus 1 per element (map
keys count as names). The numbers' measure here rounds up, so it never under-counts.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

MAX_ITEM_BYTES = 400 * 1024  # DynamoDB's item limit
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024  # and a transaction's (aggregate of its items)
MAX_TRANSACTION_ITEMS = 100


def number_size(text: str) -> int:
    """Bytes of a number attribute (its text as DynamoDB's wire format carries it).

    >>> number_size("0"), number_size("1.5"), number_size("-123456789012345678901234567890")
    (2, 2, 16)
    """
    mantissa = text.lower().split("e", 1)[0]
    digits = mantissa.lstrip("+-").replace(".", "").strip("0") or "0"
    return min(21, (len(digits) + 1) // 2 + 1)


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one attribute value in DynamoDB's JSON form (``{"S": "abc"}`` and so on).

    >>> value_size({"S": "héllo"}), value_size({"L": [{"BOOL": True}, {"N": "7"}]})
    (6, 8)
    """
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        return number_size(str(inner))
    if kind == "B":
        return _binary_size(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(text).encode()) for text in inner)
    if kind == "NS":
        return sum(number_size(str(text)) for text in inner)
    if kind == "BS":
        return sum(_binary_size(blob) for blob in inner)
    if kind == "L":
        return 3 + sum(1 + value_size(element) for element in inner)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + value_size(v) for name, v in inner.items())
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def _binary_size(blob: Any) -> int:
    # boto3 carries raw bytes; DynamoDB's JSON wire form carries base64 text
    return len(blob) if isinstance(blob, bytes | bytearray) else len(base64.b64decode(blob))


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """Bytes of an item (attribute name -> value in DynamoDB's JSON form), as DynamoDB counts.

    >>> item_size({"pk": {"S": "acme"}, "n": {"N": "12"}})
    9
    """
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def chunks(
    entries: Iterable[T], size_of: Callable[[T], int], *, max_items: int, max_bytes: int
) -> list[list[T]]:
    """``entries`` in order, in chunks of at most ``max_items`` and ``max_bytes`` (an entry
    larger than ``max_bytes`` on its own gets a chunk of its own).

    >>> chunks([5, 5, 5, 1], lambda n: n, max_items=3, max_bytes=10)
    [[5, 5], [5, 1]]
    """
    out: list[list[T]] = []
    size = 0
    for entry in entries:
        length = size_of(entry)
        if not out or len(out[-1]) >= max_items or size + length > max_bytes:
            out.append([])
            size = 0
        out[-1].append(entry)
        size += length
    return out
