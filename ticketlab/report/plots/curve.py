"""The deciding metric against sparsity: every arm of a task, mean over seeds with a min–max band."""

from __future__ import annotations

from collections import defaultdict

from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from ...arms import arm_label, arm_order
from ..results import Result, by_seed, is_dense, level_key, metric_value
from ..verdict import LOWER_IS_BETTER, summarize
from .style import arm_styles, model_name


def curve_figure(results: list[Result], task: str, decider: tuple[str, str]) -> Figure:
    """The deciding metric vs sparsity: IMP, every control and every transferred ticket (by source task), mean over
    seeds with a min–max band; dense as a line."""
    split, metric = decider
    figure = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = figure.add_subplot()
    if dense := by_seed([r for r in results if r.task == task and is_dense(r)], decider):
        spread = summarize(dense.values())
        ax.axhspan(spread.min, spread.max, color="0.5", alpha=0.15, lw=0)
        ax.axhline(spread.mean, color="0.3", ls="--", lw=1.2, label=f"dense ({spread.n} seed{'s' * (spread.n > 1)})")
    pruned = [r for r in results if r.task == task and level_key(r) > 0]
    series = sorted({(r.arm, r.source) for r in pruned}, key=lambda arm_source: arm_order(*arm_source))
    for (arm, source), style in zip(series, arm_styles([arm for arm, _ in series])):
        at = defaultdict(list)
        for r in pruned:
            if (r.arm, r.source) == (arm, source) and (value := metric_value(r, decider)) is not None:
                at[level_key(r)].append(value)
        levels = sorted(at)
        spreads = [summarize(at[level]) for level in levels]
        ax.fill_between(
            levels, [s.min for s in spreads], [s.max for s in spreads], color=style["color"], alpha=0.15, lw=0
        )
        ax.plot(levels, [s.mean for s in spreads], label=arm_label(arm, source), **style)
    ax.set_xlim(left=0)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("sparsity (share of prunable weights removed)")
    ax.set_ylabel(f"{metric} on {split}" + (" (lower is better)" if metric in LOWER_IS_BETTER else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    figure.suptitle(f"{task}: {metric} vs sparsity  ·  {model_name(results)}", fontweight="bold")
    ax.set_title("lines: mean over seeds; bands: min to max", fontsize=9, color="0.35")
    return figure
