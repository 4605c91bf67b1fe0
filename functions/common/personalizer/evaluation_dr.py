"""Doubly robust (DR) first-slot estimates for the Personalizer API's evaluations.

With ``estimator: "dr"`` a setting's first-slot value is the mean of DR's per-event term
``g + (q / p) * (r - f)`` (``bandit.evaluate.ope``, docs/evaluation.md): ``f`` is a cross-fitted
reward model's prediction for the logged first item, ``g`` its expectation under the setting's
first-slot distribution, ``q / p`` the importance weight of the logged item. Custom settings get
their ``f`` and ``g`` from the replay (``method="dr"``); ``Baseline`` and ``Random`` from one reward
model fitted here on the same events (``reference_terms``). ``Online`` stays the observed mean:
it is the logging policy itself, so every weight is 1 and the correction ``r - f`` only adds the
model's noise around what was observed.

The DR terms are kept as ``Sums`` of unit weights (``dr_values``), whose SNIPS estimate is the
plain mean with its normal 95% interval: buckets keep the same seven sums as SNIPS's, and add
up over any window the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from bandit.decision_log import DecisionRecord
from bandit.evaluate.replay import FirstSlotTerms
from bandit.evaluate.reward_model import DEFAULT_FOLDS, fit_reward_model
from bandit.spec import PolicySpec
from functions.common.personalizer import errors as codes
from functions.common.personalizer.errors import invalid


def reference_terms(
    records: Sequence[DecisionRecord],
    logged: FirstSlotTerms,
    spec: PolicySpec,
    distributions: Mapping[str, Sequence[np.ndarray]],
    *,
    folds: int = DEFAULT_FOLDS,
) -> dict[str, FirstSlotTerms]:
    """Each named first-slot policy's DR inputs on ``records`` (``logged``'s events, in order).

    ``distributions[name][i]`` is the policy's probability for each of ``records[i]``'s
    candidates, in their order. One cross-fitted reward model serves every policy; too few
    events to fit it is 400 ``InvalidEvaluationContract`` naming ``estimator``.

    >>> from bandit.evaluate.replay import logged_first_slots
    >>> from bandit.simulate.arena import simulated_logs
    >>> spec = PolicySpec(name="demo", slate_size=1)
    >>> records, logged = logged_first_slots(simulated_logs(spec, 40), spec)
    >>> uniform = [np.full(len(r.candidates), 1 / len(r.candidates)) for r in records]
    >>> terms = reference_terms(records, logged, spec, {"Random": uniform})["Random"]
    >>> terms.reward_hat_target.shape == terms.rewards.shape
    True
    """
    try:
        model = fit_reward_model(records, spec, folds=folds)
    except ValueError as exc:
        raise invalid(
            codes.INVALID_EVALUATION, "estimator", f"dr needs a reward model: {exc}"
        ) from exc
    try:
        out = {}
        for name, targets in distributions.items():
            hats = np.array(
                [model.first_slot_terms(r, t) for r, t in zip(records, targets, strict=True)]
            ).reshape(len(records), 2)
            chosen = np.array(
                [t[_first_index(r)] for r, t in zip(records, targets, strict=True)],
                dtype=np.float64,
            )
            out[name] = FirstSlotTerms(
                logged.timestamps,
                logged.rewards,
                logged.logged,
                chosen,
                reward_hat=hats[:, 0],
                reward_hat_target=hats[:, 1],
            )
        return out
    finally:
        model.close()


def dr_values(terms: FirstSlotTerms) -> tuple[np.ndarray, np.ndarray] | None:
    """Unit weights and DR's per-event terms, or None when ``terms`` has no reward model's
    predictions (``Online``, and every setting of a SNIPS evaluation).

    >>> t = FirstSlotTerms(np.zeros(2), np.array([1.0, 0.0]), np.array([0.5, 0.5]),
    ...                    np.array([1.0, 0.0]), np.array([0.8, 0.2]), np.array([0.8, 0.6]))
    >>> dr_values(t)[1].round(6).tolist()  # 0.8 + 2 * (1 - 0.8), 0.6 + 0 * (0 - 0.2)
    [1.2, 0.6]
    """
    if terms.reward_hat is None or terms.reward_hat_target is None:
        return None
    weights = terms.target / terms.logged
    values = terms.reward_hat_target + weights * (terms.rewards - terms.reward_hat)
    return np.ones(len(values)), values


def _first_index(record: DecisionRecord) -> int:
    first = min(record.slate, key=lambda slot: slot.position).item_id
    return next(i for i, candidate in enumerate(record.candidates) if candidate.id == first)
