"""A slate policy's marginal (per-position) distributions, for logs that hold marginals.

Serendip draws a slate slot by slot without repetition, so the probability of item ``a`` at
position ``k`` is a sum over every possible earlier slots: ``P(s_k = a) = sum_prefix
P(prefix) P(a | prefix)``, with ``m! / (m - k + 1)!`` prefixes (6,320 at position 3 of 80
candidates). ``position_marginals`` estimates it without bias by Monte Carlo over prefixes,
Rao-Blackwellised: ``draws`` prefixes are split down the tree by multinomial draws from each
slot's conditional distribution (so a prefix is expanded once, however many draws reach it), and
position ``k``'s marginal is the average of the exact conditional distributions of the prefixes
reached, not of sampled items. Position 1 is exact; so is every position when the policy is
deterministic. Importance weights ``q / p`` are linear in ``q``, so an IPS estimate over these
marginals stays unbiased; the draws add a little variance (``docs/evaluation.md``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

DEFAULT_DRAWS = 256

Conditional = Callable[[tuple[int, ...]], np.ndarray]


def position_marginals(
    conditional: Conditional, positions: int, size: int, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """Each position's marginal distribution over ``size`` candidates, shape ``(positions, size)``.

    ``conditional(prefix)`` is the distribution of the next slot given the candidate indices
    already shown (all zeros when none is allowed: the slate ends there, and later positions
    show nothing for that prefix).

    >>> uniform = lambda prefix: np.array([0.0 if i in prefix else 1 / (3 - len(prefix))
    ...                                    for i in range(3)])
    >>> marginals = position_marginals(uniform, 2, 3, 64, np.random.default_rng(0))
    >>> marginals[0].round(3).tolist(), float(marginals[1].sum())
    ([0.333, 0.333, 0.333], 1.0)
    """
    if draws < 1:
        raise ValueError(f"draws: must be at least 1, got {draws}")
    out = np.zeros((positions, size))
    level: dict[tuple[int, ...], int] = {(): draws}
    for position in range(positions):
        following: dict[tuple[int, ...], int] = {}
        for prefix, count in level.items():
            q = np.asarray(conditional(prefix), dtype=np.float64)
            out[position] += count * q
            total = q.sum()
            if position + 1 < positions and total > 0.0:
                picks = rng.multinomial(count, q / total)
                for index in np.flatnonzero(picks):
                    following[(*prefix, int(index))] = int(picks[index])
        level = following
    return out / draws


def event_rng(event_id: str, salt: str = "") -> np.random.Generator:
    """A generator seeded by the event's id: the same marginals on every run."""
    digest = hashlib.sha256(f"{salt}\x00{event_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))
