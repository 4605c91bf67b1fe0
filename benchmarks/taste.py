"""The taste-world table: every contender on one request stream, with the same click draws.

``python -m benchmarks.taste [--rounds 20000] [--users 500] [--base-ctr 0.06] [--seed 1]
[--grid-rounds 10000]`` runs each contender in process on ``bandit.simulate.taste_world.TasteWorld``
(personal tastes the context does not reveal, a 10,000-item catalog in hidden taste clusters, 20
candidates per request, slates of 3). Every contender gets its own world built from the same seed,
so it sees the same users and candidates round by round, and its own click generator from the
same seed, so the same uniform draws decide its clicks against the true probabilities (common
random numbers). Every closed event is learned at once; each user's rewarded items are kept as
the learner's profiles keep them (``bandit.learn.history``), for the contenders that read them.

Contenders: serendip's policies (:func:`policies`: for-you as shipped and with history), explore,
popularity learned online from the same feedback, plain VW with its own exploration on the same
tokens (the best of a small grid, ``benchmarks.taste_peers``), a numpy LinUCB on shared (context,
candidate) features (``benchmarks.linucb``), uniform random slates, the best context-only slate
and the oracle (true probabilities). Figures over the last quarter: the first slot's true click
probability (first-slot CTR) and the sum over the slate (clicks per slate).

Extending: add named specs to :func:`policies`; a row that needs per-round signals (such as a
periodically refitted collaborative model) passes ``signals={name: hook}`` to :func:`taste_bench`
(or ``signals=hook`` to :func:`run`). A hook is called before every rank with the request and
the profiles so far, and returns extra features per candidate id, merged into that candidate's
``features`` (a dict value becomes an item namespace, e.g. ``{"cf": {"score": 0.4}}`` ->
``|Icf score:0.4``); the decision record logs them, so learning sees the very same features.
A row that must set other ``RankRequest`` fields subclasses :class:`TastePolicy`, overrides
:meth:`TastePolicy.rank_request` (``dataclasses.replace(super().rank_request(...), ...)``) and
comes in through ``extra={name: factory}``; such rows are judged against the targets too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # via scikit-learn

from bandit.decision_log import DecisionRecord, LoggedReward
from bandit.domain import Candidate
from bandit.evaluate.replay import observe
from bandit.learn.history import Rewarded, snapshot
from bandit.serve.ranker import Ranker, RankRequest
from bandit.simulate.arena import Choice, Contender, UniformContender
from bandit.simulate.simulation import SimRequest
from bandit.simulate.taste_world import TasteWorld
from bandit.spec import PolicySpec, load_spec
from benchmarks.fresh_process import ROOT
from benchmarks.linucb import NumpyLinUCB
from benchmarks.taste_peers import GRID, OnlinePopularity, PlainVW, Reference, VWSetting
from benchmarks.taste_report import NAMES, markdown, ratios, targets

__all__ = ["markdown", "policies", "run", "stream", "taste_bench"]

SLATE = 3
GRID_ROUNDS = 10_000
Profiles = Mapping[str, Sequence[Rewarded]]


class Signals(Protocol):
    """Per-round extras: candidate id -> features merged into that candidate's ``features``."""

    def __call__(
        self, request: SimRequest, profiles: Profiles
    ) -> Mapping[str, Mapping[str, Any]]: ...


Factory = Callable[[TasteWorld, Profiles], Contender]


FORMER_ARGS = ("--cb_type", "dm", "-q", "CI", "--learning_rate", "0.1")


def policies() -> dict[str, PolicySpec]:
    """serendip's rows: for-you as shipped (history, ``-q HI``, ``--cubic CCI``), and as it
    was before (``-q CI`` alone, no history)."""
    base = load_spec(ROOT / "policies" / "for-you.yaml").model_copy(update={"slate_size": SLATE})
    former = base.model_copy(
        update={
            "history": base.history.model_copy(update={"enabled": False}),
            "vw": base.vw.model_copy(update={"args": FORMER_ARGS}),
        }
    )
    return {"for-you": base, "for-you before (-q CI, no history)": former}


def explore_policy() -> PolicySpec:
    """policies/explore.yaml at slates of 3, its discovery slot moved to the last position."""
    spec = load_spec(ROOT / "policies" / "explore.yaml")
    exploration = spec.exploration.model_copy(update={"discovery_positions": (SLATE,)})
    return spec.model_copy(update={"slate_size": SLATE, "exploration": exploration})


def describe(spec: PolicySpec) -> str:
    """One line on how a policy row learns and explores."""
    exploration = spec.exploration
    segments = ", ".join(f"{s.name} {spec.budget_for(s.name):g}" for s in spec.cold_start.segments)
    history = "history H on" if spec.history.enabled else "no history"
    return (
        f"VW cb_adf {' '.join(spec.vw_args())}; {exploration.algorithm.value} budget "
        f"{exploration.budget:g} ({segments}); {history}"
    )


