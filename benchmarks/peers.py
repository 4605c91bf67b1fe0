"""Serendip against what a user might pick instead: raw VW, MABWiser, a plain numpy LinUCB.

- :func:`raw_vw_floor`: VW alone on the same trained model, the floor for serendip's overhead.
  VW predicts on examples parsed once and reused (no parsing in the timed call) and from text
  lines (parsing included); serendip's ``Ranker.rank`` does everything (featurize, predict,
  budget, slot-by-slot draw) at the same sizes.
- :func:`peer_stream`: every policy on the same simulated requests with the same click seeds,
  through ``bandit.simulate.arena.run``: serendip for-you, MABWiser's LinUCB and LinTS with one arm
  per item (MABWiser's own formulation), MABWiser's LinUCB and a numpy LinUCB on shared
  (context, candidate) features (``benchmarks.linucb``), and the uniform and oracle references.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mabwiser.mab import LearningPolicy
from vowpalwabbit import Workspace

from bandit.learn.learning import learn_record
from bandit.serve.features import action_lines, shared_line
from bandit.serve.ranker import Ranker, RankRequest
from bandit.serve.vw import VWModel, read_envelope
from bandit.simulate.arena import (
    BanditContender,
    Choice,
    Contender,
    OracleContender,
    Track,
    UniformContender,
    run,
)
from bandit.simulate.simulation import Population, SimRequest
from bandit.spec import PolicySpec, load_spec, parse_spec
from benchmarks.core_speed import logged_events, percentiles
from benchmarks.linucb import MabwiserPerItem, MabwiserShared, NumpyLinUCB

POLICIES = Path(__file__).resolve().parent.parent / "policies"
SIZES = ((20, 5), (100, 10), (500, 20))
TARGET_SIZE = (100, 10)
TARGET_RATIO = 5.0
FLOOR_ITEMS = 1_000
QUICK_DECISIONS = 120
FULL_DECISIONS = 6_000
# MABWiser costs tens of ms per decision: per item it scores every arm of the catalog in a
# Python loop, shared it multiplies dense rows by the full d x d inverse.
FULL_MABWISER = 1_200

SERENDIP = "serendip for-you"
NUMPY_LINUCB = "numpy LinUCB (shared features)"
MAB_LINUCB = "MABWiser LinUCB (arm per item)"
MAB_LINTS = "MABWiser LinTS (arm per item)"
MAB_SHARED = "MABWiser LinUCB (shared features)"
UNIFORM = "uniform random"
ORACLE = "oracle"
MABWISER = (MAB_LINUCB, MAB_LINTS, MAB_SHARED)
FORMULATIONS = {
    SERENDIP: "policies/for-you.yaml: VW cb_adf, -q CI, SquareCB, budget 5% (cold users 10%)",
    NUMPY_LINUCB: "one ridge model over joint rows, alpha 1, lambda 1",
    MAB_LINUCB: "one ridge model per item id over the context vector, alpha 1, lambda 1",
    MAB_LINTS: "one ridge model per item id over the context vector, alpha 1, lambda 1",
    MAB_SHARED: "a single arm whose context is the joint row, alpha 1, lambda 1",
    UNIFORM: "uniform random slates (reference)",
    ORACLE: "true click probabilities (reference)",
}


def _workspace(model: VWModel, directory: str) -> Workspace:
    """A bare VW workspace holding the same weights as ``model``."""
    _, blob = read_envelope(model.to_bytes())
    path = os.path.join(directory, "model.vw")
    with open(path, "wb") as handle:
        handle.write(blob)
    return Workspace(arg_list=["--quiet", "-i", path])


def _trained(warmup: int, seed: int) -> bytes:
    """A model trained on ``warmup`` events of 100 candidates and 10 slots, as bytes."""
    population = Population(seed=seed, candidates=100, n_items=FLOOR_ITEMS)
    ranker = Ranker(_floor_spec(10), clock=lambda: population.now)
    rng = np.random.default_rng(seed)
    for record in logged_events(population, ranker, warmup, rng, "w"):
        learn_record(ranker.model, record, ranker.spec)
    return ranker.model.to_bytes()


def _floor_spec(slots: int) -> PolicySpec:
    return parse_spec(
        {
            "name": "bench",
            "slate_size": slots,
            "exploration": {"budget": 0.1},
            "diversity": {"max_per_category": 3},
        }
    )


def _floor_size(
    blob: bytes, candidates: int, slots: int, *, calls: int, repeats: int, seed: int, skip: int
) -> dict[str, Any]:
    """Time core rank, VW from text and VW on prebuilt examples on the same requests."""
    # The world the model learned (same seed), past the requests it learned from.
    population = Population(seed=seed, candidates=candidates, n_items=FLOOR_ITEMS)
    for _ in range(skip):
        population.next_request()
    model = VWModel.from_bytes(blob)
    ranker = Ranker(_floor_spec(slots), model, clock=lambda: population.now)
    core: list[float] = []
    text: list[float] = []
    prebuilt: list[float] = []
    agree = True
    with tempfile.TemporaryDirectory(prefix="serendip-peers-") as directory:
        vw = _workspace(model, directory)
        for t in range(calls):
            request = population.next_request()
            started = time.perf_counter()
            ranker.rank(RankRequest(f"b{t}", request.context, request.candidates, request.user_id))
            core.append(time.perf_counter() - started)
            lines = [shared_line(request.context), *action_lines(request.candidates)]
            started = time.perf_counter()
            from_text = vw.predict(lines)
            text.append(time.perf_counter() - started)
            examples = vw.parse(lines)
            for _ in range(repeats):
                started = time.perf_counter()
                from_examples = vw.predict(examples)
                prebuilt.append(time.perf_counter() - started)
            vw.finish_example(examples)
            # Reused examples must predict what fresh text does, with the model's own weights.
            agree = agree and np.array_equal(from_text, from_examples)
            agree = agree and np.allclose(-np.asarray(from_text), model.score(lines[0], lines[1:]))
        vw.finish()
    result: dict[str, Any] = {
        "candidates": candidates,
        "slots": slots,
        "calls": calls,
        "core_rank": percentiles(core),
        "vw_text": percentiles(text),
        "vw_prebuilt": percentiles(prebuilt),
        "prebuilt_matches_text": bool(agree),
    }
    for p in ("p50_ms", "p95_ms", "p99_ms"):
        result[f"ratio_{p[:3]}"] = result["core_rank"][p] / result["vw_prebuilt"][p]
        result[f"ratio_text_{p[:3]}"] = result["core_rank"][p] / result["vw_text"][p]
    return result


def raw_vw_floor(
    sizes: Sequence[tuple[int, int]] = SIZES,
    *,
    warmup: int = 2_000,
    calls: int = 1_000,
    repeats: int = 3,
    seed: int = 5,
) -> dict[str, Any]:
    """VW predict (prebuilt examples, text lines) and ``Ranker.rank`` at each (candidates, slots).

    One model learns ``warmup`` events of 100 candidates and 10 slots, then every size ranks
    the next ``calls`` requests of the same world with a copy of it. Each request is parsed once and
    predicted ``repeats`` times: VW 9 parses examples already set up (``setup_done``), and
    ``predict`` on a list of ``Example`` objects neither sets them up again nor finishes them,
    so they stay valid until ``finish_example``; every request checks the reused examples still
    predict exactly what text does.

    >>> floor = raw_vw_floor([(5, 2)], warmup=5, calls=3, repeats=1)
    >>> floor["sizes"][0]["prebuilt_matches_text"]
    True
    """
    started = time.perf_counter()
    blob = _trained(warmup, seed)
    rows = [
        _floor_size(blob, c, s, calls=calls, repeats=repeats, seed=seed, skip=warmup)
        for c, s in sizes
    ]
    return {
        "warmup_events": warmup,
        "repeats": repeats,
        "seed": seed,
        "sizes": rows,
        "seconds": time.perf_counter() - started,
    }


class Timed:
    """A contender whose ``choose`` and ``observe`` calls are timed (event ids made unique)."""

    def __init__(self, inner: Contender) -> None:
        self.inner = inner
        self.name = inner.name
        self.choose_seconds: list[float] = []
        self.observe_seconds: list[float] = []

    def choose(self, request: SimRequest, event_id: str, slate_size: int) -> Choice:
        """Time the select step."""
        event_id = f"{self.name}-{len(self.choose_seconds)}"
        started = time.perf_counter()
        choice = self.inner.choose(request, event_id, slate_size)
        self.choose_seconds.append(time.perf_counter() - started)
        return choice

    def observe(self, request: SimRequest, choice: Choice, clicks: Sequence[bool]) -> None:
        """Time the learning step."""
        started = time.perf_counter()
        self.inner.observe(request, choice, clicks)
        self.observe_seconds.append(time.perf_counter() - started)


def outcomes(track: Track, decisions: int) -> dict[str, float]:
    """Expected CTR (true probabilities of the shown items) and observed CTR, all and last 1/4."""
    slots = np.asarray(track.slots[:decisions], dtype=np.float64)
    clicks = np.asarray(track.clicks[:decisions], dtype=np.float64)
    expected = np.asarray(track.expected_ctr[:decisions]) * slots
    last = slice(3 * decisions // 4, decisions)
    return {
        "decisions": decisions,
        "expected_ctr": float(expected.sum() / slots.sum()),
        "expected_ctr_last_quarter": float(expected[last].sum() / slots[last].sum()),
        "observed_ctr": float(clicks.sum() / slots.sum()),
        "observed_ctr_last_quarter": float(clicks[last].sum() / slots[last].sum()),
    }


def _row(timed: Timed, track: Track, common: int) -> dict[str, Any]:
    learn = np.asarray(timed.observe_seconds)
    return {
        "formulation": FORMULATIONS[timed.name],
        "decisions": len(track.slots),
        "common": outcomes(track, common),
        "all": outcomes(track, len(track.slots)),
        "decision": percentiles(timed.choose_seconds),
        "learn_ms_per_decision": float(learn.mean() * 1e3),
        "learn_p99_ms": float(np.percentile(learn, 99) * 1e3),
    }


def _extend(track: Track, more: Track) -> None:
    for name in ("expected_ctr", "clicks", "slots", "shown", "categories"):
        getattr(track, name).extend(getattr(more, name))


def peer_stream(
    *,
    decisions: int = FULL_DECISIONS,
    mabwiser_decisions: int = FULL_MABWISER,
    candidates: int = 50,
    slate_size: int = 5,
    batch: int = 100,
    seed: int = 7,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Every policy on one stream; MABWiser on its first ``mabwiser_decisions`` requests only.

    All contenders serve the first ``mabwiser_decisions`` requests in lockstep (same requests,
    same click seed); serendip, numpy LinUCB and the references go on for the rest. CTRs are
    compared on the common requests. Peers refit every ``batch`` decisions; serendip learns every
    closed event, as it does in production.

    >>> result = peer_stream(decisions=4, mabwiser_decisions=2, candidates=6, batch=1)
    >>> sorted({row["common"]["decisions"] for row in result["policies"].values()})
    [2]
    """
    common = min(mabwiser_decisions, decisions)
    population = Population(seed=seed, candidates=candidates)
    linucb = NumpyLinUCB(NUMPY_LINUCB, batch=batch)
    long_run = [
        Timed(BanditContender(load_spec(POLICIES / "for-you.yaml"), SERENDIP)),
        Timed(linucb),
        Timed(UniformContender(seed=seed, name=UNIFORM)),
        Timed(OracleContender(population, name=ORACLE)),
    ]
    short_run = [
        Timed(MabwiserPerItem(MAB_LINUCB, LearningPolicy.LinUCB(alpha=1.0), batch=batch)),
        Timed(MabwiserPerItem(MAB_LINTS, LearningPolicy.LinTS(alpha=1.0), batch=batch, seed=seed)),
        Timed(MabwiserShared(MAB_SHARED, batch=batch)),
    ]
    started = time.perf_counter()
    tracks = run(
        population,
        [*long_run, *short_run],
        decisions=common,
        slate_size=slate_size,
        seed=seed,
        progress=progress,
    )
    if decisions > common:
        rest = run(
            population,
            long_run,
            decisions=decisions - common,
            slate_size=slate_size,
            seed=seed + 1,
            progress=(lambda done: progress(common + done)) if progress else None,
        )
        for name, track in rest.items():
            _extend(tracks[name], track)
    seconds = time.perf_counter() - started
    policies = {t.name: _row(t, tracks[t.name], common) for t in [*long_run, *short_run]}
    base = policies[SERENDIP]
    for row in policies.values():
        row["decision_p50_vs_serendip"] = row["decision"]["p50_ms"] / base["decision"]["p50_ms"]
        row["learn_vs_serendip"] = row["learn_ms_per_decision"] / base["learn_ms_per_decision"]
        row["expected_ctr_vs_serendip"] = (
            row["common"]["expected_ctr"] / base["common"]["expected_ctr"]
        )
    numpy_shown, mab_shown = tracks[NUMPY_LINUCB].shown, tracks[MAB_SHARED].shown
    return {
        "decisions": decisions,
        "common_decisions": common,
        "candidates": candidates,
        "slate_size": slate_size,
        "batch": batch,
        "seed": seed,
        "catalog_size_at_end": population.n_items,
        "joint_columns": {
            "capacity": linucb.encoder.dims,
            "used": linucb.encoder.index.size,
            "hashed_lookups": linucb.encoder.index.overflowed,
        },
        "same_slates_numpy_vs_mabwiser_shared": sum(
            a == b for a, b in zip(numpy_shown[:common], mab_shown[:common], strict=True)
        )
        / common,
        "policies": policies,
        "seconds": seconds,
    }


