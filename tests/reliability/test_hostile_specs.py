"""Hostile policy specs through ``PUT /v1/policies/{policy}``: refused, named, nothing changed.

VW flags that read or write files (or otherwise leave the allowlist), smuggled in one token, as
``--flag=value``, after ``--``, with unicode digits or as a second disagreeing value; numbers that
are not finite or out of range in every numeric field; lists and maps over their caps. Each is a
422 naming the field, the stored spec is unchanged (``GET`` returns the previous one), no file is
created, and the policy still ranks.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from functions.admin.app import lambda_handler as admin_handler
from tests.functional.conftest import Api
from tests.reliability.test_hostile_input import (
    assert_refused,
    assert_served,
    rank_body,
    send,
    snapshot,
)

POLICY = "/v1/policies/{policy}"

# Flags that read or write files, talk to the network or change VW's I/O; none is allowed.
FILE_AND_IO_FLAGS = [
    "-d", "--data", "-f", "--final_regressor", "-i", "--initial_regressor", "-c", "--cache",
    "--cache_file", "-k", "--kill_cache", "--readable_model", "--invert_hash", "--feature_mask",
    "--dictionary", "--dictionary_path", "--save_resume", "--save_per_pass", "-p",
    "--predictions", "-r", "--raw_predictions", "--daemon", "--port", "--port_file",
    "--pid_file", "--num_children", "--output_model", "--audit", "-a", "--json", "--dsjson",
    "--compressed", "--sendto", "--span_server", "--unique_id", "--total", "--node",
    "--input_feature_regularizer", "--output_feature_regularizer_binary",
    "--output_feature_regularizer_text", "--flatbuffer", "--extra_metrics", "--id",
    "--initial_weight", "--quiet", "--help", "-h", "--version",
]  # fmt: skip


@pytest.fixture
def current(api: Api) -> dict[str, Any]:
    """The stored ``for-you`` policy as ``GET`` returns it."""
    status, policy, _ = api.call(admin_handler, "GET", "/v1/policies/for-you", resource=POLICY)
    assert status == 200
    return dict(policy)


def _with_vw(spec: dict[str, Any], args: list[Any], explore: list[Any] | None = None) -> Any:
    out = copy.deepcopy(spec)
    out["vw"] = {"args": args, "explore_args": explore or []}
    if explore is not None:
        out["exploration"]["algorithm"] = "vw_pmf"
    return out


def _vw_cases(spec: dict[str, Any], files: Path) -> list[tuple[Any, str]]:
    """(spec, field) for every flag that must be refused, in each place it can be put."""
    path = str(files / "model.vw")
    cases: list[tuple[Any, str]] = []
    for flag in FILE_AND_IO_FLAGS:
        cases += [
            (_with_vw(spec, [flag, path]), "vw.args[0]"),
            (_with_vw(spec, ["--cb_type", "mtr", "-q", "CI", flag, path]), "vw.args[4]"),
            (_with_vw(spec, [f"{flag}={path}"]), "vw.args[0]"),
            (_with_vw(spec, ["--cb_type", "mtr"], ["--epsilon", "0.1", flag, path]),
             "vw.explore_args[2]"),
        ]  # fmt: skip
    smuggled: list[tuple[list[Any], str]] = [
        ([f"--cb_type=dm -f {path}"], "vw.args[0]"),
        (["-q CI -f x"], "vw.args[0]"),
        (["--cb_type", f"dm -f {path}"], "vw.args[1]"),
        (["--cb_type", "dm", f"-f={path}"], "vw.args[2]"),
        (["--cb_type", "dm", "-f", "a=b"], "vw.args[2]"),
        (["--learning_rate=0.5"], "vw.args[0]"),
        (["-l", f"0.1 -f {path}"], "vw.args[1]"),
        (["-l", "0.1\n-f"], "vw.args[1]"),
        (["-l", "0.1\n"], "vw.args[1]"),
        (["--cb_type", "mtr\x00-f"], "vw.args[1]"),
        (["-q", "C\u2028I"], "vw.args[1]"),
        (["-q", "CI", "--", "-f", path], "vw.args[2]"),
        ([" --cb_type", "mtr"], "vw.args[0]"),
        (["--CB_TYPE", "mtr"], "vw.args[0]"),
        (["—cb_type", "mtr"], "vw.args[0]"),  # an em dash, not two hyphens
        (["--random_seed", "١٢٣"], "vw.args[1]"),  # Arabic-Indic digits
        (["-b", "\uff11\uff18"], "vw.args[1]"),  # full-width digits
        (["-l", "1e999"], "vw.args[1]"),  # infinite as VW's float
        (["-l", "1e39"], "vw.args[1]"),  # past VW's 32-bit float
        (["--power_t", "-1e31"], "vw.args[1]"),
        (["-l", "nan"], "vw.args[1]"),
        (["--cb_type", "dm", "--cb_type", "ips"], "vw.args[2]"),
        (["-l", "0.1", "--learning_rate", "0.2"], "vw.args[2]"),
        (["-b", "18", "--bit_precision", "20"], "vw.args[2]"),
        (["--noconstant", "--noconstant"], "vw.args[1]"),
        ([1, 2], "vw.args.0"),
    ]
    cases += [(_with_vw(spec, args), field) for args, field in smuggled]
    explore: list[tuple[list[str], list[str], str]] = [
        (["--cb_type", "mtr"], ["--cover", "999999"], "vw.explore_args[1]"),
        (["--cb_type", "mtr"], ["--bag", "33"], "vw.explore_args[1]"),
        (["--cb_type", "mtr"], ["--rnd", "0"], "vw.explore_args[1]"),
        (["--cb_type", "mtr"], ["--cover", "3", "--cb_type", "ips"], "vw.explore_args[2]"),
        (["--cb_type", "mtr", "-b", "18"], ["--epsilon", "0.1", "-b", "22"], "vw.explore_args[2]"),
        (["--cb_type", "mtr"], ["--epsilon", "0.1", "--epsilon", "0.2"], "vw.explore_args[2]"),
    ]
    cases += [(_with_vw(spec, args, more), field) for args, more, field in explore]
    not_lists = [
        ({**spec, "vw": {"args": f"--cb_type dm -f {path}"}}, "vw.args"),
        ({**spec, "vw": {"args": ["--cb_type", "dm"], "evil": ["-f", path]}}, "vw.evil"),
        ({**spec, "vw_args": ["-f", path]}, "vw_args"),
    ]
    return cases + not_lists


def test_vw_flags_outside_the_allowlist_are_refused_and_change_nothing(
    aws: dict[str, str], api: Api, current: dict[str, Any], tmp_path: Path
) -> None:
    # Given the stored spec and the whole state
    before = snapshot(aws)
    cases = _vw_cases(current["spec"], tmp_path)
    for spec, field in cases:
        # When a spec carrying a forbidden VW argument is put
        status, error = send(api, "policy", spec)
        # Then it is a 422 naming the argument
        assert_refused(status, error, field)
        assert (status, error["error"]) == (422, "validation_error")
    # And nothing changed: same state, same spec and version, no file written
    assert snapshot(aws) == before
    status, after, _ = api.call(admin_handler, "GET", "/v1/policies/for-you", resource=POLICY)
    assert (status, after) == (200, current)
    assert list(tmp_path.iterdir()) == []
    assert len(cases) == 4 * len(FILE_AND_IO_FLAGS) + 35 == 231
    # And the policy still ranks, and a valid VW spec is still accepted
    status, ranked = send(api, "rank", rank_body([{"id": "a"}, {"id": "b"}]))
    assert_served(status, ranked, ["a", "b"], 2)
    good = _with_vw(current["spec"], ["--cb_type", "mtr", "-q", "CI", "-q", "CC"], ["--cover", "3"])
    status, stored = send(api, "policy", good)
    assert (status, stored["spec_version"]) == (200, current["spec_version"] + 1), stored


# VW arguments whose cost has no bound (issue 11): wildcards, too many or too long interaction
# terms, more weights than a Lambda holds. (args, explore_args or None, field named).
COSTLY_VW_ARGS: list[tuple[list[str], list[str] | None, str]] = [
    (["--interactions", "::::"], None, "vw.args[1]"),  # the slot that took 13 s to learn
    (["--cb_type", "mtr", "-q", "::"], None, "vw.args[3]"),
    (["--quadratic", "C:"], None, "vw.args[1]"),
    (["--cubic", ":CI"], None, "vw.args[1]"),
    (["--interactions", "CCCI"], None, "vw.args[1]"),
    (["--interactions", "CCIII"], None, "vw.args[1]"),
    ([t for n in range(9) for t in ("-q", "CI")], None, "vw.args[16]"),
    ([t for n in range(5) for t in ("--cubic", "CCI")], ["--epsilon", "0.1",
     *[t for n in range(4) for t in ("-q", "CI")]], "vw.explore_args[8]"),
    (["-b", "24"], None, "vw.args[1]"),
    (["-b", "20", "--cb_type", "mtr"], ["--bag", "32"], "vw.args[0]"),
    (["--cb_type", "mtr"], ["--bit_precision", "22", "--cover", "8"], "vw.explore_args[0]"),
    (["--cb_type", "mtr"], ["--rnd", "32", "-b", "20"], "vw.explore_args[2]"),
    (["--passes", "3"], None, "vw.args[0]"),
    (["--ngram", "I5"], None, "vw.args[0]"),
    (["--nn", "1000"], None, "vw.args[0]"),
    (["--lrq", "CI1000"], None, "vw.args[1]"),  # low-rank terms cap their rank at 64
]  # fmt: skip


def test_vw_args_whose_cost_has_no_bound_are_refused_and_change_nothing(
    aws: dict[str, str], api: Api, current: dict[str, Any]
) -> None:
    # Given the stored spec and the whole state
    before = snapshot(aws)
    for args, explore, field in COSTLY_VW_ARGS:
        # When a spec with an uncapped interaction, ensemble or size is put
        status, error = send(api, "policy", _with_vw(current["spec"], args, explore))
        # Then it is a 422 naming the argument, and nothing changed
        assert_refused(status, error, field)
        assert (status, error["error"]) == (422, "validation_error")
    assert snapshot(aws) == before
    status, after, _ = api.call(admin_handler, "GET", "/v1/policies/for-you", resource=POLICY)
    assert (status, after) == (200, current)
    # And the largest allowed ones are accepted
    largest = _with_vw(current["spec"], ["-b", "18", *["--cubic", "CCI"] * 4,
                                          *["-q", "CI"] * 4], ["--cover", "32"])  # fmt: skip
    status, stored = send(api, "policy", largest)
    assert status == 200, stored


# Every numeric field of a spec, as (path of keys, field named in the error).
NUMERIC_FIELDS: list[tuple[tuple[str | int, ...], str]] = [
    (("version",), "version"),
    (("slate_size",), "slate_size"),
    (("exploration", "budget"), "exploration.budget"),
    (("exploration", "window_seconds"), "exploration.window_seconds"),
    (("exploration", "bucket_seconds"), "exploration.bucket_seconds"),
    (("exploration", "shards"), "exploration.shards"),
    (("exploration", "softmax_temperature"), "exploration.softmax_temperature"),
    (("exploration", "squarecb_gamma"), "exploration.squarecb_gamma"),
    (("exploration", "discovery_positions", 0), "exploration.discovery_positions"),
    (("cold_start", "segments", 0, "max_interactions"), "cold_start.segments.0.max_interactions"),
    (("cold_start", "segments", 0, "budget"), "cold_start.segments.0.budget"),
    (("cold_start", "prior_examples"), "cold_start.prior_examples"),
    (("cold_start", "cold_user_prior_weight"), "cold_start.cold_user_prior_weight"),
    (("cold_start", "popularity_smoothing"), "cold_start.popularity_smoothing"),
    (("cold_start", "new_item", "max_age_hours"), "cold_start.new_item.max_age_hours"),
    (("cold_start", "new_item", "max_impressions"), "cold_start.new_item.max_impressions"),
    (("cold_start", "new_item", "boost"), "cold_start.new_item.boost"),
    (("diversity", "max_per_category"), "diversity.max_per_category"),
    (("diversity", "max_per_creator"), "diversity.max_per_creator"),
    (("rewards", "types", "click"), "rewards.types"),
    (("rewards", "default"), "rewards.default"),
    (("rewards", "wait_seconds"), "rewards.wait_seconds"),
    (("rewards", "max_reward"), "rewards.max_reward"),
]
BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", str(10**400), "-1e308"]


def _spec_text(spec: dict[str, Any], path: tuple[str | int, ...], number: str) -> str:
    """The spec as JSON text with the raw ``number`` at ``path`` (NaN and 1e400 are text)."""
    data = copy.deepcopy(spec)
    data["exploration"]["discovery_positions"] = [1]
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = "@NUMBER@"
    return json.dumps(data).replace('"@NUMBER@"', number)


def test_bad_numbers_and_over_cap_lists_in_specs_are_refused_and_change_nothing(
    aws: dict[str, str], api: Api, current: dict[str, Any]
) -> None:
    spec = current["spec"]
    segments = [{"name": f"s{i}", "max_interactions": i} for i in range(16)] + [{"name": "last"}]

    def edit(section: str, **values: Any) -> dict[str, Any]:
        return {**spec, section: {**spec[section], **values}}

    cases: list[tuple[Any, str]] = [
        (edit("cold_start", segments=segments), "cold_start.segments"),
        (edit("rewards", types={f"t{i}": 1.0 for i in range(65)}), "rewards.types"),
        (edit("rewards", types={"cl|ck": 1.0}), "rewards.types"),
        (edit("rewards", types={"clíck": 1.0}), "rewards.types"),
        (edit("rewards", types={"a" * 65: 1.0}), "rewards.types"),
        (edit("rewards", types={"": 1.0}), "rewards.types"),
        (edit("rewards", types={}), "rewards.types"),
        (edit("exploration", discovery_positions=[1] * 2), "exploration.discovery_positions"),
        ({**spec, "description": "x" * 2001}, "description"),
        ({**spec, "description": "\ud800"}, "description"),
        ({**spec, "description": [[["deep"]]]}, "description"),
        ({**spec, "name": "for-you\n"}, "name"),
        ({**spec, "name": "other"}, "name"),
        ({**spec, "evil": True}, "evil"),
        (edit("cold_start", segments=[{"name": "Cold|1"}]), "cold_start.segments.0.name"),
    ]
    before = snapshot(aws)
    # Every numeric field with a number that is not finite or out of its range
    count = 0
    for path, field in NUMERIC_FIELDS:
        for number in BAD_NUMBERS:
            status, error = send(api, "policy", _spec_text(current["spec"], path, number))
            assert_refused(status, error)
            # The field, or the element of it (list index, map key) that holds the number
            named = error["field"] == field or error["field"].startswith(f"{field}.")
            assert (status, named) == (422, True), (number, error)
            count += 1
    assert count == len(NUMERIC_FIELDS) * len(BAD_NUMBERS) == 138
    # Lists, maps and strings over their caps
    for body, field in cases:
        status, error = send(api, "policy", body)
        assert_refused(status, error, field)
        assert status == 422
    assert snapshot(aws) == before
    status, after, _ = api.call(admin_handler, "GET", "/v1/policies/for-you", resource=POLICY)
    assert (status, after) == (200, current)
