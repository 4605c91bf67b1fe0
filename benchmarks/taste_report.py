"""The taste-world table's ratios, targets and markdown section (``docs/benchmarks.md``)."""

from __future__ import annotations

from typing import Any

NAMES = {
    "explore": "explore",
    "popularity": "popularity (online)",
    "linucb": "numpy LinUCB (shared features)",
    "uniform": "uniform random",
    "context": "context only (best)",
    "category": "taste known, clusters via categories (best)",
    "oracle": "oracle",
}
ORACLE_SHARE = 0.9
POPULARITY_LIFT = 1.2
PLAIN_VW = "plain VW ("


def ratios(contenders: dict[str, dict[str, Any]]) -> None:
    """Add each row's first-slot CTR over the oracle's and over online popularity's."""
    oracle = contenders[NAMES["oracle"]]["first_slot_ctr"]
    popularity = contenders[NAMES["popularity"]]["first_slot_ctr"]
    for row in contenders.values():
        ctr = row["first_slot_ctr"]
        row["oracle_ratio"] = ctr / oracle if oracle else float("nan")
        row["popularity_ratio"] = ctr / popularity if popularity else float("nan")


def best_plain_vw(contenders: dict[str, dict[str, Any]]) -> tuple[str, float]:
    """The plain VW row with the highest first-slot CTR, and that CTR."""
    rows = {n: r["first_slot_ctr"] for n, r in contenders.items() if n.startswith(PLAIN_VW)}
    name = max(rows, key=rows.__getitem__)
    return name, rows[name]


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The product's targets for every serendip policy row, last-quarter first-slot CTR."""
    contenders = result["contenders"]
    vw_name, vw_ctr = best_plain_vw(contenders)
    out = []
    for name in result["policies"]:
        row = contenders[name]
        ctr = row["first_slot_ctr"]
        out += [
            {
                "policy": name,
                "target": f">= {ORACLE_SHARE:.0%} of oracle first-slot CTR",
                "measured": f"{row['oracle_ratio']:.1%}",
                "pass": row["oracle_ratio"] >= ORACLE_SHARE,
            },
            {
                "policy": name,
                "target": f">= {POPULARITY_LIFT:g}x online popularity",
                "measured": f"{row['popularity_ratio']:.3f}x",
                "pass": row["popularity_ratio"] >= POPULARITY_LIFT,
            },
            {
                "policy": name,
                "target": ">= best plain VW",
                "measured": f"{ctr:.4f} vs {vw_ctr:.4f} ({vw_name})",
                "pass": ctr >= vw_ctr,
            },
        ]
    return out


def _grid_lines(result: dict[str, Any]) -> list[str]:
    rows = sorted(result["vw_grid"], key=lambda r: (r["features"], -r["first_slot_ctr"]))
    lines = [
        f"Plain VW grid ({result['grid_rounds']:,} rounds each, last quarter; the best of each "
        "feature set then ran the full stream above):",
        "",
        "| features | exploration | cb_type | learning rate | first-slot CTR | clicks per slate |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['features']} | {row['exploration']} | {row['cb_type']} | "
            f"{row['learning_rate']:g} | {row['first_slot_ctr']:.4f} | "
            f"{row['clicks_per_slate']:.4f} |"
        )
    return lines


def markdown(result: dict[str, Any]) -> list[str]:
    """The "Taste world" section of docs/benchmarks.md, as lines."""
    world = result["world"]
    lines = [
        "## Taste world: every contender on one stream",
        "",
        f"`bandit.simulate.taste_world.TasteWorld`: personal tastes the context does not reveal, a "
        f"10,000-item catalog in 24 hidden taste clusters whose categories only hint at them, "
        f"{world['n_users']:,} users, base CTR {world['base_ctr']:g}; one stream of "
        f"{result['rounds']:,} requests of 20 random candidates (seed {result['seed']}), slates of "
        f"{result['slate']}. Every contender sees the same requests and the same click draws "
        "and learns each event at once (`python -m benchmarks.taste`). First-slot CTR is the "
        "true click probability of the first slot, clicks per slate the sum over the slate, both "
        "averaged over the last quarter; ratios are of first-slot CTR. Wall seconds are the "
        "whole stream in process, on the machine below.",
        "",
        "| contender | first-slot CTR | clicks per slate | vs oracle | vs popularity | wall s "
        "| setup |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in result["contenders"].items():
        lines.append(
            f"| {name} | {row['first_slot_ctr']:.4f} | {row['clicks_per_slate']:.4f} | "
            f"{row['oracle_ratio']:.1%} | {row['popularity_ratio']:.2f}x | "
            f"{row['seconds']:.1f} | {row['setup']} |"
        )
    lines += [
        "",
        "serendip's rows, LinUCB and popularity learn every shown slot; plain VW, as a user of VW "
        "alone with one decision per request would run it, draws the first slot from "
        "`--cb_explore_adf`'s pmf, fills the rest by the pmf's order and learns one label per "
        "round (the first slot's).",
        "",
        "Targets (last quarter, first-slot CTR):",
        "",
        "| policy | target | measured | verdict |",
        "|---|---|---|---|",
    ]
    for target in result["targets"]:
        verdict = "PASS" if target["pass"] else "FAIL"
        lines.append(
            f"| {target['policy']} | {target['target']} | {target['measured']} | {verdict} |"
        )
    lines += ["", *_grid_lines(result)]
    return lines
