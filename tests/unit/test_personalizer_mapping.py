"""The Personalizer API's pure mappings: feature lists, durations, learning arguments and the
evaluation sums, each against what it must agree with."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.evaluate.intervals import UNBOUNDED
from bandit.evaluate.ope import estimate
from bandit.evaluate.sums import Sums
from bandit.spec import load_spec
from functions.common.personalizer.configuration import arguments_of, spec_with_arguments
from functions.common.personalizer.durations import format_duration, parse_duration
from functions.common.personalizer.errors import PersonalizerError
from functions.common.personalizer.features import merge_feature_list
from local.stack import POLICIES_DIR

SPEC = load_spec(POLICIES_DIR / "personalizer.yaml")
scalars = st.one_of(
    st.booleans(), st.integers(-1000, 1000), st.text(max_size=8), st.floats(-1e6, 1e6)
)
objects = st.dictionaries(
    st.sampled_from(["user", "device", "tags", "n"]),
    st.one_of(scalars, st.dictionaries(st.sampled_from(["a", "b"]), scalars, max_size=2)),
    max_size=3,
)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for inner in value.values() for leaf in _leaves(inner)]
    if isinstance(value, list):
        return [leaf for inner in value for leaf in _leaves(inner)]
    return [value]


@given(st.lists(objects, max_size=5))
def test_merging_a_feature_list_loses_no_value(items: list[dict[str, Any]]) -> None:
    merged = merge_feature_list(items, "contextFeatures")
    expected = sorted(map(repr, (leaf for item in items for leaf in _leaves(item))))
    assert sorted(map(repr, _leaves(merged))) == expected
    assert set(merged) == {key for item in items for key in item}


@given(st.integers(1, 30 * 86_400))
def test_a_formatted_duration_parses_back_to_its_seconds(seconds: int) -> None:
    text = format_duration(seconds)
    assert parse_duration(text, "d") == seconds
    assert text.startswith("P") and "T" not in text[-1:]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT10M", 600),
        ("PT4H", 14_400),
        ("P1D", 86_400),
        ("PT24H", 86_400),
        ("00:10:00", 600),
        ("1.00:00:00", 86_400),
        ("PT0H0M5.5S", 5.5),
        ("P1W", 604_800),
        ("pt10m", 600),
    ],
)
def test_personalizers_duration_spellings_parse(text: str, seconds: float) -> None:
    assert parse_duration(text, "d") == seconds


@pytest.mark.parametrize("text", ["", "P", "PT", "P1M", "P1Y", "10 minutes", "PT-5S", "1:2:3"])
def test_what_is_no_duration_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(ValueError, match=r"^wait: "):
        parse_duration(text, "wait")


@pytest.mark.parametrize(
    ("arguments", "vw", "algorithm", "budget"),
    [
        (
            "--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr -q ::",
            ["--power_t", "0", "-l", "0.001", "--cb_type", "mtr", "-q", "CI"],
            "epsilon_greedy",
            0.2,
        ),
        (
            "--cb_explore_adf --epsilon 0.2 --dsjson --cb_type ips -l 0.5 --l1 1E-07 --power_t 0.5",
            ["--cb_type", "ips", "-l", "0.5", "--l1", "1E-07", "--power_t", "0.5"],
            "epsilon_greedy",
            0.2,
        ),
        ("--cb_explore_adf --squarecb --cb_type mtr", ["--cb_type", "mtr"], "squarecb", 0.2),
        ("--cb_explore_adf --cover 4 --cb_type dr", ["--cb_type", "dr"], "vw_pmf", 0.2),
        ("--cb_type dm", ["--cb_type", "dm"], "epsilon_greedy", 0.2),
    ],
)
def test_personalizers_arguments_become_the_specs_vw_arguments_and_exploration(
    arguments: str, vw: list[str], algorithm: str, budget: float
) -> None:
    spec = spec_with_arguments(SPEC, arguments, "InvalidPolicyConfiguration")
    assert list(spec.vw.args) == vw
    assert spec.exploration.algorithm == algorithm and spec.exploration.budget == budget
    # And the spec's arguments read back as the same settings
    again = spec_with_arguments(SPEC, arguments_of(spec), "InvalidPolicyConfiguration")
    assert again.vw_args() == spec.vw_args() and again.exploration == spec.exploration


@pytest.mark.parametrize(
    "arguments", ["-d data.txt", "-f model.vw", "--cb_type nope", "--epsilon 2", "-q ab:"]
)
def test_arguments_the_allowlist_refuses_are_personalizers_400(arguments: str) -> None:
    with pytest.raises(PersonalizerError) as caught:
        spec_with_arguments(SPEC, arguments, "InvalidPolicyConfiguration")
    assert (caught.value.status, caught.value.code, caught.value.target) == (
        400,
        "InvalidPolicyConfiguration",
        "arguments",
    )


@settings(max_examples=60)
@given(
    st.lists(
        st.tuples(
            st.floats(0.01, 1.0),
            st.one_of(st.just(0.0), st.floats(1e-6, 1.0)),  # probabilities, as policies give
            st.sampled_from([0.0, 0.5, 1.0]),
        ),
        min_size=2,
        max_size=40,
    ),
    st.integers(1, 5),
)
def test_bucket_sums_give_exactly_the_snips_estimate_of_the_events(
    events: list[tuple[float, float, float]], parts: int
) -> None:
    logged = np.array([e[0] for e in events])
    target = np.array([e[1] for e in events])
    rewards = np.array([e[2] for e in events])
    if target.sum() <= 0.0:
        return
    # Summed in any split into buckets
    cuts = np.array_split(np.arange(len(events)), parts)
    total = Sums()
    for cut in cuts:
        total = total + Sums.of(target[cut] / logged[cut], rewards[cut])
    value, low, high = total.estimate() or (math.nan, math.nan, math.nan)
    direct = estimate(rewards, logged, target, method="snips", reward_range=UNBOUNDED)
    assert value == pytest.approx(direct.value, rel=1e-9, abs=1e-12)
    assert low == pytest.approx(direct.low, rel=1e-6, abs=1e-9)
    assert high == pytest.approx(direct.high, rel=1e-6, abs=1e-9)
