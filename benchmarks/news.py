"""The classic VW news scenario: two users, two times of day, seven articles."""

from __future__ import annotations

from typing import Any

import numpy as np

from bandit.decision_log import LoggedReward
from bandit.learn.learning import learn_record
from bandit.serve.ranker import Ranker, RankRequest
from bandit.simulate.simulation import NewsScenario
from bandit.spec import parse_spec


def news(rounds: int = 5_000, epsilon: float = 0.2, seed: int = 3) -> dict[str, Any]:
    """CTR of an epsilon-greedy policy over ``rounds``, with the ceiling (1-e) + e/7."""
    spec = parse_spec(
        {
            "name": "news",
            "slate_size": 1,
            # As in VW's own tutorial: MTR, context x article interactions.
            "vw": {"args": ["--cb_type", "mtr", "-q", "CI"]},
            "exploration": {"algorithm": "epsilon_greedy", "budget": epsilon},
            "cold_start": {"segments": [{"name": "all"}], "prior_examples": 0},
        }
    )
    scenario = NewsScenario()
    clock = [0.0]
    ranker = Ranker(spec, clock=lambda: clock[0])
    rng = np.random.default_rng(seed)
    candidates = scenario.candidates()
    rewards = np.zeros(rounds)
    for t in range(rounds):
        clock[0] = float(t)
        context = scenario.context(rng)
        result = ranker.rank(RankRequest(f"news-{t}", context, candidates, timestamp=float(t)))
        shown = result.slots[0].item_id
        rewards[t] = scenario.reward(context, shown)
        logged = (
            [LoggedReward(item_id=shown, type="click", timestamp=t + 1.0)] if rewards[t] else []
        )
        record = result.record(spec, 0).model_copy(update={"rewards": logged})
        learn_record(ranker.model, record, spec)
    window = min(1_000, rounds)
    return {
        "rounds": rounds,
        "epsilon": epsilon,
        "ctr": float(rewards.mean()),
        "ctr_last_1000": float(rewards[-window:].mean()),
        "ceiling": NewsScenario.epsilon_greedy_ceiling(epsilon),
        "exploration_share": ranker.budget.spend("all").share,
    }
