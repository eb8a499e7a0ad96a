"""The accuracy/latency frontier of shipped tickets: every export timed against the fastest dense way to run its
model (export.json's `latency`, ticketlab.export.latency) beside its ticket's held-out metric over seeds.

An export names the unit it came from (its ticket's provenance: the run's config hash, the round, a branch), so the
report joins it with the runs it reads. Per task, batch and ticket (arm and level), the fastest format of each seed
counts; a ticket is on the Pareto frontier where no other is both faster and better (the dense model stands at 1x).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from ..arms import DENSE, arm_label
from ..errors import TicketlabError
from ..export.formats import RECORD
from ..tasks import TASKS
from .earlybert import ticket_arm
from .results import Result, is_dense, level_key, metric_value
from .tables import Deciders

COLUMNS = ["task", "arm", "level", "batch", "length", "n", "metric", "mean", "std", "speedup", "format", "frontier"]


def held_out(task: str, deciders: Deciders) -> tuple[str, str]:
    """The (split, metric) a frontier shows: the deciding metric on the test split where the task has one."""
    split, metric = deciders[task]
    return ("test", metric) if "test" in TASKS.get(task).eval_splits else (split, metric)


def timed_exports(folders: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The export.json of every export under `folders` that was timed against dense; a folder without one is refused
    in one line."""
    records = []
    for folder in map(Path, folders):
        found = sorted(folder.rglob(RECORD)) if folder.is_dir() else []
        if not found:
            raise TicketlabError(f"{folder} holds no ticketlab export ({RECORD})")
        for path in found:
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                raise TicketlabError(f"{path} is unreadable: {error}") from None
            if isinstance(record, dict) and "latency" in record:
                records.append({**record, "folder": str(path.parent)})
    return records


def exported_points(results: list[Result], exports: list[dict[str, Any]], deciders: Deciders) -> pd.DataFrame:
    """One row per export whose ticket is among `results`: its task, arm, level, seed, format, batch and length,
    speedup over the fastest dense export, and the ticket's held-out metric."""
    units = {(r.run.name.rpartition("_")[2], r.branch, r.round): r for r in results}
    rows = []
    for record in exports:
        ticket = record.get("ticket", {})
        key = (ticket.get("config_hash"), ticket.get("branch"), int(ticket.get("round", -1)))
        result = units.get(key)
        if result is None or is_dense(result):  # not among the runs read, or the dense model itself
            continue
        batch, length = record["tokens"]
        rows.append(
            {
                "task": result.task,
                "arm": ticket_arm(result),
                "level": level_key(result),
                "seed": result.seed,
                "format": record["format"],
                "batch": batch,
                "length": length,
                "speedup": record["latency"]["speedup"],
                "value": metric_value(result, held_out(result.task, deciders)),
            }
        )
    return pd.DataFrame(rows, columns=["task", "arm", "level", "seed", "format", "batch", "length", "speedup", "value"])


def frontier_table(results: list[Result], exports: list[dict[str, Any]], deciders: Deciders) -> pd.DataFrame:
    """Per task, batch, arm and level: the held-out metric over seeds (mean, std), the mean speedup of each seed's
    fastest format (the format most seeds took), and whether it is on the Pareto frontier; the dense model first."""
    points = exported_points(results, exports, deciders)
    if points.empty:
        return pd.DataFrame(columns=COLUMNS)
    fastest = points.loc[points.groupby(["task", "batch", "length", "arm", "level", "seed"]).speedup.idxmax()]
    rows = []
    for (task, batch, length), group in fastest.groupby(["task", "batch", "length"]):
        split, metric = held_out(task, deciders)
        dense = pd.Series([metric_value(r, (split, metric)) for r in results if r.task == task and is_dense(r)])
        rows.append(_row(task, DENSE, 0.0, batch, length, dense, f"{split} {metric}", 1.0, "dense"))
        for (arm, level), tickets in group.groupby(["arm", "level"]):
            speedup, form = tickets.speedup.mean(), tickets.format.mode().iloc[0]
            rows.append(_row(task, arm, level, batch, length, tickets.value, f"{split} {metric}", speedup, form))
    table = pd.DataFrame(rows)
    lower = {task: deciders[task][1] in ("loss", "perplexity") for task in table.task}
    table["frontier"] = [_on_frontier(table, i, lower[table.task[i]]) for i in range(len(table))]
    return table[COLUMNS]


