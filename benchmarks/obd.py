"""The Open Bandit Dataset's sample, imported and evaluated (``python -m benchmarks.obd``).

The sample ships inside the ``obp`` 0.5.7 source distribution on PyPI (``obd/random/all``:
10,000 impressions of ZOZOTOWN's uniform-random logging policy over 80 items at 3 positions, 38
clicks). This benchmark downloads it (checked by SHA-256), imports it with
``examples/obd/mapping.yaml`` and evaluates on it:

- ``examples/obd/uniform.yaml``, uniform random: its estimate must match the observed CTR
  inside its interval;
- the Bernoulli Thompson sampling production policy, given by its propensities: obp ships its
  production prior (``obp/policy/conf/prior_bts.yaml``, campaign ``all``); its marginal
  probability of each item at each position is computed twice, as obp does (Monte Carlo, 100,000
  draws, ``RandomState(12345)``: IPS/SNIPS must equal obp's 0.00455/0.00478) and exactly (by
  numerical integration over the Beta densities), and evaluated as a propensity table;
- the for-you and explore specs, with empirical-likelihood intervals and their diagnostics.

Results go to ``benchmarks/results/obd.json``; docs/evaluation.md quotes them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bandit.evaluate.propensity_table import load_table
from bandit.evaluate.replay import Evaluation, evaluate
from bandit.log_import import ImportReport, import_log, load_items, load_mapping, read_rows
from bandit.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
SDIST = "obp-0.5.7.tar.gz"
SDIST_SHA256 = "3060d67fedfcfadf1e7a6f2608987f74412b5eb74d2c567edeb147595c68f2a0"
MEMBERS = {
    "all.csv": "obp-0.5.7/obp/dataset/obd/random/all/all.csv",
    "item_context.csv": "obp-0.5.7/obp/dataset/obd/random/all/item_context.csv",
    "prior_bts.yaml": "obp-0.5.7/obp/policy/conf/prior_bts.yaml",
}
OBP_IPS, OBP_SNIPS = 0.00455, 0.00478  # obp's own values on this sample, to 3 figures
POSITIONS = 3


def fetch(cache: Path) -> Path:
    """The sample's files in ``cache`` (downloaded once, checked by SHA-256)."""
    cache.mkdir(parents=True, exist_ok=True)
    if all((cache / name).exists() for name in MEMBERS):
        return cache
    archive = cache / SDIST
    if not archive.exists():
        print(f"  downloading {SDIST} from the package index", file=sys.stderr, flush=True)
        # obp 0.5.7 declares Python < 3.11: ask for its source as a 3.10 install would.
        command = [sys.executable, "-m", "pip", "download", "obp==0.5.7", "--no-deps"]
        command += ["--no-binary", ":all:", "--only-binary", ":none:", "--python-version"]
        command += ["3.10", "-d", str(cache), "-q"]
        subprocess.run(command, check=True)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        archive.unlink()
        raise RuntimeError(f"{SDIST}: SHA-256 {digest}, expected {SDIST_SHA256}")
    with tarfile.open(archive) as tar:
        for name, member in MEMBERS.items():
            source = tar.extractfile(member)
            if source is None:
                raise RuntimeError(f"{SDIST} holds no {member}")
            (cache / name).write_bytes(source.read())
    return cache


