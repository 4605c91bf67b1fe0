"""Does history help where taste matters? for-you with and without history on the taste world.

``python -m benchmarks.taste [--rounds 20000] [--users 500] [--base-ctr 0.06] [--seed 1]`` runs
each policy in process on one stream of ``bandit.simulate.taste_world.TasteWorld`` (personal tastes
the context does not reveal, a 10,000-item catalog, 20 candidates per request): rank, draw clicks
from the true probabilities, learn the event at once, and keep each user's rewarded items as
the learner's profiles do (``bandit.learn.history``). It prints the first-slot CTR and the clicks
per slate over the last quarter of the stream, beside the oracle (true probabilities) and the best
context-only slate.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from bandit.decision_log import LoggedReward
from bandit.evaluate.replay import observe
from bandit.learn.history import Rewarded, snapshot
from bandit.serve.ranker import Ranker, RankRequest
from bandit.simulate.taste_world import TasteWorld
from bandit.spec import PolicySpec, load_spec
from benchmarks.fresh_process import ROOT

SLATE = 3


def policies() -> dict[str, PolicySpec]:
    """for-you as shipped, and with history crossed with the items."""
    base = load_spec(ROOT / "policies" / "for-you.yaml").model_copy(update={"slate_size": SLATE})
    history = base.history.model_copy(update={"enabled": True})
    vw = base.vw.model_copy(update={"args": (*base.vw.args, "-q", "HI")})
    return {
        "for-you": base,
        "for-you + history": base.model_copy(update={"history": history, "vw": vw}),
    }


def run(spec: PolicySpec, rounds: int, seed: int, **world: Any) -> dict[str, float]:
    """One policy over one stream: first-slot CTR and clicks per slate, last quarter."""
    taste = TasteWorld(seed=seed, **world)
    rng = np.random.default_rng(seed)
    ranker = Ranker(spec, clock=lambda: taste.now)
    profiles: dict[str, list[Rewarded]] = {}
    first: list[float] = []
    per_slate: list[float] = []
    for step in range(rounds):
        request = taste.next_request()
        user = request.user_id
        history = None
        if spec.history.enabled:
            h = spec.history
            history = snapshot(
                profiles.get(user, []),
                items=h.items,
                categories=h.categories,
                creators=h.creators,
                decay=h.decay,
            )
        rank = RankRequest(
            f"evt-{step}",
            request.context,
            request.candidates,
            user,
            interactions=request.interactions,
            timestamp=request.timestamp,
            history=history,
        )
        record = ranker.rank(rank).record(spec, model_version=0)
        shown = record.shown_ids()
        clicks = taste.clicks(user, shown, rng)
        first.append(float(taste.click_probabilities(user, shown[:1])[0]))
        per_slate.append(taste.expected_clicks(user, shown))
        rewards = [
            LoggedReward(item_id=item, type="click", timestamp=request.timestamp)
            for item, clicked in zip(shown, clicks, strict=True)
            if clicked
        ]
        observe(ranker, record.model_copy(update={"rewards": rewards}), [float(c) for c in clicks])
        by_id = {c.id: c for c in request.candidates}
        profiles.setdefault(user, []).extend(
            Rewarded(item, by_id[item].category, by_id[item].creator)
            for item, clicked in zip(shown, clicks, strict=True)
            if clicked
        )
    tail = rounds // 4
    return {
        "first_slot_ctr": float(np.mean(first[-tail:])),
        "clicks_per_slate": float(np.mean(per_slate[-tail:])),
    }


def references(rounds: int, seed: int, **settings: Any) -> dict[str, dict[str, float]]:
    """The oracle and the best context-only slate on the same stream."""
    world = TasteWorld(seed=seed, **settings)
    figures: dict[str, list[tuple[float, float]]] = {"oracle": [], "context only (best)": []}
    for _ in range(rounds):
        request = world.next_request()
        user = request.user_id
        slates = {
            "oracle": world.oracle_slate(user, request.candidates, SLATE),
            "context only (best)": world.context_oracle_slate(
                request.context, request.candidates, SLATE
            ),
        }
        for name, slate in slates.items():
            probabilities = world.click_probabilities(user, slate)
            figures[name].append((float(probabilities[0]), float(probabilities.sum())))
    tail = rounds // 4
    return {
        name: {
            "first_slot_ctr": float(np.mean([f for f, _ in values[-tail:]])),
            "clicks_per_slate": float(np.mean([s for _, s in values[-tail:]])),
        }
        for name, values in figures.items()
    }


def taste_bench(
    rounds: int, seed: int = 1, users: int = 500, base_ctr: float = 0.06
) -> dict[str, Any]:
    """Every policy and reference on one stream of ``rounds`` requests."""
    world = {"n_users": users, "base_ctr": base_ctr}
    results = {name: run(spec, rounds, seed, **world) for name, spec in policies().items()}
    return {
        "rounds": rounds,
        "seed": seed,
        "slate": SLATE,
        "world": world,
        **results,
        **references(rounds, seed, **world),
    }


POLICY_ROWS = ("for-you", "for-you + history", "context only (best)", "oracle")


def markdown(result: dict[str, Any]) -> list[str]:
    """The "Taste world" section of docs/benchmarks.md, as lines."""
    world = result["world"]
    base = result["for-you"]["first_slot_ctr"]
    lines = [
        "## Taste world: does history help?",
        "",
        f"`bandit.simulate.taste_world.TasteWorld`: personal tastes the context does not reveal, a "
        f"10,000-item catalog of hidden taste clusters, {world['n_users']:,} users, base CTR "
        f"{world['base_ctr']:g}; one stream of {result['rounds']:,} requests of 20 candidates, "
        f"slates of {result['slate']}, each policy in process learning every event at once "
        "(`python -m benchmarks.taste`). Figures over the last quarter; the two references "
        "use the true probabilities.",
        "",
        "| policy | first-slot CTR | vs for-you | clicks per slate |",
        "|---|---:|---:|---:|",
    ]
    for name in POLICY_ROWS:
        figures = result[name]
        ratio = figures["first_slot_ctr"] / base if base else float("nan")
        lines.append(
            f"| {name} | {figures['first_slot_ctr']:.4f} | {ratio:.2f}x "
            f"| {figures['clicks_per_slate']:.4f} |"
        )
    return lines


def main() -> None:
    """Print the comparison as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.taste")
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--base-ctr", type=float, default=0.06)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(taste_bench(args.rounds, args.seed, args.users, args.base_ctr), indent=2))


if __name__ == "__main__":
    main()
