"""No policy spec makes a rank or a learned slot slower than a safe share of its timeout.

Issue 11: ``--interactions ::::`` with 152 context features made one slot take 13 s to learn. The
allowlist now caps the spec (``bandit.serve.vw_args``) and every request is held to
``MAX_SLOT_WORK``
(``bandit.serve.cost``), so the worst case is a request that fills the budget under the costliest
spec the caps allow. This test builds it for each kind of spec (most and longest interaction
terms, the largest ensembles, the slowest estimators, the most weights), with 1,000 candidates and
the context and item features split so that the interactions cross as much as the budget lets,
and measures one rank and one learned slot.

The bounds are safety bounds, not speed targets (those live in ``benchmarks/``): VW's scoring of
a rank within a quarter of RankFunction's timeout and the whole rank (featurising 1,000 new
candidates included, which the spec does not change) within half of it; a learned slot within a
hundredth of LearnFunction's, so that an event of ``MAX_SLATE`` slots learns within half of it.
Measured figures print with ``-s``; on a 2-core machine they sit well under the bounds.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from bandit.domain import Candidate
from bandit.errors import FieldError
from bandit.learn.learning import slot_examples
from bandit.serve.cost import MAX_SLOT_WORK, check_slot_work, slot_work
from bandit.serve.features import action_lines, shared_line
from bandit.serve.ranker import Ranker, RankRequest, build_model
from bandit.spec import PolicySpec, parse_spec
from functions.common.api_models import MAX_CANDIDATES, MAX_FEATURES, MAX_SLATE
from local.resources import load_template
from tests.functional.conftest import Api
from tests.reliability.test_hostile_input import assert_refused, send

ORDER_3 = ["CCC", "CCI", "CII", "III", "CIC", "ICI", "IIC", "ICC"]  # 8 terms, the cap
MOST_TERMS = [t for term in ORDER_3 for t in ("--interactions", term)]

# (name, vw.args, vw.explore_args): the costliest spec of each kind the allowlist takes.
WORST_SPECS: list[tuple[str, list[str], list[str]]] = [
    ("8 cubic terms, -b 22", ["-b", "22", *MOST_TERMS], []),
    ("8 cubic terms, dr", ["-b", "22", "--cb_type", "dr", *MOST_TERMS], []),
    ("no interactions, the API's most features", ["-b", "22"], []),
    ("-q CI, mtr", ["-q", "CI"], []),
    ("-q CI, ips", ["--cb_type", "ips", "-q", "CI"], []),
    ("bag 32", ["-b", "19", *MOST_TERMS], ["--bag", "32"]),
    ("cover 32", ["-b", "18", "--cb_type", "dr", "-q", "CI"], ["--cover", "32"]),
    ("rnd 32", ["-b", "19", "-q", "CI"], ["--rnd", "32"]),
    ("regcbopt", ["-b", "22", *MOST_TERMS], ["--regcbopt"]),
    ("squarecb", ["-b", "22", "-q", "CI"], ["--squarecb"]),
]


def _timeout(function: str) -> float:
    template = load_template()
    properties = template["Resources"][function]["Properties"]
    return float(properties.get("Timeout", template["Globals"]["Function"]["Timeout"]))


SCORE_BOUND = _timeout("RankFunction") / 4
RANK_BOUND = _timeout("RankFunction") / 2
SLOT_LEARN_BOUND = _timeout("LearnFunction") / 2 / MAX_SLATE


def _spec(args: list[str], explore: list[str]) -> PolicySpec:
    algorithm = "vw_pmf" if explore else "epsilon_greedy"
    return parse_spec(
        {
            "name": "worst",
            "slate_size": MAX_SLATE,
            "vw": {"args": args, "explore_args": explore},
            "exploration": {"algorithm": algorithm, "budget": 0.5},
            "cold_start": {"prior_examples": 0},
        }
    )


def _request(n: int, candidates: int = MAX_CANDIDATES) -> RankRequest:
    """``n`` context features and ``n`` item features (id and ``n - 1`` tags) per candidate."""
    context = {"u": [f"c{k}" for k in range(n)]}
    items = [
        Candidate(f"i{j}", {"t": [f"v{j}.{k}" for k in range(max(n - 1, 0))]})
        for j in range(candidates)
    ]
    return RankRequest("worst-1", context, items, slate_size=MAX_SLATE)


def _work(spec: PolicySpec, request: RankRequest) -> int:
    lines = action_lines(request.candidates)
    return slot_work(spec.vw_args(), shared_line(request.context), lines)


def _fill_budget(spec: PolicySpec) -> RankRequest:
    """The request with the most features per side (within the API's caps) that the budget takes.

    Equal counts on both sides maximise every product for a given total, so they cross most.
    """
    low, high = 1, MAX_FEATURES
    while low < high:
        middle = (low + high + 1) // 2
        one = _request(middle, candidates=1)  # every candidate has as many features
        lines = action_lines(one.candidates) * MAX_CANDIDATES
        if slot_work(spec.vw_args(), shared_line(one.context), lines) <= MAX_SLOT_WORK:
            low = middle
        else:
            high = middle - 1
    return _request(low)


@pytest.mark.parametrize(("name", "args", "explore"), WORST_SPECS, ids=[s[0] for s in WORST_SPECS])
def test_the_worst_allowed_request_ranks_and_learns_within_a_safe_share_of_the_timeouts(
    name: str, args: list[str], explore: list[str]
) -> None:
    # Given the costliest spec of its kind and the request that fills the cost budget
    spec = _spec(args, explore)
    request = _fill_budget(spec)
    work = _work(spec, request)
    assert work <= MAX_SLOT_WORK
    model = build_model(spec)
    ranker = Ranker(spec, model, clock=lambda: 0.0)
    shared = shared_line(request.context)
    actions = action_lines(request.candidates)
    model.learn(shared, actions, chosen=1, reward=1.0, probability=0.5)  # weights in place
    # When it is ranked (new candidates: featurised, scored once, 50 slots drawn), VW scores
    # it again on its own, and one slot is learned
    start = time.perf_counter()
    result = ranker.rank(request)
    rank_seconds = time.perf_counter() - start
    start = time.perf_counter()
    model.score(shared, actions)
    score_seconds = time.perf_counter() - start
    start = time.perf_counter()
    model.learn(shared, actions, chosen=0, reward=1.0, probability=0.5)
    learn_seconds = time.perf_counter() - start
    features = len(request.context["u"])
    print(
        f"\n{name}: {features} features a side, work {work / 1e6:.1f} M, "
        f"{len(actions)} candidates: VW score {score_seconds:.3f} s (bound {SCORE_BOUND:.2f} s), "
        f"whole rank {rank_seconds:.3f} s (bound {RANK_BOUND:.2f} s), "
        f"learn of one slot {learn_seconds:.3f} s (bound {SLOT_LEARN_BOUND:.2f} s)"
    )
    # Then each stays within its safety bound
    assert len(result.slots) == MAX_SLATE
    assert score_seconds <= SCORE_BOUND
    assert rank_seconds <= RANK_BOUND
    assert learn_seconds <= SLOT_LEARN_BOUND
    model.close()


def test_a_request_over_the_budget_is_refused_before_vw_runs() -> None:
    # Given the spec of issue 11's slot, written out, and 152 context features
    spec = _spec(["--interactions", "CCC", "--interactions", "CCI"], [])
    request = _request(152)
    assert _work(spec, request) > MAX_SLOT_WORK
    # When it is ranked, then it is refused naming the candidates
    with pytest.raises(FieldError, match="features of work per slot") as caught:
        Ranker(spec, clock=lambda: 0.0).rank(request)
    assert caught.value.field == "candidates"
    # And an event ranked under a cheap spec that was then put is not learned under the new one
    cheap = _spec([], [])
    record = Ranker(cheap, clock=lambda: 0.0).rank(request).record(cheap, 0)
    with pytest.raises(FieldError, match="features of work per slot"):
        slot_examples(record, spec)
    check_slot_work(cheap.vw_args(), shared_line(request.context), action_lines(request.candidates))


def test_the_api_answers_4xx_naming_candidates_for_a_request_over_the_budget(
    aws: dict[str, str], api: Api
) -> None:
    # Given the default spec (-q CI) and 1,000 candidates crossing 1,000 context features
    body: dict[str, Any] = {
        "context": {"u": [f"c{k}" for k in range(MAX_FEATURES)]},
        "candidates": [
            {"id": f"i{j}", "features": {"t": [f"t{k}" for k in range(30)]}} for j in range(1000)
        ],
    }
    # When it is ranked, then it is refused naming the candidates
    status, error = send(api, "rank", body)
    assert_refused(status, error, "candidates")
    assert "features of work per slot" in error["detail"]
