"""for-you ablations on the taste world and the news scenario: which settings measure best.

``python -m benchmarks.ablation [--rounds 10000] [--news-rounds 5000] [--seeds 2]`` runs the
former for-you spec (``-q CI``, no history: ``baseline``) and variants of it that change one
thing each (and a few combinations), then the shipped spec that the measurements chose (history
on, ``-q HI``, ``--cubic CCI``) and a few changes to it:
VW arguments (``--cb_type``, the learning rate, the ``-q CI`` / ``-q HI`` crosses, ``--cubic
CCI``), the exploration algorithm and budget, the cold-start prior blend and the maturity
segments' thresholds. Each variant runs on

- the taste world (``benchmarks.taste.run``: hidden personal tastes, slates of 3; last-quarter
  first-slot CTR and clicks per slate from the true probabilities), and
- the news scenario (``bandit.simulate.simulation.NewsScenario``: two users, two times of day,
  seven articles, one slot; CTR over the run and over its last quarter), each user counting
  their own interactions so the segments apply.

Variants are built with ``model_copy`` and then validated as a whole (``model_copy`` alone skips
validation), so an invalid combination fails here rather than running.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bandit.decision_log import LoggedReward
from bandit.learn.learning import learn_record
from bandit.serve.ranker import Ranker, RankRequest
from bandit.simulate.simulation import NewsScenario
from bandit.spec import ExplorationAlgorithm, PolicySpec, SegmentSpec
from benchmarks.taste import policies, run

BASELINE = "for-you before (-q CI, no history)"
SHIPPED = "shipped: history on, -q CI -q HI --cubic CCI"
BASELINE_ARGS = ("--cb_type", "dm", "-q", "CI", "--learning_rate", "0.1")


def baseline(shipped: PolicySpec) -> PolicySpec:
    """The shipped spec as it was before the ablation: ``-q CI`` alone, history off."""
    return shipped.model_copy(
        update={
            "vw": shipped.vw.model_copy(update={"args": BASELINE_ARGS}),
            "history": shipped.history.model_copy(update={"enabled": False}),
        }
    )


def shipped_variants(shipped: PolicySpec) -> list[tuple[str, PolicySpec]]:
    """The shipped spec and the changes to it that measured close."""
    vw, cold = shipped.vw, shipped.cold_start

    def with_args(args: Sequence[str]) -> PolicySpec:
        return shipped.model_copy(update={"vw": vw.model_copy(update={"args": tuple(args)})})

    found = [
        (SHIPPED, shipped),
        ("shipped, --cb_type mtr", with_args(_with_arg(vw.args, "--cb_type", "mtr"))),
        ("shipped, learning rate 0.05", with_args(_with_arg(vw.args, "--learning_rate", "0.05"))),
        (
            "shipped, prior_examples 0",
            shipped.model_copy(
                update={"cold_start": cold.model_copy(update={"prior_examples": 0})}
            ),
        ),
    ]
    return [(name, _validated(spec)) for name, spec in found]


ABLATION_ROUNDS = 10_000
ABLATION_NEWS_ROUNDS = 5_000
ABLATION_SEEDS = (1, 2)
ABLATION_USERS = 500


def _validated(spec: PolicySpec) -> PolicySpec:
    return PolicySpec.model_validate(spec.model_dump())


def _with_arg(args: Sequence[str], flag: str, value: str) -> tuple[str, ...]:
    """``args`` with ``flag``'s value set to ``value`` (appended when absent)."""
    out = list(args)
    if flag in out:
        out[out.index(flag) + 1] = value
    else:
        out += [flag, value]
    return tuple(out)


def _without_pair(args: Sequence[str], flag: str, value: str) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] == flag and i + 1 < len(args) and args[i + 1] == value:
            i += 2
            continue
        out.append(args[i])
        i += 1
    return tuple(out)


