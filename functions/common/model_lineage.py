"""Which model versions' learned events a head model holds (its lineage).

A learner's save continues the version before it; a version saved with a model that had learned
nothing (a fresh model after a spec change, a reset) starts a line of its own; a rollback's
copy continues the version it copies. So the events a head model learned are those whose
``learned_version`` lies on the walk down from the head: through each line to its start, and
from each copy to its source. The policy item notes every start and copy
(``model_store.save``); the kept versions' own metadata adds what it shows
(``model_store.line_marks``: starts and copies saved before the policy item noted them).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Lineage:
    """Ranges ``(low, high)`` of versions, inclusive, newest first.

    >>> line = lineage(9, roots=[3], copies={7: 5})
    >>> line.ranges, 6 in line, 5 in line, 2 in line
    (((7, 9), (3, 5)), False, True, False)
    """

    ranges: tuple[tuple[int, int], ...]

    def __contains__(self, version: object) -> bool:
        return isinstance(version, int) and any(lo <= version <= hi for lo, hi in self.ranges)


def lineage(head: int, roots: Iterable[int], copies: Mapping[int, int]) -> Lineage:
    """The lineage of version ``head``, given the versions that start a line (``roots``) and
    the rollback copies (copy -> source)."""
    starts = sorted(set(roots))
    made = sorted(copies)
    ranges: list[tuple[int, int]] = []
    version = head
    while version >= 1:
        below = bisect.bisect_right(starts, version) - 1
        root = starts[below] if below >= 0 else 0
        at = bisect.bisect_right(made, version) - 1
        copy = made[at] if at >= 0 else None
        if copy is None or copy <= root:
            ranges.append((max(root, 1), version))
            break
        ranges.append((copy, version))
        source = copies[copy]
        if source >= copy:  # a copy of a newer version cannot be: stop rather than loop
            break
        version = source
    return Lineage(tuple(ranges))
