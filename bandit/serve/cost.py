"""The work one slot costs VW, counted before VW is called, and the budget it must fit.

VW's work for a cb_adf example is, for every action, its features (the shared ones, the action's
own and the constant) plus, for every interaction term, the product of the feature counts of
the term's namespaces (VW names a namespace by its first letter: ``C`` holds every context
namespace, ``I`` every item one). That product is what made one slot take 13 s under
``--interactions ::::``; the allowlist caps the terms (``bandit.serve.vw_args``), and this module
caps the product, times the spec's ``cost_factor``, at ``MAX_SLOT_WORK`` for each request.

Self-interactions (``CC``) are counted as the full product, an upper bound of what VW generates;
each action also costs ``ACTION_OVERHEAD``, so that many actions with few features are counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

from bandit.errors import FieldError
from bandit.serve.vw_args import cost_factor, interaction_terms, low_rank_terms

# About 0.1 s of scoring on one core of a 2-core CI machine (250 M feature evaluations a second
# for plain mtr; ``tests/reliability/test_cost_bound.py`` measures the worst allowed request).
MAX_SLOT_WORK = 25_000_000
# What VW spends on an action beyond its features (parsing, the example's set-up), in features;
# measured the same under every reduction, so not multiplied by ``cost_factor``.
ACTION_OVERHEAD = 64


def namespace_counts(line: str) -> dict[str, int]:
    """Features per namespace letter of one rendered VW line (``bandit.serve.features.render``).

    >>> sorted(namespace_counts("shared |Cuser a b |Cdevice x |I id=1").items())
    [('C', 3), ('I', 1)]
    """
    counts: dict[str, int] = {}
    for part in line.split("|")[1:]:
        if part:
            spaces = part.count(" ")
            letter = part[0]
            counts[letter] = counts.get(letter, 0) + (spaces - part.endswith(" "))
    return counts


def slot_work(args: Sequence[str], shared: str, actions: Sequence[str]) -> int:
    """The work of scoring (or learning) one slot of ``actions`` under ``args``.

    Actions with the same features per namespace cost the same: each distinct count is worked
    out once (a catalog's items mostly share a handful), from counts kept per line.

    >>> slot_work(["-q", "CI"], "shared |C a b", ["|I x y z", "|I w"])
    146
    """
    terms, low_rank, factor = _terms(tuple(args))
    if len(_by_line) >= _COUNTS_KEPT:  # never within a call: its numbers must stay valid
        _by_line.clear()
        _counts.clear()
        _numbers.clear()
    context = namespace_counts(shared)
    linear = sum(context.values()) + 1
    total = 0
    for number, count in Counter(map(_number_of, actions)).items():
        own = _counts[number]
        work = linear + sum(own.values())
        for term in terms:
            product = 1
            for letter in term:
                product *= context.get(letter, 0) + own.get(letter, 0)
            work += product
        for letters, rank in low_rank:
            left, right = letters[0], letters[1]
            # VW's lrq pairs every feature of one side with every one of the other through each
            # of ``rank`` latent weights, both ways round.
            pairs = (context.get(left, 0) + own.get(left, 0)) * (
                context.get(right, 0) + own.get(right, 0)
            )
            work += 2 * rank * pairs
        total += work * count
    return total * factor + ACTION_OVERHEAD * len(actions)


_COUNTS_KEPT = 65_536
# Each distinct count of features per namespace once, numbered; lines by the number of theirs.
_counts: list[dict[str, int]] = []
_numbers: dict[tuple[tuple[str, int], ...], int] = {}
_by_line: dict[str, int] = {}


def _number_of(line: str) -> int:
    """The number of ``line``'s ``namespace_counts`` (equal counts, one number), kept."""
    found = _by_line.get(line)
    if found is None:
        counts = namespace_counts(line)
        key = tuple(sorted(counts.items()))
        found = _numbers.get(key)
        if found is None:
            found = _numbers[key] = len(_counts)
            _counts.append(counts)
        _by_line[line] = found
    return found


@lru_cache(maxsize=256)
def _terms(
    args: tuple[str, ...],
) -> tuple[list[str], list[tuple[str, int]], int]:
    return interaction_terms(args), low_rank_terms(args), cost_factor(args)


def check_slot_work(args: Sequence[str], shared: str, actions: Sequence[str]) -> None:
    """Refuse a request whose slot would cost more than ``MAX_SLOT_WORK`` (names ``candidates``).

    >>> check_slot_work(["-q", "CI"], "shared |C " + "c " * 5000, ["|I " + "f " * 5000] * 2)
    Traceback (most recent call last):
    ...
    bandit.errors.FieldError: candidates: the policy's interactions make 50020130 features ...
    """
    work = slot_work(args, shared, actions)
    if work > MAX_SLOT_WORK:
        raise FieldError(
            "candidates",
            f"the policy's interactions make {work} features of work per slot for these "
            f"candidates and context (at most {MAX_SLOT_WORK}): send fewer candidates or "
            "features, or use fewer interaction terms",
        )