def bts_prior(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The production prior's Beta parameters of campaign ``all``, by item id."""
    prior = yaml.safe_load(path.read_text(encoding="utf-8"))["all"]
    return np.asarray(prior["alpha"], dtype=float), np.asarray(prior["beta"], dtype=float)


def bts_monte_carlo(
    alpha: np.ndarray, beta: np.ndarray, draws: int = 100_000, seed: int = 12345
) -> np.ndarray:
    """Each item's frequency at each position over ``draws`` Thompson draws, as obp computes
    it (``BernoulliTS.compute_batch_action_dist``: the same generator, seed and order)."""
    theta = np.random.RandomState(seed).beta(alpha, beta, size=(draws, len(alpha)))
    top = np.argsort(theta, axis=1)[:, ::-1][:, :POSITIONS]
    counts = np.stack([np.bincount(top[:, k], minlength=len(alpha)) for k in range(POSITIONS)])
    return counts.T / draws


def bts_exact(alpha: np.ndarray, beta: np.ndarray, grid: int = 40_000) -> np.ndarray:
    """Each item's exact probability at each position: ``P(item i ranks k) = int f_i(t) *
    P(exactly k - 1 other draws exceed t) dt``, the latter the coefficients of
    ``prod_j (F_j(t) + (1 - F_j(t)) x)``, integrated on a grid over the densities' support."""
    from scipy import stats

    low = float(stats.beta.ppf(1e-13, alpha, beta).min())
    high = float(stats.beta.ppf(1 - 1e-13, alpha, beta).max())
    t = np.linspace(low, high, grid)
    cdf = stats.beta.cdf(t[None, :], alpha[:, None], beta[:, None])
    pdf = stats.beta.pdf(t[None, :], alpha[:, None], beta[:, None])
    out = np.zeros((len(alpha), POSITIONS))
    for i in range(len(alpha)):
        coefficients = np.zeros((POSITIONS, grid))
        coefficients[0] = 1.0
        for j in range(len(alpha)):
            if j != i:
                shifted = coefficients * cdf[j]
                shifted[1:] += coefficients[:-1] * (1.0 - cdf[j])
                coefficients = shifted
        out[i] = np.trapezoid(pdf[i] * coefficients, t, axis=1)
    return out


def write_table(marginals: np.ndarray, path: Path) -> Path:
    """A propensity table (item_id, position, probability) of ``marginals``."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "position", "probability"])
        for item, row in enumerate(marginals):
            for k, probability in enumerate(row, start=1):
                writer.writerow([item, k, repr(float(probability))])
    return path


def _values(result: Evaluation) -> dict[str, Any]:
    out = {}
    for value in result.candidates:
        first = value.first_slot
        out[value.name] = {
            "value": first.value,
            "interval": [first.low, first.high],
            "interval_method": first.interval,
            "ess": first.ess,
            "top_1pct_share": first.top_1pct_share,
            "top_10_share": first.top_10_share,
            "unsupported": value.unsupported,
            "warning": first.warning,
        }
    return out


def obd_bench(cache: Path, work: Path) -> dict[str, Any]:
    """Import the sample, evaluate every policy above; the figures of docs/evaluation.md."""
    files = fetch(cache)
    work.mkdir(parents=True, exist_ok=True)
    mapping, _ = load_mapping(ROOT / "examples" / "obd" / "mapping.yaml")
    started = time.perf_counter()
    items = load_items(mapping.items, files) if mapping.items else None
    report = ImportReport()
    records = list(import_log(read_rows(files / "all.csv", mapping.format), mapping, items, report))
    imported_s = time.perf_counter() - started
    sizes = _log_sizes(records)
    alpha, beta = bts_prior(files / "prior_bts.yaml")
    started = time.perf_counter()
    exact = bts_exact(alpha, beta)
    exact_s = time.perf_counter() - started
    tables = {
        "bts (obp's Monte Carlo)": load_table(
            write_table(bts_monte_carlo(alpha, beta), work / "bts_mc.csv")
        ),
        "bts (exact)": load_table(write_table(exact, work / "bts_exact.csv")),
    }
    print("  evaluating the propensity tables (ips, snips)", file=sys.stderr, flush=True)
    ips = evaluate(records, {}, method="ips", tables=tables)
    snips = evaluate(records, {}, method="snips", tables=tables)
    specs = {
        name: load_spec(path)
        for name, path in (
            ("uniform", ROOT / "examples" / "obd" / "uniform.yaml"),
            ("for-you", ROOT / "policies" / "for-you.yaml"),
            ("explore", ROOT / "policies" / "explore.yaml"),
        )
    }
    print("  replaying uniform, for-you and explore (el intervals)", file=sys.stderr, flush=True)
    started = time.perf_counter()
    replayed = evaluate(records, specs, interval="el")
    replay_s = time.perf_counter() - started
    clicks = sum(reward.value or 0.0 for record in records for reward in record.rewards)
    return {
        "rows": report.rows,
        "events": report.events,
        "clicks": clicks,
        "observed_ctr": replayed.logged_first_slot,
        "import_seconds": imported_s,
        "log_bytes": sizes,
        "bts": {
            name: {"ips": ips_value.first_slot.value, "snips": snips_value.first_slot.value}
            for name, ips_value, snips_value in zip(
                tables, ips.candidates, snips.candidates, strict=True
            )
        },
        "bts_exact_seconds": exact_s,
        "obp_reference": {"ips": OBP_IPS, "snips": OBP_SNIPS},
        "tables_snips": _values(snips),
        "specs": _values(replayed),
        "replay_seconds": replay_s,
        "warnings": replayed.warnings,
    }


def _log_sizes(records: list[Any]) -> dict[str, int]:
    from bandit.decision_log import write_jsonl

    sizes = {}
    for name, by_reference in (("by_reference", True), ("inline", False)):
        sink = io.StringIO()
        write_jsonl(records, sink, by_reference=by_reference)
        sizes[name] = len(sink.getvalue().encode("utf-8"))
    return sizes


def main() -> int:
    """Run it and write ``benchmarks/results/obd.json``."""
    results = ROOT / "benchmarks" / "results"
    data = obd_bench(Path.home() / ".cache" / "serendip" / "obd", results / "obd")
    (results / "obd.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: data[k] for k in ("observed_ctr", "bts", "specs")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def markdown(data: dict[str, Any]) -> list[str]:
    """The section of docs/benchmarks.md."""
    lines = [
        "## Open Bandit Dataset",
        "",
        f"`python -m benchmarks.obd` (docs/evaluation.md explains it): obp 0.5.7's sample, "
        f"{data['rows']:,} impressions of uniform-random logging over 80 items at 3 positions, "
        f"{data['clicks']:.0f} clicks (observed CTR {data['observed_ctr']:.4f}), imported by "
        f"`examples/obd/mapping.yaml` in {data['import_seconds']:.1f} s "
        f"({data['log_bytes']['by_reference'] / 1e6:.1f} MB by reference, "
        f"{data['log_bytes']['inline'] / 1e6:.1f} MB inline).",
        "",
        "| policy | estimate | 95% interval | interval | effective sample size | warning |",
        "|---|---|---|---|---|---|",
    ]
    for name, value in {**data["specs"], **data["tables_snips"]}.items():
        low, high = value["interval"]
        lines.append(
            f"| {name} | {value['value']:.5f} | [{low:.5f}, {high:.5f}] | "
            f"{value['interval_method']} | {value['ess']:,.0f} | {value['warning'] or '-'} |"
        )
    reference = data["obp_reference"]
    lines += [
        "",
        "| Bernoulli TS marginals | IPS | SNIPS | obp's own IPS / SNIPS |",
        "|---|---|---|---|",
    ]
    for name, value in data["bts"].items():
        lines.append(
            f"| {name} | {value['ips']:.6f} | {value['snips']:.6f} | "
            f"{reference['ips']} / {reference['snips']} |"
        )
    return lines