def _row(
    task: str,
    arm: str,
    level: float,
    batch: int,
    length: int,
    values: pd.Series,
    metric: str,
    speedup: float,
    form: str,
) -> dict[str, Any]:
    return {
        "task": task,
        "arm": arm,
        "level": level,
        "batch": batch,
        "length": length,
        "n": int(values.count()),
        "metric": metric,
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if values.count() > 1 else 0.0,
        "speedup": float(speedup),
        "format": form,
    }


def _on_frontier(table: pd.DataFrame, i: int, lower_is_better: bool) -> bool:
    """No other row of the same task and batch is at least as fast and as good, and better in one of them."""
    row = table.iloc[i]
    sign = -1 if lower_is_better else 1
    same = table[(table.task == row.task) & (table.batch == row.batch) & (table.length == row.length)]
    for j, other in same.iterrows():
        if j == i:
            continue
        faster, better = other.speedup >= row.speedup, sign * other["mean"] >= sign * row["mean"]
        if faster and better and (other.speedup > row.speedup or sign * other["mean"] > sign * row["mean"]):
            return False
    return True


def frontier_view(table: pd.DataFrame) -> pd.DataFrame:
    """The frontier table for display: a row per ticket and batch, the frontier marked."""
    return pd.DataFrame(
        {
            "task": table.task,
            "tokens": [f"{b} x {n}" for b, n in zip(table.batch, table.length)],
            "ticket": [
                arm_label(a) if a == DENSE else f"{arm_label(a)} {lv:.1%}" for a, lv in zip(table.arm, table.level)
            ],
            "format": table.format,
            "seeds": table.n.astype(str),
            "held-out": [f"{m:.4f} ± {s:.4f}" for m, s in zip(table["mean"], table["std"])],
            "speedup": [f"{s:.2f}x" for s in table.speedup],
            "frontier": ["yes" if f else "" for f in table.frontier],
        }
    )


def draw_frontier(table: pd.DataFrame, out: Path) -> list[Path]:
    """frontier_<task>.png: the held-out metric (mean ± std over seeds) against the speedup over the fastest dense
    export, one panel per batch, the Pareto frontier joined; one file per task."""
    paths = []
    for task, rows in table.groupby("task", sort=False):
        shapes = sorted({(b, n) for b, n in zip(rows.batch, rows.length)})
        figure = Figure(figsize=(6 * len(shapes), 4.5))
        axes = figure.subplots(1, len(shapes), squeeze=False)
        for axis, (batch, length) in zip(axes[0], shapes):
            panel = rows[(rows.batch == batch) & (rows.length == length)]
            for arm, points in panel.groupby("arm", sort=False):
                for speedup, mean, level in zip(points.speedup, points["mean"], points.level):
                    if arm != DENSE:
                        axis.annotate(
                            f"{level:.0%}", (speedup, mean), textcoords="offset points", xytext=(4, 4), fontsize=7
                        )
                axis.errorbar(
                    points.speedup, points["mean"], yerr=points["std"], fmt="o", capsize=3, label=arm_label(arm)
                )
            front = panel[panel.frontier].sort_values("speedup")
            axis.plot(front.speedup, front["mean"], "k--", lw=1, label="Pareto frontier")
            axis.set(xscale="log", xlabel="speedup over the fastest dense export", title=f"batch {batch} x {length}")
            for axis_format in (axis.xaxis.set_major_formatter, axis.xaxis.set_minor_formatter):
                axis_format(FuncFormatter(lambda value, _: f"{value:g}x"))
            axis.set_ylabel(rows.metric.iloc[0])
            axis.legend(fontsize=7)
        figure.suptitle(f"{task}: accuracy against speed of the shipped tickets")
        figure.tight_layout()
        path = out / f"frontier_{task}.png"
        figure.savefig(path, dpi=110)
        paths.append(path)
    return paths
