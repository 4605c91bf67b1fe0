"""The slot-work count: grouping actions by their namespace counts changes no count."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.serve.cost import ACTION_OVERHEAD, namespace_counts, slot_work
from bandit.serve.vw_args import cost_factor, interaction_terms, low_rank_terms

ARGS = [
    ["-q", "CI"],
    ["--cb_type", "dm", "-q", "CI", "-q", "HI", "--cubic", "CCI"],
    ["--lrq", "CI4"],
    [],
]


def reference(args: list[str], shared: str, actions: list[str]) -> int:
    """Every action counted on its own, as VW works them."""
    context = namespace_counts(shared)
    total = 0
    for action in actions:
        own = namespace_counts(action)
        work = sum(context.values()) + 1 + sum(own.values())
        for term in interaction_terms(args):
            product = 1
            for letter in term:
                product *= context.get(letter, 0) + own.get(letter, 0)
            work += product
        for letters, rank in low_rank_terms(args):
            left = context.get(letters[0], 0) + own.get(letters[0], 0)
            right = context.get(letters[1], 0) + own.get(letters[1], 0)
            work += 2 * rank * left * right
        total += work
    return total * cost_factor(args) + ACTION_OVERHEAD * len(actions)


_namespace = st.builds(
    lambda letter, name, n: f"|{letter}{name} " + " ".join(f"f{i}" for i in range(n)),
    st.sampled_from("CIH"),
    st.sampled_from(["", "a", "b"]),
    st.integers(0, 6),
)
_line = st.lists(_namespace, min_size=1, max_size=3).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(
    args=st.sampled_from(ARGS),
    shared=_line.map(lambda line: "shared " + line),
    actions=st.lists(_line, min_size=1, max_size=20),
)
def test_grouped_counts_equal_counting_every_action(
    args: list[str], shared: str, actions: list[str]
) -> None:
    assert slot_work(args, shared, actions) == reference(args, shared, actions)
