"""Off-policy evaluation of slates from per-slot probabilities.

For ``n`` logged slates of ``K`` slots, ``logging_slot_p[i, k]`` and ``target_slot_p[i, k]`` are
the probabilities that the logging and the target policy put the logged item ``s_ik`` in slot
``k``: **marginal** probabilities ``P(slot k = s_ik)``. Two estimators:

- ``pseudo_inverse`` (Swaminathan et al. 2017, "Off-policy evaluation for slate
  recommendation", example 4): ``V = mean(r_i * (1 - K + sum_k q_ik / p_ik))`` with ``r_i`` the
  slate's total reward. Unbiased when the reward is additive over slots (``r = sum_k
  phi_k(s_k) + noise``) and the logging policy draws the slots independently; the target policy
  may be any slate distribution with these marginals. This is vw-estimators'
  ``slates.pseudo_inverse``.
- ``independent_ips``: ``V = mean(sum_k r_ik * q_ik / p_ik)`` with ``r_ik`` slot ``k``'s own
  reward: an IPS per slot, summed. Unbiased for any logging policy as long as slot ``k``'s
  reward depends on nothing but the item in slot ``k`` (no interaction between slots).

Both intervals are normal (CLT) intervals of the per-slate terms (see ``bandit.evaluate.ope``).

``pseudo_inverse`` above is the closed form for independent slots; it is biased when the logging
policy draws a ranking without repetition, even uniformly. ``ranking_pseudo_inverse`` is the
pseudo-inverse for uniform logging over rankings of ``K`` distinct items out of ``m``
(Swaminathan et al.'s example 2): with ``q_j(a)`` the target's probability of item ``a`` in
position ``j``, ``hits_i = sum_j q_j(s_ij)`` and ``shown_i = sum_j P_target(s_ij in the slate)``,
``V = mean(r_i * (1 + (m - 1) * hits_i + (m - 1) / (m - K) * (shown_i - K)))``: the exact
``q' Gamma^+ 1_s`` weight of the general estimator for that logging policy, unbiased under the
same additivity. Per-slot IPS stays unbiased for any logging policy: ``independent_ips`` with
the logging marginals (``1 / m`` under uniform logging).

Caveat for serendip's own logs: ``bandit.serve.slate`` draws without replacement and logs each
slot's probability *conditional* on the earlier slots. Slot 1's logged probability is its marginal;
later slots' are not, and the slots are not independent, so pass marginals (e.g. by replaying
the draw) and read the pseudo-inverse value as approximate (close when candidates far
outnumber slots). A slate with fewer than ``K`` slots can be padded with probability 1 for both
policies (and reward 0): such a slot adds ``1 - 1`` to the pseudo-inverse weight and nothing to
independent IPS.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from bandit.evaluate.ope import Estimate, check_alpha, mean_estimate, probabilities, reals

SlateMethod = Literal["pseudo_inverse", "independent_ips"]


def slate_estimate(
    rewards: ArrayLike,
    logging_slot_p: ArrayLike,
    target_slot_p: ArrayLike,
    method: SlateMethod = "pseudo_inverse",
    alpha: float = 0.05,
) -> Estimate:
    """Estimate a slate policy's value per slate (see the module docstring).

    ``rewards`` has shape ``(n,)`` (slate totals) or ``(n, K)`` (per-slot rewards, summed for
    ``pseudo_inverse``); ``independent_ips`` needs ``(n, K)``. The probabilities have shape
    ``(n, K)``.

    >>> logging = [[0.5, 0.5], [0.5, 0.5]]
    >>> target = [[1.0, 1.0], [0.0, 1.0]]
    >>> slate_estimate([2.0, 1.0], logging, target).value
    3.5
    >>> slate_estimate([[1.0, 1.0], [0.0, 1.0]], logging, target, "independent_ips").value
    3.0
    """
    p = probabilities(
        "logging_slot_p", logging_slot_p, _matrix_shape(logging_slot_p), positive=True
    )
    n, slots = p.shape
    q = probabilities("target_slot_p", target_slot_p, (n, slots), positive=False)
    check_alpha(alpha)
    ratio = q / p
    if method == "pseudo_inverse":
        total = _slate_totals(rewards, n, slots)
        return mean_estimate(total * (1.0 - slots + ratio.sum(axis=1)), method, alpha)
    if method == "independent_ips":
        r = reals("rewards", rewards, (n, slots))
        return mean_estimate((r * ratio).sum(axis=1), method, alpha)
    raise ValueError(f"method: must be pseudo_inverse or independent_ips, got {method!r}")


def ranking_pseudo_inverse(
    rewards: ArrayLike,
    candidates: ArrayLike,
    target_slot_p: ArrayLike,
    target_shown_p: ArrayLike,
    alpha: float = 0.05,
) -> Estimate:
    """The pseudo-inverse value per slate of logs drawn uniformly over rankings without repetition.

    Event ``i`` ranked ``K`` distinct items out of ``candidates[i]`` (``m_i > K``), all rankings
    equally likely. ``target_slot_p[i, k]`` is the target's probability of the logged item
    ``s_ik`` in slot ``k`` (its marginal), ``target_shown_p[i, k]`` its probability of showing
    ``s_ik`` in any slot. ``rewards`` has shape ``(n,)`` (slate totals) or ``(n, K)`` (summed).
    Unbiased when the reward is additive over slots (see the module docstring).

    >>> # 3 candidates, 2 slots, the target always shows (a, b): so did the log, reward 0.8
    >>> ranking_pseudo_inverse([0.8], [3], [[1.0, 1.0]], [[1.0, 1.0]]).value
    4.0
    """
    n, slots = _matrix_shape(target_slot_p, "target_slot_p")
    q = probabilities("target_slot_p", target_slot_p, (n, slots), positive=False)
    shown = probabilities("target_shown_p", target_shown_p, (n, slots), positive=False)
    if (shown < q - 1e-9).any():
        raise ValueError("target_shown_p: must be at least target_slot_p (slot k is in the slate)")
    m = reals("candidates", candidates, (n,))
    if (m != np.round(m)).any() or (m <= slots).any():
        raise ValueError(f"candidates: must be whole numbers greater than the {slots} slots")
    check_alpha(alpha)
    total = _slate_totals(rewards, n, slots)
    hits, covered = q.sum(axis=1), shown.sum(axis=1)
    weight = 1.0 + (m - 1.0) * hits + (m - 1.0) / (m - slots) * (covered - slots)
    return mean_estimate(total * weight, "ranking_pseudo_inverse", alpha)


def _slate_totals(rewards: ArrayLike, n: int, slots: int) -> np.ndarray:
    """Each slate's total reward from ``(n,)`` totals or ``(n, slots)`` per-slot rewards."""
    try:
        per_slot = np.ndim(rewards) == 2
    except ValueError:  # ragged: let ``reals`` name the argument
        per_slot = False
    r = reals("rewards", rewards, (n, slots) if per_slot else (n,))
    return r.sum(axis=1) if per_slot else r


def _matrix_shape(values: ArrayLike, name: str = "logging_slot_p") -> tuple[int, int]:
    try:
        shape = np.shape(values)
    except ValueError as error:  # a ragged nested list
        raise ValueError(f"{name}: must be a rectangular (n, slots) array") from error
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{name}: must be a non-empty (n, slots) array, got shape {shape}")
    return shape[0], shape[1]
