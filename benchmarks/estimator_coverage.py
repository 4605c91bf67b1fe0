"""Coverage of the off-policy estimators' intervals on simulated logs with a known true value.

The world is fixed (``world_seed``): ``contexts`` equally likely contexts, ``arms`` arms with
Bernoulli rewards of known means. The logging policy is epsilon-greedy around an imperfect model
of those means (the truth plus noise), so it favours a wrong arm in some contexts; the target
policy plays the truly best arm in every context, so its value is known exactly and the weights
are heavy (``1 / (epsilon / arms)``) where the two disagree. Each seed draws ``n`` fresh logs
and asks whether each estimator's ``1 - alpha`` interval contains the true value.

DR's reward model is cross-fitted: each half of the logs is scored by per-(context, arm) means
fitted on the other half, shrunk towards per-arm means, so it is reasonable but imperfect and
never sees the example it predicts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bandit.evaluate.ope import METHODS, estimate
from benchmarks.interval_coverage import rare_coverage, rare_markdown

TARGET_COVERAGE = 0.90
COVERAGE_TARGETS = ("snips", "dr")
# Pseudo-counts pulling a (context, arm) mean towards the arm's mean when it has few examples.
SHRINKAGE = 5.0


def _world(
    contexts: int, arms: int, epsilon: float, world_seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True means, logging and target policies, each of shape (contexts, arms)."""
    rng = np.random.default_rng(world_seed)
    means = rng.uniform(0.05, 0.6, (contexts, arms))
    believed = means + rng.normal(0.0, 0.1, (contexts, arms))
    logging = np.full((contexts, arms), epsilon / arms)
    logging[np.arange(contexts), believed.argmax(axis=1)] += 1.0 - epsilon
    target = np.zeros((contexts, arms))
    target[np.arange(contexts), means.argmax(axis=1)] = 1.0
    return means, logging, target