class TastePolicy:
    """Arena contender: a serendip policy through ``Ranker.rank``, learning each closed event.

    With ``spec.history.enabled`` the request carries the user's history snapshot; with
    ``signals`` the candidates carry the hook's extra features (see the module docstring).
    """

    def __init__(
        self,
        spec: PolicySpec,
        world: TasteWorld,
        profiles: Profiles,
        signals: Signals | None = None,
    ) -> None:
        self.name = spec.name
        self.spec = spec
        self.ranker = Ranker(spec, clock=lambda: world.now)
        self._profiles = profiles
        self._signals = signals
        self._pending: dict[str, DecisionRecord] = {}

    def rank_request(self, request: SimRequest, event_id: str, slate_size: int) -> RankRequest:
        """The ``RankRequest`` for one round: history snapshot and signals applied."""
        history = None
        if self.spec.history.enabled:
            h = self.spec.history
            history = snapshot(
                self._profiles.get(request.user_id, ()),
                items=h.items,
                categories=h.categories,
                creators=h.creators,
                decay=h.decay,
            )
        candidates: Sequence[Candidate] = request.candidates
        if self._signals is not None:
            extras = self._signals(request, self._profiles)
            candidates = tuple(
                dataclasses.replace(c, features={**c.features, **extras[c.id]})
                if c.id in extras
                else c
                for c in candidates
            )
        return RankRequest(
            event_id,
            request.context,
            candidates,
            request.user_id,
            interactions=request.interactions,
            slate_size=slate_size,
            timestamp=request.timestamp,
            history=history,
        )

    def choose(self, request: SimRequest, event_id: str, slate_size: int) -> Choice:
        """Rank and keep the decision record until the clicks arrive."""
        result = self.ranker.rank(self.rank_request(request, event_id, slate_size))
        self._pending[event_id] = result.record(self.spec, model_version=0)
        slots = result.slots
        return Choice([s.item_id for s in slots], [s.explored for s in slots], event_id=event_id)

    def observe(self, request: SimRequest, choice: Choice, clicks: Sequence[bool]) -> None:
        """Close the event at once: learn every slot, count the popularity prior."""
        record = self._pending.pop(choice.event_id)
        rewards = [
            LoggedReward(item_id=item, type="click", timestamp=request.timestamp)
            for item, clicked in zip(choice.item_ids, clicks, strict=True)
            if clicked
        ]
        observe(self.ranker, record.model_copy(update={"rewards": rewards}), [*map(float, clicks)])


