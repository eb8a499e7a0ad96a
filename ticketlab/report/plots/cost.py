"""The deciding metric against the cost to find a ticket and to train it."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ...arms import arm_label, arm_order
from ..cost import over_seeds
from ..results import Result, metric_value
from ..verdict import LOWER_IS_BETTER
from .style import arm_styles, model_name


def cost_figure(results: list[Result], costs: pd.DataFrame, task: str, decider: tuple[str, str]) -> Figure | None:
    """The deciding metric against the cumulative cost of every arm at every sparsity: the training FLOPs to find the
    ticket and to train it (log scale; `costs`: ticketlab.report.cost.unit_costs of `results`), means over seeds,
    each point marked with its sparsity. None where no result of the task has both."""
    split, metric = decider
    values = [np.nan if (value := metric_value(r, decider)) is None else value for r in results]
    frame = over_seeds(costs.assign(value=values)[costs.task == task])
    frame = frame[frame.total_flops.notna() & frame.value.notna()]
    if frame.empty:
        return None
    figure = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = figure.add_subplot()
    series = sorted(
        {(arm, source, settings) for arm, source, settings in zip(frame.arm, frame.source, frame.settings)},
        key=lambda key: (arm_order(key[0], key[1] or None), key[2]),
    )
    for (arm, source, settings), style in zip(series, arm_styles([arm for arm, *_ in series])):
        rows = frame[(frame.arm == arm) & (frame.source == source) & (frame.settings == settings)]
        rows = rows.sort_values(["level", "sparsity"])
        label = arm_label(arm, source or None)
        ax.plot(rows.total_flops, rows.value, label=f"{label} {settings}" if settings else label, **style)
        for x, y, level, measured in zip(rows.total_flops, rows.value, rows.level, rows.sparsity):
            at = measured if np.isnan(level) else level
            ax.annotate(
                f"{100 * at:.0f}%", (x, y), xytext=(3, 3), textcoords="offset points", fontsize=6.5, color="0.4"
            )
    ax.set_xscale("log")
    ax.set_xlabel("cost to find the ticket and to train it (training FLOPs, dense estimate)")
    ax.set_ylabel(f"{metric} on {split}" + (" (lower is better)" if metric in LOWER_IS_BETTER else ""))
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    figure.suptitle(f"{task}: {metric} vs cost  ·  {model_name(results)}", fontweight="bold")
    ax.set_title("means over seeds; each point: an arm at one sparsity (IMP's first: dense)", fontsize=9, color="0.35")
    return figure
