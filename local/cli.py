"""The ``serendip`` command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bandit.arena import BanditContender, Contender, UniformContender, run
from bandit.simulation import Population
from bandit.spec import load_spec

POLICIES = Path(__file__).resolve().parent.parent / "policies"


def demo(decisions: int, policy: Path, seed: int, console: Console) -> int:
    """Drive the simulated population through a policy and a uniform baseline; show CTR grow."""
    spec = load_spec(policy)
    population = Population(seed=seed)
    contenders: list[Contender] = [BanditContender(spec), UniformContender(seed=seed)]
    console.print(
        f"[bold]serendip demo[/bold]: policy [cyan]{spec.name}[/cyan] vs uniform random, "
        f"{decisions:,} requests, slates of {spec.slate_size} from 50 candidates"
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("serving and learning", total=decisions)
        tracks = run(
            population,
            contenders,
            decisions=decisions,
            slate_size=spec.slate_size,
            seed=seed,
            progress=lambda done: progress.update(task, completed=done),
        )
    learned, baseline = tracks[spec.name], tracks["uniform-random"]
    windows = 8
    size = max(1, decisions // windows)
    table = Table(title="Click-through rate as the policy learns")
    for column in ("requests", spec.name, "uniform random", "lift"):
        table.add_column(column, justify="right")
    for start in range(0, size * windows, size):
        stop = start + size
        mine = sum(learned.clicks[start:stop]) / max(1, sum(learned.slots[start:stop]))
        base = sum(baseline.clicks[start:stop]) / max(1, sum(baseline.slots[start:stop]))
        lift = f"{mine / base:.2f}x" if base else "-"
        table.add_row(f"{start + 1:,}-{stop:,}", f"{mine:.3f}", f"{base:.3f}", lift)
    console.print(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``serendip`` console script."""
    parser = argparse.ArgumentParser(prog="serendip", description="Serendip explore service")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="show a policy learning on simulated users")
    demo_parser.add_argument("--decisions", type=int, default=6000, help="requests to serve")
    demo_parser.add_argument(
        "--policy", type=Path, default=POLICIES / "for-you.yaml", help="policy spec (YAML)"
    )
    demo_parser.add_argument("--seed", type=int, default=1, help="simulation seed")
    args = parser.parse_args(argv)
    console = Console()
    if args.command == "demo":
        if args.decisions < 8:
            parser.error("--decisions must be at least 8")
        return demo(args.decisions, args.policy, args.seed, console)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
