"""What IMP's tickets keep: the overlap of the tickets of every two tasks, their sparsity per layer and matrix type,
and the weights they keep per attention head."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from ...arms import IMP
from ...masks import load_mask
from ..anatomy import head_kept, layer_type_sparsity, overlap_grid, random_iou
from ..results import Result, level_key
from .style import SEQUENTIAL, SEQUENTIAL_R, heatmap, model_name, percent


def overlap_figure(results: list[Result], level: float) -> Figure | None:
    """IoU between the IMP tickets of every two tasks at one level (diagonal: between seeds of one task)."""
    tickets = {task: [load_mask(r.mask)[0] for r in found] for task, found in _tickets_at(results, level).items()}
    grid = overlap_grid(tickets)
    if np.isnan(grid.values).all():
        return None
    size = len(grid.rows)
    figure = Figure(figsize=(2.4 + 0.9 * size, 1.6 + 0.7 * size), layout="constrained")
    ax = figure.add_subplot()
    text = np.vectorize(lambda v: "" if np.isnan(v) else f"{v:.2f}")(grid.values)
    image = heatmap(ax, grid.values, grid.rows, grid.columns, SEQUENTIAL, Normalize(0, 1), text)
    figure.colorbar(image, ax=ax, label="IoU of the kept weights")
    figure.suptitle(
        f"Overlap of IMP tickets at {percent(level)}% sparsity  ·  {model_name(results)}", fontweight="bold"
    )
    ax.set_title(
        f"diagonal: between seeds of a task; two random masks: {random_iou(level):.2f}", fontsize=9, color="0.35"
    )
    return figure


def layers_figure(results: list[Result], task: str) -> Figure | None:
    """Sparsity per layer and matrix type of the task's IMP tickets at their highest level, mean over seeds."""
    if not (found := _highest_tickets(results, task)):
        return None
    grids = [layer_type_sparsity(load_mask(r.mask)[0]) for r in found]
    grid = grids[0]
    values = np.mean([g.values for g in grids], axis=0)
    figure = Figure(
        figsize=(max(6.5, 1.6 + 0.85 * len(grid.columns)), 1.4 + 0.4 * len(grid.rows)), layout="constrained"
    )
    ax = figure.add_subplot()
    text = np.vectorize(lambda v: "" if np.isnan(v) else f"{v:.0%}")(values)
    columns = [c.replace("attention ", "attention\n") for c in grid.columns]
    norm = Normalize(float(np.nanmin(values)), 1.0)  # from the least pruned cell to all pruned: differences show
    image = heatmap(ax, values, grid.rows, columns, SEQUENTIAL_R, norm, text)
    ax.axhline(len(grid.rows) - 1.5, color="white", lw=3)
    ax.axvline(len(grid.columns) - 1.5, color="white", lw=3)
    ax.set_ylabel("block (stage.block)" if "." in grid.rows[0] else "layer")
    figure.colorbar(image, ax=ax, label="sparsity (share removed)", format=PercentFormatter(1.0))
    figure.suptitle(f"{task}: where the IMP ticket prunes  ·  {model_name(results)}", fontweight="bold")
    ax.set_title(_ticket_caption(found), fontsize=9, color="0.35")
    return figure


def heads_figure(results: list[Result], task: str, heads: int) -> Figure | None:
    """Fraction of weights kept in each attention head of the task's IMP tickets at their highest level."""
    if not (found := _highest_tickets(results, task)):
        return None
    grids = [head_kept(load_mask(r.mask)[0], heads) for r in found]
    values = np.mean([g.values for g in grids], axis=0)
    rows, columns = grids[0].rows, grids[0].columns
    figure = Figure(figsize=(max(6.5, 2.2 + 0.55 * len(columns)), 1.4 + 0.38 * len(rows)), layout="constrained")
    ax = figure.add_subplot()
    text = np.vectorize(lambda v: f"{v:.0%}")(values)
    norm = Normalize(0.0, float(values.max()))  # from all pruned to the fullest head: differences show
    image = heatmap(ax, values, rows, columns, SEQUENTIAL, norm, text)
    ax.set_xlabel("attention head")
    ax.set_ylabel("layer")
    figure.colorbar(image, ax=ax, label="fraction of weights kept", format=PercentFormatter(1.0))
    figure.suptitle(f"{task}: weights kept per attention head  ·  {model_name(results)}", fontweight="bold")
    ax.set_title(_ticket_caption(found) + "; Q, K, V rows and attention-output columns", fontsize=9, color="0.35")
    return figure


def overlap_level(results: list[Result]) -> float | None:
    """The highest level that the most tasks have IMP tickets at."""
    tasks: dict[float, set[str]] = defaultdict(set)
    for r in results:
        if r.arm == IMP and level_key(r) > 0:
            tasks[level_key(r)].add(r.task)
    return max(tasks, key=lambda level: (len(tasks[level]), level)) if tasks else None


def _tickets_at(results: list[Result], level: float) -> dict[str, list[Result]]:
    """IMP tickets at `level`, by task."""
    found: dict[str, list[Result]] = defaultdict(list)
    for r in sorted(results, key=lambda r: (r.task, r.seed)):
        if r.arm == IMP and level_key(r) == round(level, 6):
            found[r.task].append(r)
    return dict(found)


def _highest_tickets(results: list[Result], task: str) -> list[Result]:
    """The task's IMP tickets at its highest level above 0 (one per seed)."""
    levels = [level_key(r) for r in results if r.task == task and r.arm == IMP and level_key(r) > 0]
    return _tickets_at(results, max(levels)).get(task, []) if levels else []


def _ticket_caption(found: list[Result]) -> str:
    seeds = len({r.seed for r in found})
    return f"IMP ticket at {percent(level_key(found[0]))}% sparsity, mean over {seeds} seed{'s' * (seeds > 1)}"
