"""A reward model fitted on the decision log's own features, cross-fitted, for DM and DR.

The model is a VW squared-loss regression of each *seen* slot's observed reward on the slot's
features: its context namespaces (``C*``, the user's history ``H``) and the shown candidate's
(``I*``, taste ``T``), exactly as learning featurizes them
(``bandit.learn.learning.slot_examples``), crossed by ``DEFAULT_ARGS``: context x item, history x
item and context x context x item, the interactions the shipped policies use. It predicts the
expected reward of any candidate of a logged event in its first slot.

Cross-fitting: events are split into ``folds`` by a hash of their event id (deterministic, the
same on every run), one model is fitted per fold on the events of the *other* folds, and an event's
predictions always come from the model that never saw it. A model that saw an event's reward would
predict it too well there and bias DR's correction term ``w * (r - f)`` towards zero.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from bandit.decision_log import DecisionRecord, slot_context
from bandit.learn.history import history_namespace
from bandit.learn.learning import slot_examples
from bandit.learn.taste_factors import taste_lines
from bandit.serve.features import action_lines, shared_line
from bandit.serve.vw import VWRegressor
from bandit.spec import PolicySpec

DEFAULT_ARGS: tuple[str, ...] = ("-q", "CI", "-q", "HI", "--cubic", "CCI")
DEFAULT_FOLDS = 2
DEFAULT_PASSES = 3


def fold_of(event_id: str, folds: int) -> int:
    """The cross-fitting fold of an event: a stable hash of its id, modulo ``folds``.

    >>> fold_of("event-1", 2), fold_of("event-1", 2) == fold_of("event-1", 2)
    (1, True)
    """
    digest = hashlib.sha256(event_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % folds


def regression_features(shared: str, action: str) -> str:
    """One regression example's features: a slot's shared namespaces and one action's.

    >>> regression_features("shared |Cu a=1", "|I id=x")
    '|Cu a=1 |I id=x'
    """
    body = shared.removeprefix("shared").strip()
    return f"{body} {action}" if body != "|" else action


def first_slot_lines(record: DecisionRecord) -> tuple[str, list[str]]:
    """The first slot's shared line and every candidate's action line, in candidate order,
    featurized as learning featurizes them."""
    candidates = [candidate.to_candidate() for candidate in record.candidates]
    lines = taste_lines(action_lines(candidates), record.affinities)
    position = min((slot.position for slot in record.slate), default=1)
    context = slot_context(record.context, record.slot_features, position)
    return shared_line(context, history_namespace(record.history)), lines


@dataclass(frozen=True)
class RewardModel:
    """One regression per fold; ``models[k]`` was fitted on the events outside fold ``k``.

    ``training_events[k]`` holds the ids of the events ``models[k]`` learned from; ``low`` and
    ``high`` bound the rewards seen, and predictions are clipped to them.
    """

    models: tuple[VWRegressor, ...]
    training_events: tuple[frozenset[str], ...]
    low: float
    high: float

    @property
    def folds(self) -> int:
        """The number of folds."""
        return len(self.models)

    def fold(self, event_id: str) -> int:
        """The fold of an event: its predictions come from ``models[fold]``."""
        return fold_of(event_id, self.folds)

    def predict(self, record: DecisionRecord) -> np.ndarray:
        """The predicted first-slot reward of each of the record's candidates, in their order."""
        model = self.models[self.fold(record.event_id)]
        shared, lines = first_slot_lines(record)
        values = np.array([model.predict(regression_features(shared, line)) for line in lines])
        clipped: np.ndarray = np.clip(values, self.low, self.high)
        return clipped

    def first_slot_terms(self, record: DecisionRecord, target: np.ndarray) -> tuple[float, float]:
        """DR's ``(f, g)`` of one event: the predicted reward of the logged first-slot item, and
        the expected predicted reward under ``target``, the policy's first-slot distribution over
        the record's candidates (``bandit.evaluate.slot_draws.slot_distributions``)."""
        predicted = self.predict(record)
        if target.shape != predicted.shape:
            raise ValueError(
                f"target: {target.shape[0]} probabilities for {predicted.shape[0]} candidates"
            )
        first = min(record.slate, key=lambda slot: slot.position).item_id
        logged = next(i for i, c in enumerate(record.candidates) if c.id == first)
        return float(predicted[logged]), float(target @ predicted)

    def close(self) -> None:
        """Release every fold's VW resources."""
        for model in self.models:
            model.close()


def fit_reward_model(
    records: Iterable[DecisionRecord],
    spec: PolicySpec,
    *,
    folds: int = DEFAULT_FOLDS,
    args: Sequence[str] = DEFAULT_ARGS,
    passes: int = DEFAULT_PASSES,
) -> RewardModel:
    """Fit the cross-fitted reward model on ``records``' seen slots (rewards valued by ``spec``).

    Raises ``ValueError`` when no record has a seen slot, or when a fold holding events has no
    seen slot outside it to be fitted on.

    >>> from bandit.simulate.arena import simulated_logs
    >>> spec = PolicySpec(name="demo", slate_size=2)
    >>> model = fit_reward_model(simulated_logs(spec, 40), spec)
    >>> model.folds, model.predict(simulated_logs(spec, 1)[0]).shape
    (2, (20,))
    """
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds: must be an integer >= 2, got {folds!r}")
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ValueError(f"passes: must be an integer >= 1, got {passes!r}")
    examples: list[tuple[int, str, str, float]] = []
    present: set[int] = set()
    for record in records:
        fold = fold_of(record.event_id, folds)
        present.add(fold)
        for example in slot_examples(record, spec):
            features = regression_features(example.shared, example.actions[example.chosen])
            examples.append((fold, record.event_id, features, example.reward))
    if not examples:
        raise ValueError("records: no seen slot with a reward to fit the reward model on")
    for fold in sorted(present):
        if all(held == fold for held, _, _, _ in examples):
            raise ValueError(
                f"folds: no seen slot outside fold {fold} of {folds} to fit its model on; "
                "use fewer folds or a longer log"
            )
    models: list[VWRegressor] = []
    training: list[frozenset[str]] = []
    for fold in range(folds):
        model = VWRegressor(args)
        kept = [(event, x, y) for held, event, x, y in examples if held != fold]
        for _ in range(passes):
            for _, features, reward in kept:
                model.learn(features, reward)
        models.append(model)
        training.append(frozenset(event for event, _, _ in kept))
    rewards = [reward for _, _, _, reward in examples]
    return RewardModel(tuple(models), tuple(training), min(rewards), max(rewards))
