"""Simulated traffic through the handlers: rank, reward every shown slot, learn as it goes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from functions.rank.app import lambda_handler as rank_handler
from functions.rewards.app import lambda_handler as rewards_handler
from tests.functional.conftest import Api
from tests.queues import deliver_all

Answer = dict[str, Any]
LEARN_EVERY = 25


def run_traffic(
    api: Api,
    aws: dict[str, str],
    policy: str,
    events: int,
    *,
    request: Callable[[int], dict[str, Any]],
    reward: Callable[[int, dict[str, Any]], float],
    more_rewards: Callable[[int, Answer], list[dict[str, Any]]] | None = None,
) -> list[Answer]:
    """Rank ``events`` times with ``request(number)``, post a click worth
    ``reward(number, slot)`` for every shown slot (plus ``more_rewards(number, answer)``), and
    route and learn everything queued every ``LEARN_EVERY`` events and at the end."""
    answers = []
    for number in range(events):
        status, answer, _ = api.call(
            rank_handler,
            "POST",
            f"/v1/policies/{policy}/rank",
            request(number),
            resource="/v1/policies/{policy}/rank",
        )
        assert status == 200, answer
        answers.append(answer)
        posted = [
            {
                "event_id": answer["event_id"],
                "item_id": slot["id"],
                "type": "click",
                "value": reward(number, slot),
            }
            for slot in answer["slate"]
        ]
        if more_rewards is not None:
            posted += more_rewards(number, answer)
        body = json.dumps({"rewards": posted})
        status, accepted, _ = api.call(rewards_handler, "POST", "/v1/rewards", body, sign_body=True)
        assert status == 202, accepted
        if number % LEARN_EVERY == LEARN_EVERY - 1:
            assert deliver_all(aws) == []
    assert deliver_all(aws) == []
    return answers
