"""The catalog index's byte format: a versioned, checksummed envelope of named sections.

Layout: ``MAGIC``, the format version (u32), a SHA-256 digest (32 bytes) of everything after
it, the header length (u32), the JSON header (metadata and each section's offset and length)
and the sections, each starting at a 64-byte boundary. A blob of another format version is
refused before anything else is read, and a blob with any byte changed fails its checksum.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from typing import Any

from bandit.errors import SerendipError

MAGIC = b"SERENDIP-CATALOG\n"
FORMAT_VERSION = 1
_ALIGN = 64
_VERSION = struct.Struct("<I")
_LENGTH = struct.Struct("<I")
_DIGEST_BYTES = 32


class CatalogIndexError(SerendipError):
    """A catalog index blob that cannot be loaded (not an index, other version, corrupt)."""


def pack(meta: Mapping[str, Any], sections: Mapping[str, bytes]) -> bytes:
    """The envelope of ``meta`` (JSON-encodable) and ``sections``.

    >>> blob = pack({"items": 1}, {"a": b"xyz"})
    >>> meta, sections = unpack(blob)
    >>> meta["items"], bytes(sections["a"])
    (1, b'xyz')
    """
    offsets: dict[str, list[int]] = {}
    body = bytearray()
    for name, data in sections.items():
        body += b"\0" * (-len(body) % _ALIGN)
        offsets[name] = [len(body), len(data)]
        body += data
    header = json.dumps({"meta": dict(meta), "sections": offsets}, sort_keys=True).encode()
    prefix = len(MAGIC) + _VERSION.size + _DIGEST_BYTES + _LENGTH.size + len(header)
    padding = b"\0" * (-prefix % _ALIGN)
    signed = _LENGTH.pack(len(header) + len(padding)) + header + padding + bytes(body)
    digest = hashlib.sha256(signed).digest()
    return MAGIC + _VERSION.pack(FORMAT_VERSION) + digest + signed


def unpack(blob: bytes | memoryview) -> tuple[dict[str, Any], dict[str, memoryview]]:
    """The metadata and sections of a blob written by ``pack`` (sections are views into it)."""
    view = memoryview(blob)
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise CatalogIndexError("not a catalog index blob")
    at = len(MAGIC)
    if len(view) < at + _VERSION.size + _DIGEST_BYTES + _LENGTH.size:
        raise CatalogIndexError("catalog index blob is truncated")
    (version,) = _VERSION.unpack_from(view, at)
    if version != FORMAT_VERSION:
        raise CatalogIndexError(
            f"catalog index format version {version} is not supported (this code reads "
            f"version {FORMAT_VERSION}); rebuild the index"
        )
    at += _VERSION.size
    digest = bytes(view[at : at + _DIGEST_BYTES])
    signed = view[at + _DIGEST_BYTES :]
    if hashlib.sha256(signed).digest() != digest:
        raise CatalogIndexError("catalog index blob fails its checksum")
    (header_length,) = _LENGTH.unpack_from(signed, 0)
    body_start = _LENGTH.size + header_length
    try:
        header = json.loads(bytes(signed[_LENGTH.size : body_start]).rstrip(b"\0"))
    except ValueError as error:
        raise CatalogIndexError(f"catalog index header is not JSON: {error}") from error
    body = signed[body_start:]
    sections = {
        name: body[offset : offset + length]
        for name, (offset, length) in header["sections"].items()
    }
    return dict(header["meta"]), sections
