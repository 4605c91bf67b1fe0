"""Pages of a policy's decision log: at most ``limit`` records a read, and where the next starts.

A read of the whole log does not fit a Lambda timeout (50,000 records at about 2.3 ms each), so
readers that answer a request take one page at a time. A page queries the policy's index with
DynamoDB's ``Limit`` (so it never fetches more than ``limit`` items) from the exclusive start
key of the previous page; its ``cursor`` is the key of the last record handed out, so a reader
that stops early (a deadline) resumes exactly after what it used, and pages never overlap or
leave gaps, even when events share a timestamp.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pynamodb.exceptions import PynamoDBException

from bandit.decision_log import DecisionRecord
from functions.common import decision_store
from functions.common.errors import StorageError
from functions.common.tables import DecisionItem, bind


@dataclass(frozen=True, slots=True)
class PageCursor:
    """Where a page ended: the last record's table key and timestamp (DynamoDB's ``N`` text)."""

    pk: str
    ts: str


class DecisionPage:
    """Up to ``limit`` decision records of one policy with ``since <= ts < until``, oldest first,
    after ``after`` (the cursor of the previous page) when given."""

    def __init__(
        self,
        tenant: str,
        policy: str,
        since: float,
        until: float,
        *,
        limit: int,
        after: PageCursor | None = None,
    ) -> None:
        self.key = decision_store.policy_key(tenant, policy)
        self.since = since
        self.until = until
        self.limit = limit
        self.after = after
        self._cursor: PageCursor | None = after
        self._started = False

    def __iter__(self) -> Iterator[DecisionRecord]:
        bind()
        start = None
        if self.after is not None:
            start = {
                "pk": {"S": self.after.pk},
                "policy_key": {"S": self.key},
                "ts": {"N": self.after.ts},
            }
        query = DecisionItem.by_policy.query(
            self.key,
            DecisionItem.ts.between(self.since, self.until),
            limit=self.limit,
            last_evaluated_key=start,
        )
        self._started = True
        try:
            for item in query:
                self._cursor = PageCursor(item.pk, _number_text(item.ts))
                if item.ts < self.until:  # ``between`` includes ``until``; the window does not
                    yield decision_store._decode(item)
            self._cursor = None if query.last_evaluated_key is None else self._cursor
        except PynamoDBException as exc:
            raise StorageError(f"decision store unavailable: {exc.msg}") from exc

    def cursor(self) -> PageCursor | None:
        """Where the next page starts (after the last record handed out); ``None``: no more."""
        if not self._started:
            raise RuntimeError("the page has not been read")
        return self._cursor


def _number_text(value: float) -> str:
    return repr(int(value)) if float(value).is_integer() else repr(float(value))