def variants(base: PolicySpec) -> list[tuple[str, PolicySpec]]:
    """(what changed, spec) for ``base`` (the baseline) and one-change variants of it."""
    vw, exploration, cold = base.vw, base.exploration, base.cold_start

    def with_vw(args: Sequence[str]) -> PolicySpec:
        return base.model_copy(update={"vw": vw.model_copy(update={"args": tuple(args)})})

    def with_exploration(**update: Any) -> PolicySpec:
        return base.model_copy(update={"exploration": exploration.model_copy(update=update)})

    def with_cold(**update: Any) -> PolicySpec:
        return base.model_copy(update={"cold_start": cold.model_copy(update=update)})

    def segments(cold_max: int | None, warm_max: int | None) -> tuple[SegmentSpec, ...]:
        budgets = {s.name: s.budget for s in cold.segments}
        if cold_max is None:
            return (SegmentSpec(name="all", budget=budgets.get("mature")),)
        return (
            SegmentSpec(name="cold", max_interactions=cold_max, budget=budgets.get("cold")),
            SegmentSpec(name="warm", max_interactions=warm_max, budget=budgets.get("warm")),
            SegmentSpec(name="mature", budget=budgets.get("mature")),
        )

    def scaled_budgets(factor: float) -> PolicySpec:
        scaled = tuple(
            s.model_copy(update={"budget": None if s.budget is None else s.budget * factor})
            for s in cold.segments
        )
        spec = with_exploration(budget=exploration.budget * factor)
        return spec.model_copy(
            update={"cold_start": spec.cold_start.model_copy(update={"segments": scaled})}
        )

    history = base.history.model_copy(update={"enabled": True})
    rate = "--learning_rate"
    found = [
        (BASELINE, base),
        ("vw: --cb_type mtr", with_vw(_with_arg(vw.args, "--cb_type", "mtr"))),
        ("vw: learning rate 0.05", with_vw(_with_arg(vw.args, rate, "0.05"))),
        ("vw: learning rate 0.5", with_vw(_with_arg(vw.args, rate, "0.5"))),
        ("vw: no -q CI (linear)", with_vw(_without_pair(vw.args, "-q", "CI"))),
        ("vw: --cubic CCI (context x context x item)", with_vw((*vw.args, "--cubic", "CCI"))),
        (
            "history on, -q CI -q HI",
            with_vw((*vw.args, "-q", "HI")).model_copy(update={"history": history}),
        ),
        (
            "history on, -q CI -q HI, --cb_type mtr",
            with_vw((*_with_arg(vw.args, "--cb_type", "mtr"), "-q", "HI")).model_copy(
                update={"history": history}
            ),
        ),
        (
            "exploration: epsilon_greedy",
            with_exploration(algorithm=ExplorationAlgorithm.EPSILON_GREEDY),
        ),
        (
            "exploration: softmax T=0.1",
            with_exploration(algorithm=ExplorationAlgorithm.SOFTMAX, softmax_temperature=0.1),
        ),
        ("exploration: squarecb gamma 10", with_exploration(squarecb_gamma=10.0)),
        ("exploration: squarecb gamma 500", with_exploration(squarecb_gamma=500.0)),
        ("exploration: budget 0 (exploit only)", with_exploration(budget=0.0)),
        ("exploration: budgets x2", scaled_budgets(2.0)),
        ("cold start: prior_examples 0 (no prior ramp)", with_cold(prior_examples=0)),
        ("cold start: prior_examples 2000", with_cold(prior_examples=2000)),
        ("cold start: cold_user_prior_weight 0", with_cold(cold_user_prior_weight=0.0)),
        ("cold start: cold_user_prior_weight 0.6", with_cold(cold_user_prior_weight=0.6)),
        ("segments: cold <= 0, warm <= 9", with_cold(segments=segments(0, 9))),
        ("segments: cold <= 19, warm <= 199", with_cold(segments=segments(19, 199))),
        ("segments: one segment", with_cold(segments=segments(None, None))),
        (
            "combined: --cb_type mtr, learning rate 0.05",
            with_vw(_with_arg(_with_arg(vw.args, "--cb_type", "mtr"), rate, "0.05")),
        ),
        (
            "combined: history on, -q HI, learning rate 0.05",
            with_vw((*_with_arg(vw.args, rate, "0.05"), "-q", "HI")).model_copy(
                update={"history": history}
            ),
        ),
        (
            "combined: history on, -q HI, prior_examples 0",
            with_cold(prior_examples=0).model_copy(
                update={
                    "history": history,
                    "vw": vw.model_copy(update={"args": (*vw.args, "-q", "HI")}),
                }
            ),
        ),
    ]
    return [(name, _validated(spec)) for name, spec in found]


