"""Quality: every policy on the same simulated stream, against uniform, popularity and oracle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bandit.simulate.arena import (
    BanditContender,
    Contender,
    OracleContender,
    PopularityContender,
    UniformContender,
    run,
    summarise,
)
from bandit.simulate.simulation import Population
from bandit.spec import VWSettings, load_spec

POLICIES = Path(__file__).resolve().parent.parent / "policies"
# The same for-you policy with importance-weighted estimators, to show why it uses ``dm``.
ABLATION_CB_TYPES = ("mtr", "ips")


def quality(
    decisions: int = 20_000,
    slate_size: int = 5,
    candidates: int = 50,
    seed: int = 7,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """CTR, exploration share, coverage and diversity of each policy and baseline."""
    population = Population(seed=seed, candidates=candidates)
    specs = {name: load_spec(POLICIES / f"{name}.yaml") for name in ("for-you", "explore")}
    ablations = {
        f"for-you, cb_type {cb_type}": specs["for-you"].model_copy(
            update={"vw": VWSettings(args=("--cb_type", cb_type, "-q", "CI", "-l", "0.1"))}
        )
        for cb_type in ABLATION_CB_TYPES
    }
    contenders: list[Contender] = [
        BanditContender(specs["for-you"]),
        BanditContender(specs["explore"]),
        *(BanditContender(spec, name) for name, spec in ablations.items()),
        UniformContender(seed=seed),
        PopularityContender(),
        OracleContender(population),
    ]
    tracks = run(
        population,
        contenders,
        decisions=decisions,
        slate_size=slate_size,
        seed=seed,
        progress=progress,
    )
    summaries = {name: summarise(track, population.n_items) for name, track in tracks.items()}
    oracle = summaries["oracle"].expected_ctr_last_quarter
    results: dict[str, Any] = {
        "decisions": decisions,
        "slate_size": slate_size,
        "candidates": candidates,
        "catalog_size_at_end": population.n_items,
        "users_at_end": population.n_users,
        "seed": seed,
        "policies": {},
    }
    for name, summary in summaries.items():
        row = asdict(summary)
        row["oracle_ratio_last_quarter"] = summary.expected_ctr_last_quarter / oracle
        if name in specs:
            row["exploration_target"] = specs[name].budgets()
        row["ablation"] = name in ablations
        results["policies"][name] = row
    return results
