"""The transfer matrix: tickets found on one task trained on another, against the dense model and random pruning."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..anatomy import Grid
from ..results import Result
from ..tables import Deciders
from ..tables import transfer_matrix as table_transfer_matrix
from ..verdict import LOWER_IS_BETTER
from .style import DIVERGING, diverging_norm, heatmap, model_name, percent


def transfer_matrix(results: list[Result], deciders: Deciders, level: float, against: str) -> tuple[Grid, Grid]:
    """The report's transfer matrix (ticketlab.report.tables.transfer_matrix) at one level as grids: tickets found on
    a source task (rows) trained on a target task (columns), against "dense" (the target's dense model) or "random"
    (random pruning on the target at the same level). The first grid: the target's deciding metric minus the
    reference's, means over the seeds both have. The second: that difference relative to the reference, signed so
    that positive is better (flipped for a loss), for colour. The diagonal is IMP on the task itself.
    """
    return _transfer_grids(table_transfer_matrix(results, deciders), level, against)


def _transfer_grids(matrix: pd.DataFrame, level: float, against: str) -> tuple[Grid, Grid]:
    """`transfer_matrix`'s grids, from the report's transfer matrix."""
    cells = matrix[matrix.level == round(level, 6)]
    tasks = sorted(set(cells.source) | set(cells.target))
    delta, gain = np.full((2, len(tasks), len(tasks)), np.nan)
    for cell in cells.itertuples():
        i, j = tasks.index(cell.source), tasks.index(cell.target)
        delta[i, j], reference = getattr(cell, f"minus_{against}"), getattr(cell, against)
        sign = -1 if cell.metric in LOWER_IS_BETTER else 1
        gain[i, j] = sign * delta[i, j] / abs(reference) if reference else np.nan
    return Grid(tuple(tasks), tuple(tasks), delta), Grid(tuple(tasks), tuple(tasks), gain)


def transfer_figure(results: list[Result], deciders: Deciders, level: float) -> Figure:
    """The transfer matrix at one level: against the dense model, and against random pruning; colours centred at 0."""
    matrix = table_transfer_matrix(results, deciders)
    panels = [
        ("vs dense", _transfer_grids(matrix, level, "dense")),
        ("vs random pruning at the same sparsity", _transfer_grids(matrix, level, "random")),
    ]
    norm = diverging_norm(*(100 * gain.values for _, (_, gain) in panels))
    tasks = panels[0][1][0].rows
    size = len(tasks)
    figure = Figure(figsize=(2.2 + 2 * (1.1 * size + 0.8), 2.2 + 0.75 * size), layout="constrained")
    axes = figure.subplots(1, 2)
    columns = [f"{t}\n{deciders[t][1]}{' ↓' if deciders[t][1] in LOWER_IS_BETTER else ''}" for t in tasks]
    for ax, (title, (delta, gain)) in zip(axes, panels):
        text = np.vectorize(lambda v: "n/a" if np.isnan(v) else f"{v:+.3g}")(delta.values)
        image = heatmap(ax, 100 * gain.values, delta.rows, columns, DIVERGING, norm, text)
        for k in range(size):
            ax.add_patch(Rectangle((k - 0.5, k - 0.5), 1, 1, fill=False, ec="0.15", lw=1.5))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("target task · its deciding metric")
    axes[0].set_ylabel("ticket found on")
    bar = figure.colorbar(image, ax=axes, shrink=0.85)
    bar.set_label("change relative to the reference, %\n(blue: better, red: worse)")
    figure.suptitle(
        f"Transfer of IMP tickets at {percent(level)}% sparsity  ·  {model_name(results)}", fontweight="bold"
    )
    figure.text(
        0.5,
        -0.02,
        "Numbers: target's deciding metric minus the reference's (↓: lower is better), mean over shared seeds.\n"
        "Framed diagonal: the task's own IMP ticket.",
        ha="center",
        va="top",
        fontsize=8.5,
        color="0.3",
    )
    return figure