def news_run(spec: PolicySpec, rounds: int, seed: int) -> dict[str, float]:
    """``spec`` at one slot on the news scenario: CTR over the run and its last quarter."""
    spec = spec.model_copy(update={"slate_size": 1})
    scenario = NewsScenario()
    clock = [0.0]
    ranker = Ranker(spec, clock=lambda: clock[0])
    rng = np.random.default_rng(seed)
    candidates = scenario.candidates()
    interactions: dict[str, int] = {}
    rewards = np.zeros(rounds)
    for t in range(rounds):
        clock[0] = float(t)
        context = scenario.context(rng)
        user = context["user"]["name"]
        seen = interactions.get(user, 0)
        interactions[user] = seen + 1
        request = RankRequest(
            f"news-{t}", context, candidates, user, interactions=seen, timestamp=float(t)
        )
        result = ranker.rank(request)
        shown = result.slots[0].item_id
        rewards[t] = scenario.reward(context, shown)
        logged = (
            [LoggedReward(item_id=shown, type="click", timestamp=t + 1.0)] if rewards[t] else []
        )
        learn_record(
            ranker.model, result.record(spec, 0).model_copy(update={"rewards": logged}), spec
        )
        ranker.prior.observe(shown, 1.0, float(rewards[t]))
    tail = max(1, rounds // 4)
    return {"ctr": float(rewards.mean()), "ctr_last_quarter": float(rewards[-tail:].mean())}


def _mean(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}


def ablation(
    rounds: int = ABLATION_ROUNDS,
    news_rounds: int = ABLATION_NEWS_ROUNDS,
    seeds: Sequence[int] = ABLATION_SEEDS,
    *,
    users: int = ABLATION_USERS,
    base_ctr: float = 0.06,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every variant on both worlds, averaged over ``seeds``, with ratios to the baseline."""
    shipped = policies()["for-you"]
    rows: dict[str, dict[str, Any]] = {}
    for name, spec in [*variants(baseline(shipped)), *shipped_variants(shipped)]:
        taste_runs = [run(spec, rounds, seed, n_users=users, base_ctr=base_ctr) for seed in seeds]
        news_runs = [news_run(spec, news_rounds, seed) for seed in seeds]
        taste, news = _mean(taste_runs), _mean(news_runs)
        rows[name] = {
            "taste": taste,
            "news": news,
            "taste_by_seed": [r["first_slot_ctr"] for r in taste_runs],
            "news_by_seed": [r["ctr"] for r in news_runs],
            "vw_args": list(spec.vw_args()),
        }
        if progress:
            progress(f"{name}: taste {taste['first_slot_ctr']:.4f}, news {news['ctr']:.4f}")
    before = rows[BASELINE]
    for row in rows.values():
        row["taste_ratio"] = row["taste"]["first_slot_ctr"] / before["taste"]["first_slot_ctr"]
        row["news_ratio"] = row["news"]["ctr"] / before["news"]["ctr"]
    return {
        "rounds": rounds,
        "news_rounds": news_rounds,
        "seeds": list(seeds),
        "world": {"n_users": users, "base_ctr": base_ctr},
        "variants": rows,
    }


def markdown(result: dict[str, Any]) -> list[str]:
    """The "for-you ablation" section of docs/benchmarks.md, as lines."""
    seeds = ", ".join(map(str, result["seeds"]))
    lines = [
        "## for-you ablation: one change at a time",
        "",
        f"The former for-you spec and one-change variants of it, then the shipped spec the "
        f"measurements chose and changes to it (`python -m benchmarks.ablation`), "
        f"on the taste world ({result['rounds']:,} rounds, slates of 3, "
        f"{result['world']['n_users']:,} users; last-quarter first-slot CTR and clicks per "
        f"slate from the true probabilities) and on the news scenario ({result['news_rounds']:,} "
        f"rounds, one slot; CTR over the run and its last quarter); mean over seeds {seeds}. "
        "Ratios are to the former spec.",
        "",
        "| variant | taste first-slot CTR | by seed | taste clicks per slate | vs before "
        "| news CTR | by seed | news CTR last quarter | vs before |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    variants = result["variants"]
    for name, row in variants.items():
        taste, news = row["taste"], row["news"]
        taste_seeds = " / ".join(f"{v:.4f}" for v in row.get("taste_by_seed", []))
        news_seeds = " / ".join(f"{v:.4f}" for v in row.get("news_by_seed", []))
        lines.append(
            f"| {name} | {taste['first_slot_ctr']:.4f} | {taste_seeds} | "
            f"{taste['clicks_per_slate']:.4f} | {row['taste_ratio']:.3f} | {news['ctr']:.4f} | "
            f"{news_seeds} | {news['ctr_last_quarter']:.4f} | {row['news_ratio']:.3f} |"
        )
    before = variants[BASELINE]
    best_taste = max(variants, key=lambda n: variants[n]["taste_ratio"])
    best_news = max(variants, key=lambda n: variants[n]["news_ratio"])
    lines += [
        "",
        f"Best on the taste world: {best_taste} "
        f"({variants[best_taste]['taste']['first_slot_ctr']:.4f} against "
        f"{before['taste']['first_slot_ctr']:.4f}); best on news: {best_news} "
        f"({variants[best_news]['news']['ctr']:.4f} against {before['news']['ctr']:.4f}).",
    ]
    if SHIPPED in variants:
        chosen = variants[SHIPPED]
        lines.append(
            f"Shipped (the largest gain on both together, stable over the seeds): {SHIPPED}, "
            f"{chosen['taste_ratio']:.3f}x on the taste world and {chosen['news_ratio']:.3f}x on "
            "news against the former spec."
        )
    return lines


def main() -> None:
    """Print the ablation as JSON (progress on stderr)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ablation")
    parser.add_argument("--rounds", type=int, default=ABLATION_ROUNDS)
    parser.add_argument("--news-rounds", type=int, default=ABLATION_NEWS_ROUNDS)
    parser.add_argument(
        "--seeds", type=int, default=len(ABLATION_SEEDS), help="seeds 1..N, averaged"
    )
    args = parser.parse_args()
    result = ablation(
        args.rounds,
        args.news_rounds,
        tuple(range(1, args.seeds + 1)),
        progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True),
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