def _reward_model(
    contexts: np.ndarray, actions: np.ndarray, rewards: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """Per-(context, arm) mean rewards shrunk towards per-arm means (the global mean if unseen)."""
    cells, arms = shape[0] * shape[1], shape[1]
    flat = contexts * arms + actions
    counts = np.bincount(flat, minlength=cells).reshape(shape)
    sums = np.bincount(flat, weights=rewards, minlength=cells).reshape(shape)
    arm_counts, arm_sums = counts.sum(axis=0), sums.sum(axis=0)
    overall = float(rewards.mean())
    arm_means = (arm_sums + SHRINKAGE * overall) / (arm_counts + SHRINKAGE)
    result: np.ndarray = (sums + SHRINKAGE * arm_means) / (counts + SHRINKAGE)
    return result


def _cross_fitted(
    contexts: np.ndarray, actions: np.ndarray, rewards: np.ndarray, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """DR's ``reward_hat`` and ``reward_hat_target``, each half predicted by the other half."""
    n = len(rewards)
    half = np.arange(n) < n // 2
    reward_hat, reward_hat_target = np.empty(n), np.empty(n)
    for fold in (half, ~half):
        model = _reward_model(contexts[~fold], actions[~fold], rewards[~fold], target.shape)
        reward_hat[fold] = model[contexts[fold], actions[fold]]
        reward_hat_target[fold] = (target * model).sum(axis=1)[contexts[fold]]
    return reward_hat, reward_hat_target


def coverage(
    seeds: int = 200,
    n: int = 2_000,
    *,
    arms: int = 10,
    contexts: int = 20,
    epsilon: float = 0.3,
    alpha: float = 0.05,
    clip: float = 10.0,
    world_seed: int = 0,
    rare_sizes: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Per estimator: share of seeds whose interval covers the truth, mean width, bias, spread.

    ``rare_rewards`` holds ``benchmarks.interval_coverage.rare_coverage`` over the same seeds, at
    ``rare_sizes`` (default ``n``, 2.5 ``n`` and 10 ``n`` events).

    >>> result = coverage(seeds=3, n=200)
    >>> sorted(result["methods"]), 0.0 <= result["methods"]["snips"]["coverage"] <= 1.0
    (['clipped_ips', 'dm', 'dr', 'ips', 'snips'], True)
    """
    means, logging, target = _world(contexts, arms, epsilon, world_seed)
    true_value = float((target * means).sum(axis=1).mean())
    values = {method: np.empty(seeds) for method in METHODS}
    widths = {method: np.empty(seeds) for method in METHODS}
    covered = {method: np.zeros(seeds, dtype=bool) for method in METHODS}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        ctx = rng.integers(0, contexts, n)
        cumulative = logging.cumsum(axis=1)[ctx]
        actions = np.minimum((cumulative < rng.random((n, 1))).sum(axis=1), arms - 1)
        rewards = (rng.random(n) < means[ctx, actions]).astype(np.float64)
        reward_hat, reward_hat_target = _cross_fitted(ctx, actions, rewards, target)
        for method in METHODS:
            result = estimate(
                rewards,
                logging[ctx, actions],
                target[ctx, actions],
                method,
                alpha,
                clip=clip,
                reward_hat=reward_hat,
                reward_hat_target=reward_hat_target,
            )
            values[method][seed] = result.value
            widths[method][seed] = result.width
            covered[method][seed] = result.contains(true_value)
    return {
        "seeds": seeds,
        "n": n,
        "arms": arms,
        "contexts": contexts,
        "epsilon": epsilon,
        "alpha": alpha,
        "clip": clip,
        "world_seed": world_seed,
        "true_value": true_value,
        "logging_value": float((logging * means).sum(axis=1).mean()),
        "max_weight": float((target / logging).max()),
        "methods": {
            method: {
                "coverage": float(covered[method].mean()),
                "mean_width": float(widths[method].mean()),
                "mean_bias": float(values[method].mean() - true_value),
                "sd": float(values[method].std(ddof=1)) if seeds > 1 else 0.0,
            }
            for method in METHODS
        },
        "rare_rewards": rare_coverage(
            seeds, rare_sizes or (n, 5 * n // 2, 10 * n), alpha=alpha, world_seed=world_seed
        ),
    }


def markdown(result: dict[str, Any]) -> list[str]:
    """A ``docs/benchmarks.md`` section: one row per estimator, verdicts for SNIPS and DR, then
    the rare-reward intervals' section when the result has one.

    >>> row = {"coverage": 0.95, "mean_width": 0.1, "mean_bias": 0.001, "sd": 0.02}
    >>> lines = markdown({"seeds": 2, "n": 10, "arms": 3, "contexts": 1, "epsilon": 0.3,
    ...     "alpha": 0.05, "clip": 10.0, "true_value": 0.5, "logging_value": 0.4,
    ...     "max_weight": 10.0, "methods": {"snips": row}})
    >>> lines[-1]
    '| snips | 95.0% | 0.1000 | +0.0010 | 0.0200 | >= 90% | met |'
    """
    level = 1.0 - result["alpha"]
    lines = [
        "## Off-policy estimator coverage",
        "",
        f"{result['seeds']} seeds of {result['n']:,} logged decisions each: "
        f"{result['contexts']} contexts, {result['arms']} arms with Bernoulli rewards, logged by "
        f"epsilon-greedy (epsilon {result['epsilon']}) around an imperfect model; the target "
        f"plays the best arm (true value {result['true_value']:.4f}, logging policy "
        f"{result['logging_value']:.4f}, weights up to {result['max_weight']:.0f}). Coverage: "
        f"share of seeds whose {level:.0%} interval contains the true value. Clipped IPS caps "
        f"weights at {result['clip']:g}; DR uses a cross-fitted per-(context, arm) reward model.",
        "",
        "| method | coverage | mean width | mean bias | sd of estimate | target | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, row in result["methods"].items():
        targeted = method in COVERAGE_TARGETS
        target = f">= {TARGET_COVERAGE:.0%}" if targeted else "-"
        verdict = ("met" if row["coverage"] >= TARGET_COVERAGE else "NOT met") if targeted else "-"
        lines.append(
            f"| {method} | {row['coverage']:.1%} | {row['mean_width']:.4f} | "
            f"{row['mean_bias']:+.4f} | {row['sd']:.4f} | {target} | {verdict} |"
        )
    if "rare_rewards" in result:
        lines += ["", *rare_markdown(result["rare_rewards"])]
    return lines
