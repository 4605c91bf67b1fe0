"""The metrics each rank emits for the budget-drift alarm, read back from Powertools' EMF lines."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.rank.app import lambda_handler as rank_handler
from tests.functional.conftest import Api

RANK = "/v1/policies/{policy}/rank"
BUDGET_METRICS = ("ExploredSlots", "ServedSlots", "BudgetTargetSlots")


def emf_blobs(output: str) -> list[dict[str, Any]]:
    """Every EMF document Powertools printed."""
    blobs = []
    for line in output.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            blobs.append(document)
    return blobs


def rank(api: Api, policy: str, candidates: int, slate_size: int) -> dict[str, Any]:
    body = {
        "context": {"hour": 9},
        "user_id": "new-user",
        "candidates": [{"id": f"i{n}", "category": f"c{n % 3}"} for n in range(candidates)],
        "slate_size": slate_size,
    }
    path = f"/v1/policies/{policy}/rank"
    status, payload, _ = api.call(rank_handler, "POST", path, body, resource=RANK)
    assert status == 200, payload
    return dict(payload)


# A new user is in the "cold" segment: budget 0.10 for for-you, 0.40 for explore.
@pytest.mark.parametrize("case", [("for-you", 5, 0.10), ("explore", 5, 0.40), ("for-you", 3, 0.10)])
def test_each_rank_emits_its_explored_served_and_target_slots_in_one_line(
    aws: dict[str, str], api: Api, capsys: pytest.CaptureFixture[str], case: tuple[str, int, float]
) -> None:
    policy, slate_size, target_share = case
    # Given a clean output
    capsys.readouterr()
    # When one rank is served
    answer = rank(api, policy, candidates=12, slate_size=slate_size)
    # Then one EMF line (namespace Serendip, dimension service) carries all three metrics
    (blob,) = [b for b in emf_blobs(capsys.readouterr().out) if "ServedSlots" in b]
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Serendip"
    assert directive["Dimensions"] == [["service"]]
    assert blob["service"] == "serendip"
    names = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert {name: names[name] for name in BUDGET_METRICS} == dict.fromkeys(BUDGET_METRICS, "Count")
    # And they are the slate's own numbers
    explored = sum(slot["explored"] for slot in answer["slate"])
    assert answer["exploration"]["budget"] == pytest.approx(target_share)
    assert blob["ServedSlots"] == [float(slate_size)]
    assert blob["ExploredSlots"] == [float(explored)]
    assert blob["BudgetTargetSlots"] == [pytest.approx(target_share * slate_size)]


def test_many_ranks_add_up_to_the_slot_counts_the_drift_alarm_compares(
    aws: dict[str, str], api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 40 ranks of the explore policy for new users (target 0.40 of the slots)
    capsys.readouterr()
    answers = [rank(api, "explore", candidates=8, slate_size=4) for _ in range(40)]
    blobs = emf_blobs(capsys.readouterr().out)

    def total(metric: str) -> float:
        return sum(sum(b[metric]) for b in blobs if metric in b)

    # Then the sums CloudWatch adds up are the served slates' own counts
    served = sum(len(a["slate"]) for a in answers)
    explored = sum(slot["explored"] for a in answers for slot in a["slate"])
    assert served == 160
    assert (total("ServedSlots"), total("ExploredSlots")) == (served, explored)
    assert total("BudgetTargetSlots") == pytest.approx(0.40 * served)
