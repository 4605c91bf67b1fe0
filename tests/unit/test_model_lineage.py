"""Which versions a head model holds the events of, and the order a retrain plans them in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from functions.common.model_lineage import lineage
from functions.common.retrain_state import Plan

# A policy's history of saves: a learner's save, a fresh model (a reset), or a rollback copy of
# the version that many saves back.
Save = tuple[str, int]
saves = st.lists(
    st.one_of(
        st.tuples(st.just("learn"), st.just(0)),
        st.tuples(st.just("fresh"), st.just(0)),
        st.tuples(st.just("rollback"), st.integers(min_value=1, max_value=6)),
    ),
    max_size=40,
)


def history(steps: list[Save]) -> tuple[int, list[int], dict[int, int]]:
    """The head, the versions that start a line, and the copies a history of saves leaves."""
    head, roots, copies = 0, [], {}
    for kind, back in steps:
        source = head - back  # a rollback copies a version before it (when there is one)
        head += 1
        if kind == "fresh":
            roots.append(head)
        elif kind == "rollback" and source >= 1:
            copies[head] = source
    return head, roots, copies


def walk(head: int, roots: list[int], copies: dict[int, int]) -> set[int]:
    """The lineage, version by version."""
    seen: set[int] = set()
    version = head
    while version >= 1:
        seen.add(version)
        if version in roots:
            break
        version = copies.get(version, version - 1)
    return seen


@given(saves)
def test_the_lineage_is_the_walk_down_through_lines_and_copies(steps: list[Save]) -> None:
    head, roots, copies = history(steps)
    line = lineage(head, roots, copies)
    assert {v for v in range(0, head + 2) if v in line} == walk(head, roots, copies)


def test_a_reset_cuts_off_the_versions_before_it() -> None:
    line = lineage(7, roots=[4], copies={})
    assert [v for v in range(1, 8) if v in line] == [4, 5, 6, 7]


@given(
    st.dictionaries(
        st.text("abcdef", min_size=1, max_size=4),
        st.tuples(st.one_of(st.none(), st.integers(1, 9)), st.floats(0, 100)),
        max_size=30,
    ),
    st.integers(0, 9),
)
def test_a_cut_plans_the_events_learned_up_to_it_in_learning_order(
    pending: dict[str, tuple[int | None, float]], head: int
) -> None:
    plan = Plan(pending={key: [v, t] for key, (v, t) in pending.items()})
    moved = plan.cut_at(head, lambda version: version % 2 == 1)
    # Learned up to the head: planned if the lineage holds it, dropped if not; the rest wait
    wanted = sorted(
        [v, t, key] for key, (v, t) in pending.items() if v is not None and v <= head and v % 2
    )
    assert plan.entries == wanted and moved == len(wanted)
    assert set(plan.pending) == {key for key, (v, _) in pending.items() if v is None or v > head}
