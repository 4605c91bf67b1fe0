"""Coverage of the interval methods on rare-reward logs (CTR about 0.5%, weights up to 81).

The world is fixed (``world_seed``): ``contexts`` equally likely contexts, ``arms`` arms with
Bernoulli rewards of means drawn from [0.05%, 0.75%]. The logging policy is epsilon-greedy
(epsilon 0.5) around a noisy model of those means, the target epsilon-greedy around the true
best arm, so where they disagree the target's favourite was logged with probability
``0.5 / arms`` and weighs ``(0.5 + 0.5 / arms) / (0.5 / arms) = 81``. With a few thousand events
most logs hold a handful of rewarded events under the target, often none with a large weight:
the CLT interval's standard error then rests on almost nothing. Each seed draws fresh logs of
every size; each estimator (IPS, SNIPS) gets every interval method, and ``clt`` is the plain
normal interval as it was before intervals were bounded (unclipped, no floor).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bandit.evaluate.intervals import INTERVALS, UNBOUNDED, IntervalMethod
from bandit.evaluate.ope import Method, estimate

TARGET_COVERAGE = 0.90
MAX_WIDTH_RATIO = 1.5
ESTIMATORS: tuple[Method, ...] = ("ips", "snips")
# Each row: its name, the interval method and the reward range (None: the rewards' own, [0, 1]).
SETTINGS: tuple[tuple[str, IntervalMethod, tuple[float, float] | None], ...] = (
    ("clt", "normal", UNBOUNDED),
    *((name, name, None) for name in INTERVALS),
)
ROWS = tuple(name for name, _, _ in SETTINGS)
Cells = dict[tuple[str, str], np.ndarray]


def _world(
    contexts: int, arms: int, epsilon: float, world_seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True means, logging and target policies, each of shape (contexts, arms)."""
    rng = np.random.default_rng(world_seed)
    means = rng.uniform(0.0005, 0.0075, (contexts, arms))
    believed = means + rng.normal(0.0, 0.002, (contexts, arms))

    def greedy(best: np.ndarray) -> np.ndarray:
        policy = np.full((contexts, arms), epsilon / arms)
        policy[np.arange(contexts), best] += 1.0 - epsilon
        return policy

    return means, greedy(believed.argmax(axis=1)), greedy(means.argmax(axis=1))


def rare_coverage(
    seeds: int = 200,
    sizes: tuple[int, ...] = (2_000, 5_000, 20_000),
    *,
    arms: int = 80,
    contexts: int = 20,
    epsilon: float = 0.5,
    alpha: float = 0.05,
    world_seed: int = 0,
) -> dict[str, Any]:
    """Per size, estimator and interval: coverage, mean width, and the width where CLT covers.

    >>> result = rare_coverage(seeds=2, sizes=(300,))
    >>> sorted(result["sizes"]["300"]["snips"]), result["true_value"] < 0.01
    (['bootstrap', 'clt', 'el', 'normal'], True)
    """
    means, logging, target = _world(contexts, arms, epsilon, world_seed)
    true_value = float((target * means).sum(axis=1).mean())
    results: dict[str, Any] = {}
    for n in sizes:
        widths: Cells = {(e, row): np.empty(seeds) for e in ESTIMATORS for row in ROWS}
        covered: Cells = {(e, row): np.zeros(seeds, dtype=bool) for e in ESTIMATORS for row in ROWS}
        for seed in range(seeds):
            rng = np.random.default_rng([world_seed, n, seed])
            ctx = rng.integers(0, contexts, n)
            actions = np.minimum(
                (logging.cumsum(axis=1)[ctx] < rng.random((n, 1))).sum(axis=1), arms - 1
            )
            rewards = (rng.random(n) < means[ctx, actions]).astype(np.float64)
            logged, wanted = logging[ctx, actions], target[ctx, actions]
            for e in ESTIMATORS:
                for row, interval, bounds in SETTINGS:
                    result = estimate(
                        rewards, logged, wanted, e, alpha, interval=interval, reward_range=bounds
                    )
                    widths[e, row][seed] = result.width
                    covered[e, row][seed] = result.contains(true_value)
        results[str(n)] = {
            e: {row: _row(widths, covered, e, row) for row in ROWS} for e in ESTIMATORS
        }
    return {
        "seeds": seeds,
        "arms": arms,
        "contexts": contexts,
        "epsilon": epsilon,
        "alpha": alpha,
        "world_seed": world_seed,
        "true_value": true_value,
        "logging_value": float((logging * means).sum(axis=1).mean()),
        "max_weight": float((target / logging).max()),
        "sizes": results,
    }


def _row(
    widths: Cells,
    covered: Cells,
    estimator: str,
    row: str,
) -> dict[str, float | None]:
    """Coverage and mean width of one interval, and its width relative to CLT where CLT covers."""
    clt_covers = covered[estimator, "clt"]
    width, clt_width = widths[estimator, row], widths[estimator, "clt"]
    ratio = (
        float(width[clt_covers].mean() / clt_width[clt_covers].mean())
        if clt_covers.any() and clt_width[clt_covers].mean() > 0.0
        else None
    )
    return {
        "coverage": float(covered[estimator, row].mean()),
        "mean_width": float(width.mean()),
        "width_ratio_where_clt_covers": ratio,
    }


def verdict(row: dict[str, Any]) -> bool:
    """Whether an interval meets the target: coverage and width relative to CLT where it covers.

    >>> verdict({"coverage": 0.93, "mean_width": 0.01, "width_ratio_where_clt_covers": 1.2})
    True
    """
    ratio = row["width_ratio_where_clt_covers"]
    return row["coverage"] >= TARGET_COVERAGE and (ratio is None or ratio <= MAX_WIDTH_RATIO)


def rare_markdown(result: dict[str, Any]) -> list[str]:
    """A ``docs/benchmarks.md`` section: coverage and width of every interval, size by size."""
    level = 1.0 - result["alpha"]
    lines = [
        "## Interval coverage on rare rewards",
        "",
        f"{result['seeds']} seeds per size: {result['contexts']} contexts, {result['arms']} arms "
        f"with Bernoulli rewards (true value of the target {result['true_value']:.4%}, logging "
        f"policy {result['logging_value']:.4%}), logged epsilon-greedy (epsilon "
        f"{result['epsilon']}) around a noisy model, weights up to {result['max_weight']:.0f}. "
        f"Coverage: share of seeds whose {level:.0%} interval contains the true value. `clt` is "
        "the unbounded normal interval; `normal` is it clipped to [0, 1] with the rule-of-three "
        "floor; width ratio: mean width over the mean CLT width, on the seeds where CLT covers. "
        f"Target: coverage >= {TARGET_COVERAGE:.0%} with width ratio <= {MAX_WIDTH_RATIO:g}.",
        "",
        "| events | estimator | interval | coverage | mean width | width ratio | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, estimators in result["sizes"].items():
        for estimator, rows in estimators.items():
            for name, row in rows.items():
                ratio = row["width_ratio_where_clt_covers"]
                shown = "-" if ratio is None else f"{ratio:.2f}"
                met = "met" if verdict(row) else "NOT met"
                lines.append(
                    f"| {int(n):,} | {estimator} | {name} | {row['coverage']:.1%} | "
                    f"{row['mean_width']:.5f} | {shown} | {'-' if name == 'clt' else met} |"
                )
    return lines
