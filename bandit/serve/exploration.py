"""Exploration distributions over the candidates still allowed in a slot.

Every function takes the allowed candidates' scores (higher is better) and their exploration
weights (the new-item boost) and returns a probability vector of the same length. The slate
sampler mixes it with the greedy choice: ``p = (1 - rate) * greedy + rate * p_explore``.
"""

from __future__ import annotations

import numpy as np

from bandit.spec import ExplorationAlgorithm, ExplorationSpec


def _normalise(weights: np.ndarray) -> np.ndarray:
    total = float(weights.sum())
    if not np.isfinite(total) or total <= 0.0:
        return np.full(len(weights), 1.0 / len(weights))
    return weights / total


def uniform(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Epsilon-greedy's exploration: uniform, scaled by the boost weights."""
    return _normalise(np.asarray(weights, dtype=np.float64).copy())


def softmax(scores: np.ndarray, weights: np.ndarray, temperature: float) -> np.ndarray:
    """Boltzmann exploration: ``p ~ weight * exp(score / temperature)``.

    >>> softmax(np.array([0.0, 0.0]), np.ones(2), 1.0).tolist()
    [0.5, 0.5]
    """
    logits = np.asarray(scores, dtype=np.float64) / temperature
    logits -= logits.max()
    return _normalise(np.exp(logits) * weights)


def squarecb(scores: np.ndarray, weights: np.ndarray, gamma: float) -> np.ndarray:
    """SquareCB (Foster & Rakhlin): ``p_a = 1 / (K + gamma * gap_a)``, the rest on the best.

    >>> [round(x, 3) for x in squarecb(np.array([1.0, 0.0]), np.ones(2), 2.0).tolist()]
    [0.75, 0.25]
    """
    values = np.asarray(scores, dtype=np.float64)
    count = len(values)
    best = int(np.argmax(values))
    probs = 1.0 / (count + gamma * (values[best] - values))
    probs[best] = 0.0
    probs[best] = max(0.0, 1.0 - probs.sum())
    return _normalise(probs * weights)


def distribution(spec: ExplorationSpec, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The exploration distribution the policy's algorithm gives over allowed candidates.

    For ``vw_pmf`` the scores are VW's own pmf, renormalised over the allowed candidates.
    """
    algorithm = spec.algorithm
    if algorithm is ExplorationAlgorithm.EPSILON_GREEDY:
        return uniform(scores, weights)
    if algorithm is ExplorationAlgorithm.SOFTMAX:
        return softmax(scores, weights, spec.softmax_temperature)
    if algorithm is ExplorationAlgorithm.SQUARECB:
        return squarecb(scores, weights, spec.squarecb_gamma)
    return _normalise(np.clip(np.asarray(scores, dtype=np.float64), 0.0, None) * weights)
