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
        try:
            per_slot = np.ndim(rewards) == 2
        except ValueError:  # ragged: let ``reals`` name the argument
            per_slot = False
        r = reals("rewards", rewards, (n, slots) if per_slot else (n,))
        total = r.sum(axis=1) if per_slot else r
        return mean_estimate(total * (1.0 - slots + ratio.sum(axis=1)), method, alpha)
    if method == "independent_ips":
        r = reals("rewards", rewards, (n, slots))
        return mean_estimate((r * ratio).sum(axis=1), method, alpha)
    raise ValueError(f"method: must be pseudo_inverse or independent_ips, got {method!r}")


def _matrix_shape(values: ArrayLike) -> tuple[int, int]:
    try:
        shape = np.shape(values)
    except ValueError as error:  # a ragged nested list
        raise ValueError("logging_slot_p: must be a rectangular (n, slots) array") from error
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"logging_slot_p: must be a non-empty (n, slots) array, got shape {shape}")
    return shape[0], shape[1]
