"""SQS queues of the local stack's moto server that forget deleted messages' receipt handles.

moto remembers the receipt handle of every message ever deleted from a queue, so that deleting
one again succeeds, as it does on SQS: a set that grows by every message the stack ever
processed, and is pickled with every snapshot of the stack's state. Here a queue remembers the
last ``REMEMBERED_HANDLES`` of them: a repeated delete comes within seconds (a retried batch), not
thousands of messages later.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from moto.sqs.models import Queue

REMEMBERED_HANDLES = 10_000


class RecentReceipts(set[str]):
    """A set of the ``limit`` receipt handles added last (moto only adds to it and tests it)."""

    def __init__(self, handles: Iterable[str] = (), limit: int | None = None) -> None:
        super().__init__()
        self.limit = limit or REMEMBERED_HANDLES
        self._order: deque[str] = deque()
        self.update(handles)

    def add(self, handle: str) -> None:
        """Remember ``handle``, forgetting the oldest beyond ``limit``."""
        if handle in self:
            return
        super().add(handle)
        self._order.append(handle)
        while len(self._order) > self.limit:
            self.discard(self._order.popleft())

    def update(self, *handles: Iterable[str]) -> None:
        """Remember every handle of ``handles`` (``None``, which moto may pass, is skipped)."""
        for group in handles:
            for handle in group:
                if handle is not None:
                    self.add(handle)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (snapshots) as its handles, oldest first, and its limit.
        return (RecentReceipts, (list(self._order), self.limit))


_delete_message = Queue.delete_message


def delete_message(self: Queue, receipt_handle: str) -> None:
    """moto's delete, remembering only recent receipt handles (also in a restored queue)."""
    if not isinstance(self.deleted_messages, RecentReceipts):
        self.deleted_messages = RecentReceipts(self.deleted_messages)
    _delete_message(self, receipt_handle)


def install() -> None:
    """Every queue of this process's moto keeps only recent deleted messages' receipt handles."""
    Queue.delete_message = delete_message  # type: ignore[method-assign]
