"""Policy specs: the committed policies, validation errors naming fields, helpers, schema."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from bandit.errors import FieldError, SpecError
from bandit.serve.vw import VWModel
from bandit.spec import (
    ExplorationAlgorithm,
    PolicySpec,
    RewardSpec,
    load_spec,
    parse_spec,
    spec_json_schema,
)

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
SCHEMA_FILE = ROOT / "docs" / "policy-spec.schema.json"
REGENERATE = (
    ".venv/bin/python -c 'from bandit.spec import spec_json_schema; "
    'open("docs/policy-spec.schema.json", "w").write(spec_json_schema())\''
)


def raw_policy(name: str) -> dict[str, Any]:
    data = yaml.safe_load((POLICIES / f"{name}.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def for_you() -> PolicySpec:
    return load_spec(POLICIES / "for-you.yaml")


@pytest.fixture(scope="module")
def explore() -> PolicySpec:
    return load_spec(POLICIES / "explore.yaml")


# --------------------------------------------------------------------------------------------
# The committed policies
# --------------------------------------------------------------------------------------------


def test_policy_directory_holds_both_policies() -> None:
    assert {path.stem for path in POLICIES.glob("*.yaml")} >= {"for-you", "explore"}


@pytest.mark.parametrize("path", sorted(POLICIES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_committed_policy_loads_and_is_named_after_its_file(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name == path.stem
    assert spec.version >= 1
    # And VW accepts the arguments the policy builds its model with
    explore = spec.exploration.algorithm is ExplorationAlgorithm.VW_PMF
    VWModel(spec.vw_args(), explore=explore).close()


def test_for_you_exploits_with_a_small_budget_and_no_discovery(
    for_you: PolicySpec, explore: PolicySpec
) -> None:
    assert for_you.exploration.discovery_positions == ()
    assert for_you.exploration.algorithm is ExplorationAlgorithm.SQUARECB
    assert for_you.exploration.budget == 0.05
    assert for_you.exploration.budget < explore.exploration.budget
    assert for_you.diversity.max_per_category is None
    assert for_you.diversity.max_per_creator is None
    assert for_you.cold_start.new_item.boost == 1.0
    assert for_you.budgets() == {"cold": 0.10, "warm": 0.05, "mature": 0.05}
    assert for_you.rewards.aggregation == "max"
    assert for_you.rewards.types == {"click": 1.0, "purchase": 5.0}


def test_explore_has_discovery_slots_diversity_caps_and_a_new_item_boost(
    explore: PolicySpec,
) -> None:
    assert explore.exploration.discovery_positions == (5,)
    assert explore.exploration.algorithm is ExplorationAlgorithm.SOFTMAX
    assert explore.exploration.budget == 0.30
    assert explore.diversity.max_per_category == 2
    assert explore.diversity.max_per_creator == 2
    assert explore.cold_start.new_item.boost == 4.0
    assert explore.cold_start.new_item.boost > 1.0
    assert explore.budgets() == {"cold": 0.40, "warm": 0.30, "mature": 0.30}
    assert explore.rewards.max_reward == 10.0
    # No explore_args (softmax is drawn by Serendip, not VW): the model uses the YAML args as is
    assert explore.vw.explore_args == ()
    assert explore.vw_args() == raw_policy("explore")["vw"]["args"]


def test_minimal_spec_takes_the_documented_defaults() -> None:
    spec = parse_spec({"name": "p"})
    assert spec.slate_size == 5
    args = spec.vw_args()
    assert args[args.index("-q") + 1] == "CI"  # context x item interactions
    assert "--cb_type" in args
    assert spec.exploration.budget == 0.05
    assert [s.name for s in spec.cold_start.segments] == ["cold", "warm", "mature"]
    assert spec.rewards.types == {"click": 1.0}


# --------------------------------------------------------------------------------------------
# Invalid specs name the field
# --------------------------------------------------------------------------------------------

SEGMENTS_UNORDERED = [
    {"name": "warm", "max_interactions": 49},
    {"name": "cold", "max_interactions": 4},
    {"name": "mature"},
]
SEGMENTS_LAST_BOUNDED = [
    {"name": "cold", "max_interactions": 4},
    {"name": "warm", "max_interactions": 49},
]

INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    # (id, overrides of {"name": "p"}, field, words in the message)
    ("slate-size-0", {"slate_size": 0}, "slate_size", "greater than or equal to 1"),
    ("slate-size-51", {"slate_size": 51}, "slate_size", "less than or equal to 50"),
    ("bad-name", {"name": "For You"}, "name", "pattern"),
    ("name-too-long", {"name": "p" * 65}, "name", "pattern"),
    ("missing-name", {"name": None}, "name", ""),
    ("unknown-key", {"colour": "blue"}, "colour", "Extra inputs"),
    ("unknown-nested-key", {"exploration": {"budgett": 0.1}}, "exploration.budgett", "Extra"),
    ("budget-1.5", {"exploration": {"budget": 1.5}}, "exploration.budget", "less than"),
    ("budget-negative", {"exploration": {"budget": -0.1}}, "exploration.budget", "greater"),
    (
        "discovery-after-slate",
        {"slate_size": 5, "exploration": {"discovery_positions": [6]}},
        "exploration.discovery_positions",
        "6 is outside 1..5",
    ),
    (
        "discovery-zero",
        {"exploration": {"discovery_positions": [0]}},
        "exploration.discovery_positions",
        "0 is outside",
    ),
    (
        "discovery-repeated",
        {"exploration": {"discovery_positions": [2, 2]}},
        "exploration.discovery_positions",
        "must not repeat",
    ),
    (
        "window-not-multiple-of-bucket",
        {"exploration": {"window_seconds": 3600, "bucket_seconds": 7}},
        "exploration.window_seconds",
        "must be a multiple of bucket_seconds",
    ),
    (
        "unordered-segments",
        {"cold_start": {"segments": SEGMENTS_UNORDERED}},
        "cold_start.segments",
        "must increase",
    ),
    (
        "last-segment-bounded",
        {"cold_start": {"segments": SEGMENTS_LAST_BOUNDED}},
        "cold_start.segments",
        "last segment must have no max_interactions",
    ),
    (
        "duplicate-segments",
        {"cold_start": {"segments": [{"name": "a", "max_interactions": 1}, {"name": "a"}]}},
        "cold_start.segments",
        "unique",
    ),
    ("no-segments", {"cold_start": {"segments": []}}, "cold_start.segments", "at least one"),
    (
        "segment-budget",
        {"cold_start": {"segments": [{"name": "all", "budget": 2}]}},
        "cold_start.segments.0.budget",
        "less than",
    ),
    (
        "vw-exploration-flag-in-args",
        {"vw": {"args": ["--cb_type", "mtr", "--epsilon", "0.1"]}},
        "vw.args",
        "'--epsilon' belongs in vw.explore_args",
    ),
    ("vw-file-flag", {"vw": {"args": ["-f", "/tmp/x"]}}, "vw.args[0]", "flag '-f'"),
    (
        "vw-bad-interaction",
        {"vw": {"args": ["-q", "C|I"]}},
        "vw.args[1]",
        "invalid value 'C|I'",
    ),
    (
        "explore-args-without-vw-pmf",
        {"vw": {"explore_args": ["--epsilon", "0.1"]}},
        "vw.explore_args",
        "only used with exploration.algorithm vw_pmf",
    ),
    (
        "explore-args-file-flag",
        {"exploration": {"algorithm": "vw_pmf"}, "vw": {"explore_args": ["-d", "x"]}},
        "vw.explore_args[0]",
        "flag '-d' is not allowed",
    ),
    (
        "cb-type-unsupported-by-cover",
        {
            "exploration": {"algorithm": "vw_pmf"},
            "vw": {"args": ["--cb_type", "dm"], "explore_args": ["--cover", "3"]},
        },
        "vw.args",
        "--cb_type dm does not work with --cover",
    ),
    ("unknown-algorithm", {"exploration": {"algorithm": "ucb"}}, "exploration.algorithm", ""),
    ("empty-reward-types", {"rewards": {"types": {}}}, "rewards.types", "at least one"),
    ("bad-reward-type", {"rewards": {"types": {"cl ick": 1}}}, "rewards.types", "cl ick"),
    ("huge-reward-weight", {"rewards": {"types": {"click": 1e7}}}, "rewards.types", "1e6"),
    ("bad-aggregation", {"rewards": {"aggregation": "mean"}}, "rewards.aggregation", ""),
    ("max-reward-zero", {"rewards": {"max_reward": 0}}, "rewards.max_reward", "greater"),
    (
        "boost-below-1",
        {"cold_start": {"new_item": {"boost": 0.5}}},
        "cold_start.new_item.boost",
        "",
    ),
    ("diversity-cap-0", {"diversity": {"max_per_category": 0}}, "diversity.max_per_category", ""),
]


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_specs_fail_naming_the_field(
    overrides: dict[str, Any], field: str, words: str
) -> None:
    data = {key: value for key, value in {"name": "p", **overrides}.items() if value is not None}
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    assert caught.value.field == field
    assert words in caught.value.message
    assert str(caught.value) == f"{field}: {caught.value.message}"


def test_spec_error_is_a_field_error_and_a_value_error() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"name": "p", "slate_size": 0})
    assert isinstance(caught.value, FieldError)
    assert isinstance(caught.value, ValueError)


def test_committed_policy_with_one_bad_value_names_it() -> None:
    data = copy.deepcopy(raw_policy("explore"))
    data["exploration"]["discovery_positions"] = [5, 9]
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    assert caught.value.field == "exploration.discovery_positions"
    assert "9 is outside 1..5" in caught.value.message


def test_load_spec_rejects_a_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- name: p\n", encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.field == "spec"


def test_load_spec_reads_json_too(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"name": "p", "slate_size": 3}', encoding="utf-8")
    assert load_spec(path).slate_size == 3


# --------------------------------------------------------------------------------------------
# Frozen
# --------------------------------------------------------------------------------------------


def test_specs_are_frozen(explore: PolicySpec) -> None:
    with pytest.raises(ValidationError):
        explore.slate_size = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        explore.exploration.budget = 1.0  # type: ignore[misc]
    with pytest.raises(ValidationError):
        explore.cold_start.segments[0].budget = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        explore.exploration.discovery_positions[0] = 1  # type: ignore[index]
    assert explore.slate_size == 5
    assert explore.exploration.budget == 0.30


# --------------------------------------------------------------------------------------------
# Segments and budgets
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interactions", "segment"),
    [(0, "cold"), (4, "cold"), (5, "warm"), (49, "warm"), (50, "mature"), (10**9, "mature")],
)
def test_segment_for_uses_inclusive_thresholds(
    for_you: PolicySpec, interactions: int, segment: str
) -> None:
    assert for_you.segment_for(interactions).name == segment


def test_single_segment_takes_everyone() -> None:
    spec = parse_spec({"name": "p", "cold_start": {"segments": [{"name": "all"}]}})
    assert spec.segment_for(0).name == "all"
    assert spec.segment_for(10**6).name == "all"


def test_budget_for_segment_overrides_policy_budget(for_you: PolicySpec) -> None:
    assert for_you.budget_for("cold") == 0.10
    assert for_you.budget_for("warm") == 0.05
    assert for_you.budget_for("no-such-segment") == for_you.exploration.budget


def test_segment_without_budget_falls_back_to_policy_budget() -> None:
    spec = parse_spec(
        {
            "name": "p",
            "exploration": {"budget": 0.2},
            "cold_start": {
                "segments": [{"name": "cold", "max_interactions": 3, "budget": 0.5}, {"name": "m"}]
            },
        }
    )
    assert spec.budgets() == {"cold": 0.5, "m": 0.2}


@pytest.mark.parametrize("policy", ["for-you", "explore"])
def test_policy_budget_zero_is_a_kill_switch_for_every_segment(policy: str) -> None:
    # Given a committed policy whose segments have their own non-zero budgets
    data = copy.deepcopy(raw_policy(policy))
    assert all(segment.get("budget") for segment in data["cold_start"]["segments"])

    # When the policy budget is set to 0
    data["exploration"]["budget"] = 0
    spec = parse_spec(data)

    # Then no segment explores
    assert spec.budgets() == {"cold": 0.0, "warm": 0.0, "mature": 0.0}
    for interactions in (0, 10, 1000):
        assert spec.budget_for(spec.segment_for(interactions).name) == 0.0


def test_reward_spec_defaults() -> None:
    spec = RewardSpec()
    assert (spec.types, spec.aggregation, spec.default) == ({"click": 1.0}, "sum", 0.0)
    assert (spec.wait_seconds, spec.max_reward) == (600, None)


# --------------------------------------------------------------------------------------------
# JSON schema export
# --------------------------------------------------------------------------------------------


def test_committed_json_schema_matches_the_spec_model() -> None:
    assert SCHEMA_FILE.exists(), f"{SCHEMA_FILE} is missing; create it with:\n  {REGENERATE}"
    committed = SCHEMA_FILE.read_text(encoding="utf-8")
    assert committed == spec_json_schema(), (
        f"{SCHEMA_FILE.relative_to(ROOT)} is out of date with bandit/spec.py; "
        f"regenerate it from the repository root with:\n  {REGENERATE}"
    )


def test_json_schema_forbids_unknown_keys_and_requires_a_name() -> None:
    schema = json.loads(spec_json_schema())
    assert schema["title"] == "PolicySpec"
    assert schema["required"] == ["name"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["slate_size"]["maximum"] == 50
