"""``serendip simulate``: a policy learning on simulated users, in process (no stack, no HTTP)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bandit.simulate.arena import BanditContender, Contender, UniformContender, run
from bandit.simulate.simulation import Population
from bandit.spec import load_spec

PROGRESS_COLUMNS = (
    TextColumn("{task.description}"),
    BarColumn(),
    MofNCompleteColumn(),
    TimeElapsedColumn(),
)


def ctr_table(policy: str, rows: list[tuple[int, int, float, float]]) -> Table:
    """The table the demos print: CTR per window of requests, against uniform random."""
    table = Table(title="Click-through rate as the policy learns")
    for column in ("requests", policy, "uniform random", "lift"):
        table.add_column(column, justify="right")
    for first, last, mine, base in rows:
        lift = f"{mine / base:.2f}x" if base else "-"
        table.add_row(f"{first:,}-{last:,}", f"{mine:.3f}", f"{base:.3f}", lift)
    return table


def simulate(decisions: int, policy: Path, seed: int, console: Console) -> int:
    """Drive the simulated population through a policy and a uniform baseline; show CTR grow."""
    spec = load_spec(policy)
    population = Population(seed=seed)
    contenders: list[Contender] = [BanditContender(spec), UniformContender(seed=seed)]
    console.print(
        f"[bold]serendip simulate[/bold]: policy [cyan]{spec.name}[/cyan] vs uniform random, "
        f"{decisions:,} requests, slates of {spec.slate_size} from 50 candidates"
    )
    with Progress(*PROGRESS_COLUMNS, console=console, transient=True) as progress:
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
    rows = []
    for start in range(0, size * windows, size):
        stop = start + size
        mine = sum(learned.clicks[start:stop]) / max(1, sum(learned.slots[start:stop]))
        base = sum(baseline.clicks[start:stop]) / max(1, sum(baseline.slots[start:stop]))
        rows.append((start + 1, stop, mine, base))
    console.print(ctr_table(spec.name, rows))
    return 0