def stream(factory: Factory, rounds: int, seed: int, **world: Any) -> dict[str, float]:
    """One contender over the seeded stream: last-quarter figures and wall seconds."""
    taste = TasteWorld(seed=seed, **world)
    rng = np.random.default_rng(seed)
    profiles: dict[str, list[Rewarded]] = {}
    first = np.zeros(rounds)
    per_slate = np.zeros(rounds)
    started = time.perf_counter()
    contender = factory(taste, profiles)
    for step in range(rounds):
        request = taste.next_request()
        user = request.user_id
        choice = contender.choose(request, f"evt-{step}", SLATE)
        shown = choice.item_ids
        clicks = taste.clicks(user, shown, rng)
        probabilities = taste.click_probabilities(user, shown)
        first[step] = probabilities[0]
        per_slate[step] = probabilities.sum()
        contender.observe(request, choice, clicks)
        by_id = {c.id: c for c in request.candidates}
        profiles.setdefault(user, []).extend(
            Rewarded(item, by_id[item].category, by_id[item].creator)
            for item, clicked in zip(shown, clicks, strict=True)
            if clicked
        )
    seconds = time.perf_counter() - started
    close = getattr(contender, "close", None)
    if close is not None:
        close()
    tail = max(1, rounds // 4)
    return {
        "first_slot_ctr": float(first[-tail:].mean()),
        "clicks_per_slate": float(per_slate[-tail:].mean()),
        "seconds": seconds,
    }


def run(
    spec: PolicySpec, rounds: int, seed: int, signals: Signals | None = None, **world: Any
) -> dict[str, float]:
    """One serendip policy over the seeded stream (``signals``: the per-round hook, if any)."""
    return stream(_policy(spec, signals), rounds, seed, **world)


def _policy(spec: PolicySpec, signals: Signals | None = None) -> Factory:
    return lambda world, profiles: TastePolicy(spec, world, profiles, signals)


def _plain_vw(setting: VWSetting, seed: int) -> Factory:
    history = policies()["for-you"].history
    return lambda world, profiles: PlainVW(setting, profiles, history=history, seed=seed)


def _references() -> dict[str, tuple[str, Factory]]:
    return {
        NAMES["linucb"]: (
            "benchmarks.linucb.NumpyLinUCB: one ridge model over joint (context, candidate) rows, "
            "context x category crossed, alpha 1, refit every 100 decisions; learns every slot",
            lambda world, profiles: NumpyLinUCB(NAMES["linucb"]),
        ),
        NAMES["uniform"]: (
            "uniform random slates",
            lambda world, profiles: UniformContender(seed=0, name=NAMES["uniform"]),
        ),
        NAMES["context"]: (
            "true mean probability over the users sharing the context (cohort, device)",
            lambda world, profiles: Reference(
                NAMES["context"],
                lambda r, k: world.context_oracle_slate(r.context, r.candidates, k),
            ),
        ),
        NAMES["category"]: (
            "knows each user's liked clusters and every item's appeal, but an item's cluster "
            "only through its category: the most a category-level learner can reach",
            lambda world, profiles: Reference(
                NAMES["category"],
                lambda r, k: world.category_oracle_slate(r.user_id, r.candidates, k),
            ),
        ),
        NAMES["oracle"]: (
            "the user's true click probabilities",
            lambda world, profiles: Reference(
                NAMES["oracle"], lambda r, k: world.oracle_slate(r.user_id, r.candidates, k)
            ),
        ),
    }


def vw_grid(
    rounds: int,
    seed: int,
    grid: Sequence[VWSetting] = GRID,
    progress: Callable[[str], None] | None = None,
    **world: Any,
) -> list[dict[str, Any]]:
    """Every plain VW setting of ``grid`` over ``rounds`` of the stream."""
    rows = []
    for setting in grid:
        figures = stream(_plain_vw(setting, seed), rounds, seed, **world)
        rows.append({**dataclasses.asdict(setting), "args": list(setting.args), **figures})
        if progress:
            progress(
                f"plain VW {setting.features}, {setting.label}: {figures['first_slot_ctr']:.4f}"
            )
    return rows


def taste_bench(
    rounds: int,
    seed: int = 1,
    users: int = 500,
    base_ctr: float = 0.06,
    *,
    grid_rounds: int | None = None,
    grid: Sequence[VWSetting] = GRID,
    signals: Mapping[str, Signals] | None = None,
    extra: Mapping[str, Factory] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The whole table on one stream of ``rounds`` requests.

    The plain VW grid runs at ``grid_rounds`` (default ``min(rounds, GRID_ROUNDS)``) to pick the
    best setting of each feature set by last-quarter first-slot CTR; only the best run the full
    stream.
    ``signals`` maps a :func:`policies` row name to its per-round hook; ``extra`` adds serendip
    rows built by their own factories (placed after :func:`policies`' rows, judged the same way).
    """
    world = {"n_users": users, "base_ctr": base_ctr}
    grid_rounds = min(rounds, grid_rounds or GRID_ROUNDS)
    hooks = signals or {}
    rows: dict[str, tuple[str, Factory]] = {
        name: (
            describe(spec),
            _policy(spec, hooks.get(name)),
        )
        for name, spec in policies().items()
    }
    for name, factory in (extra or {}).items():
        rows[name] = (getattr(factory, "setup", "a serendip row of its own factory"), factory)
    explore = explore_policy()
    rows[NAMES["explore"]] = (
        f"policies/explore.yaml, discovery slot at position {SLATE}; {describe(explore)}",
        _policy(explore),
    )
    rows[NAMES["popularity"]] = (
        "(clicks + 20 g) / (impressions + 20), g the global rate; ties by item id",
        lambda w, p: OnlinePopularity(),
    )
    searched = vw_grid(grid_rounds, seed, grid, progress, **world)
    best: dict[str, dict[str, Any]] = {}
    for row in searched:
        kept = best.get(row["features"])
        if kept is None or row["first_slot_ctr"] > kept["first_slot_ctr"]:
            best[row["features"]] = row
    for features, row in best.items():
        setting = VWSetting(
            row["features"], row["exploration"], row["cb_type"], row["learning_rate"]
        )
        rows[f"plain VW ({features})"] = (
            f"--cb_explore_adf {' '.join(setting.args)} (best of the grid)",
            _plain_vw(setting, seed),
        )
    rows.update(_references())
    contenders: dict[str, dict[str, Any]] = {}
    for name, (setup, factory) in rows.items():
        # One BLAS thread: on two cores a threaded 768 x 768 inverse (LinUCB's refit) is
        # several times slower than a single-threaded one.
        with threadpool_limits(limits=1):
            contenders[name] = {"setup": setup, **stream(factory, rounds, seed, **world)}
        if progress:
            progress(f"{name}: first-slot CTR {contenders[name]['first_slot_ctr']:.4f}")
    ratios(contenders)
    result = {
        "rounds": rounds,
        "seed": seed,
        "slate": SLATE,
        "world": world,
        "grid_rounds": grid_rounds,
        "policies": [*policies(), *(extra or {})],
        "contenders": contenders,
        "vw_grid": searched,
    }
    result["targets"] = targets(result)
    return result


def main() -> None:
    """Print the table as JSON (progress on stderr)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.taste")
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--base-ctr", type=float, default=0.06)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--grid-rounds", type=int, default=GRID_ROUNDS)
    args = parser.parse_args()
    from benchmarks.taste_collab import collaborative_rows  # it imports this module

    result = taste_bench(
        args.rounds,
        args.seed,
        args.users,
        args.base_ctr,
        grid_rounds=args.grid_rounds,
        extra=collaborative_rows(),
        progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True),
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