def targets(floor: dict[str, Any], stream: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with its measured value and whether it is met."""
    size = next(r for r in floor["sizes"] if (r["candidates"], r["slots"]) == TARGET_SIZE)
    rows: list[dict[str, Any]] = [
        {
            "target": f"core rank / raw VW prebuilt <= {TARGET_RATIO:g}x "
            f"({TARGET_SIZE[0]} candidates, {TARGET_SIZE[1]} slots)",
            "measured": f"p50 {size['ratio_p50']:.1f}x, p95 {size['ratio_p95']:.1f}x",
            "met": size["ratio_p50"] <= TARGET_RATIO and size["ratio_p95"] <= TARGET_RATIO,
        }
    ]
    policies = stream["policies"]
    ours = policies[SERENDIP]
    for name in (MAB_LINUCB, MAB_SHARED):
        peer = policies[name]
        faster = ours["decision"]["p50_ms"] < peer["decision"]["p50_ms"]
        ctr = ours["common"]["expected_ctr"] >= peer["common"]["expected_ctr"]
        rows.append(
            {
                "target": f"faster than {name} with at least equal CTR "
                f"({stream['candidates']} candidates)",
                "measured": f"decision p50 {ours['decision']['p50_ms']:.3f} vs "
                f"{peer['decision']['p50_ms']:.3f} ms, expected CTR "
                f"{ours['common']['expected_ctr']:.4f} vs {peer['common']['expected_ctr']:.4f}",
                "met": faster and ctr,
            }
        )
    return rows


def stream_decisions(quick: bool) -> int:
    """How many stream decisions :func:`peers` reports to its ``progress`` callback."""
    return QUICK_DECISIONS if quick else FULL_DECISIONS


def peers(quick: bool, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The raw VW floor and the peer stream, with the targets; JSON-serialisable.

    ``progress`` gets the number of stream decisions served so far, up to
    ``stream_decisions(quick)``.
    """
    started, cpu = time.perf_counter(), time.process_time()
    if quick:
        floor = raw_vw_floor(warmup=200, calls=60, repeats=2)
        stream = peer_stream(
            decisions=QUICK_DECISIONS,
            mabwiser_decisions=QUICK_DECISIONS,
            batch=40,
            progress=progress,
        )
    else:
        floor = raw_vw_floor(calls=600)
        stream = peer_stream(
            decisions=FULL_DECISIONS, mabwiser_decisions=FULL_MABWISER, progress=progress
        )
    return {
        "quick": quick,
        "floor": floor,
        "stream": stream,
        "targets": targets(floor, stream),
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
    }


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _ms(row: dict[str, float]) -> str:
    return f"{row['p50_ms']:.3f} / {row['p95_ms']:.3f} / {row['p99_ms']:.3f}"


def _floor_lines(floor: dict[str, Any]) -> list[str]:
    lines = [
        "### The floor: raw VW predict against core rank",
        "",
        f"One `--cb_adf` model learns {floor['warmup_events']:,} events (100 candidates, 10 slots);"
        " every size then ranks requests of the same simulated world with a copy of it. *VW "
        "prebuilt*: `Workspace.predict` on examples parsed once and reused "
        f"({floor['repeats']} predicts per request, no parsing timed; every request checks they "
        "predict exactly what text does). *VW text*: `predict` on the request's text lines "
        "(parsing timed, featurizing not). *Core rank*: `Ranker.rank`, which featurizes, "
        "predicts, paces the budget and draws the slate slot by slot. Times in ms, "
        "p50 / p95 / p99.",
        "",
        "| candidates x slots | core rank | VW prebuilt | VW text | core / prebuilt p50 | "
        f"core / prebuilt p95 | core / text p50 | <= {TARGET_RATIO:g}x |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in floor["sizes"]:
        ok = row["ratio_p50"] <= TARGET_RATIO and row["ratio_p95"] <= TARGET_RATIO
        lines.append(
            f"| {row['candidates']} x {row['slots']} | {_ms(row['core_rank'])} | "
            f"{_ms(row['vw_prebuilt'])} | {_ms(row['vw_text'])} | {row['ratio_p50']:.1f}x | "
            f"{row['ratio_p95']:.1f}x | {row['ratio_text_p50']:.1f}x | {_verdict(ok)} |"
        )
    return lines


def _stream_lines(stream: dict[str, Any]) -> list[str]:
    common, total = stream["common_decisions"], stream["decisions"]
    columns = stream["joint_columns"]
    lines = [
        "### Same stream: CTR and latency side by side",
        "",
        f"{total:,} requests of one simulated stream (seed {stream['seed']}, "
        f"{stream['candidates']} candidates, slates of {stream['slate_size']}, catalog grew to "
        f"{stream['catalog_size_at_end']} items); clicks drawn from the true probabilities with "
        f"the same seed for every policy. MABWiser's policies serve only the first {common:,} "
        "requests (tens of ms per decision: per item, a Python loop over every arm of the "
        "catalog; shared, dense rows times the full inverse); every "
        f"policy served those same {common:,} requests, and the CTR columns compare on them. "
        f"Peers refit every {stream['batch']} decisions (MABWiser `fit`, then `partial_fit`); "
        "serendip learns each event as it closes. *Decision*: the select step per request "
        "(features, scores, slate), p50 / p95 / p99 ms. *Learn*: mean learning time per decision.",
        "",
        f"| policy | formulation | expected CTR (first {common:,}) | last quarter | observed CTR "
        f"| expected CTR (all served) | decision ms | learn ms | decision p50 vs serendip | "
        "CTR vs serendip |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in stream["policies"].items():
        first, every = row["common"], row["all"]
        lines.append(
            f"| {name} | {row['formulation']} | {first['expected_ctr']:.4f} | "
            f"{first['expected_ctr_last_quarter']:.4f} | {first['observed_ctr']:.4f} | "
            f"{every['expected_ctr']:.4f} ({row['decisions']:,}) | {_ms(row['decision'])} | "
            f"{row['learn_ms_per_decision']:.3f} | {row['decision_p50_vs_serendip']:.2f}x | "
            f"{row['expected_ctr_vs_serendip']:.2f}x |"
        )
    lines += [
        "",
        "Peers' features are serendip's own tokens (`bandit.serve.features`), made numeric. *Joint "
        "rows* (numpy LinUCB, MABWiser shared): one sparse row per (context, candidate) with a "
        "bias, every context token (cohort, device, daypart), every candidate token (id, "
        "category, creator, length) and the product of every context token with the "
        "candidate's category and length, the part of VW's `-q CI` a dense model can afford "
        "(no id or creator crosses). Each token gets its own column on first sight, "
        f"{columns['used']} of {columns['capacity']} columns used ("
        f"{columns['hashed_lookups']} lookups hashed into shared columns once full). *Per item* "
        "(MABWiser's own formulation): one arm per item id, added with `add_arm` when it first "
        "appears, each a ridge regression on the context vector (bias + one-hot context "
        "tokens); the slate is the top candidates by expected reward, and before the first fit "
        "(MABWiser cannot predict before it) the first candidates of the shuffled list. "
        "numpy LinUCB and MABWiser's shared LinUCB are the same model on the same rows: they "
        f"chose the same slate on {stream['same_slates_numpy_vs_mabwiser_shared']:.1%} of the "
        "common requests; they differ in cost only (sparse rows and the inverse of the seen "
        "columns, against dense rows and the full inverse).",
    ]
    return lines


def markdown(data: dict[str, Any]) -> list[str]:
    """The docs/benchmarks.md section for the result of :func:`peers`."""
    lines = [
        "## Peers: serendip against raw VW, MABWiser and a numpy LinUCB",
        "",
        "The libraries a user might pick instead, in the same run: raw VW predict on prebuilt "
        "examples (the floor for serendip's overhead), MABWiser's contextual LinUCB and LinTS, "
        "and a plain numpy LinUCB, on the same candidates and the same simulated stream.",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        *(
            f"| {row['target']} | {row['measured']} | {_verdict(row['met'])} |"
            for row in data["targets"]
        ),
        "",
        *_floor_lines(data["floor"]),
        "",
        *_stream_lines(data["stream"]),
        "",
        f"Wall time: {data['seconds']:.0f} s in all ({data['cpu_seconds']:.0f} s of CPU).",
    ]
    return lines
