"""DynamoDB queries for the local stack's moto server that do not sort the whole table first.

moto answers every query by sorting every item of the table by its key, then keeping the items
of the queried partition (or, on an index, the items with the index's keys), then sorting those.
The sweep queries the decision log's open-events index 16 times a pass, so with 20,000 decisions
a pass held the server's DynamoDB lock for over a second, and the time grew with the log. Here a
query reads only the partition it asks for (a table query) or the table's items unsorted (an
index query); moto's own code then filters, sorts and pages them exactly as before.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.dynamodb.models.table import Table

_query = Table.query
_all_items = Table.all_items
_scope = threading.local()  # the query running on this thread: (table, partition key or None)


def _items_for_query(self: Table) -> list[Any]:
    """moto's ``all_items`` during one of our queries: the partition, or every item unsorted."""
    scope = getattr(_scope, "query", None)
    if scope is None or scope[0] is not self:
        return _all_items(self)
    partition = scope[1]
    if partition is None:
        holders = list(self.items.values())
    elif partition in self.items:
        holders = [self.items[partition]]
    else:
        return []
    if self.range_key_attr:
        return [item for holder in holders for item in holder.values()]
    return holders


def query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
    """moto's ``Table.query``, its candidate items read without sorting the table."""
    # (moto's backend passes index_name positionally, 7th after hash_key)
    index_name = kwargs["index_name"] if "index_name" in kwargs else (args[6:7] or [None])[0]
    _scope.query = (self, None if index_name else hash_key)
    try:
        return _query(self, hash_key, *args, **kwargs)
    finally:
        _scope.query = None


def install() -> None:
    """Use this query path in this process's moto (the local stack's server)."""
    Table.query = query  # type: ignore[method-assign]
    Table.all_items = _items_for_query  # type: ignore[method-assign]
