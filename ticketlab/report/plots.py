"""The figures of `ticketlab report`: metric vs sparsity, metric vs cost, the transfer matrix, what the tickets keep,
and EarlyBERT's search and structured tickets.

Each figure is drawn on a bare matplotlib Figure (no pyplot state, no GUI backend) and saved as PNG.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from itertools import chain
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator, PercentFormatter

from ..errors import TicketlabError
from ..masks import load_mask
from .anatomy import Grid, attention_heads, head_kept, layer_type_sparsity, overlap_grid, random_iou
from .cost import over_seeds, unit_costs
from .earlybert import EARLYBERT, RANDOM, Group, earlybert_groups, ffn_kept_by_layer, heads_kept_grid, split_settings
from .results import Result, by_seed, is_dense, level_key, metric_value, split_arm, unstructured
from .tables import arm_label, arm_order
from .tables import transfer_matrix as table_transfer_matrix
from .verdict import LOWER_IS_BETTER, summarize

log = logging.getLogger(__name__)

Decider = tuple[str, str]  # (split, metric)

CONTROL_COLORS = {  # tab10 indices: an arm has the same colour in every figure
    "one-shot": 0,
    "random": 1,
    "random-per-matrix": 8,
    "reinit": 2,
    "shuffle": 4,
    "noise": 6,
    "inverted": 3,
}
SPARE_COLORS = (9, 5, 7)  # for IMP with rewinding and any other arm
MARKERS = "sD^vPX<>*ph"
DIVERGING = colormaps["RdBu"].with_extremes(bad="0.93")  # red: worse, blue: better
SEQUENTIAL = colormaps["viridis"].with_extremes(bad="white")  # dark: little kept
SEQUENTIAL_R = colormaps["viridis_r"].with_extremes(bad="white")  # dark: much pruned


def draw_all(results: list[Result], deciders: dict[str, Decider], out: Path) -> list[Path]:
    """Draw every figure the results allow into `out`; the PNG files written.

    Per task: `curve_<task>` (deciding metric vs sparsity), `cost_<task>` (deciding metric vs the cost to find and
    train each ticket, where the runs have cost ledgers), `layers_<task>` and `heads_<task>` (what its IMP ticket
    keeps at its highest sparsity); per transfer level: `transfer_<level>`; once: `overlap_<level>` (IoU of the
    tickets). Per task with EarlyBERT results: `earlybert_distance_<task>` (its search) and `earlybert_heads_<task>`
    (what its tickets keep). With several base models every name ends in `_<model>`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    models = sorted({r.model for r in results})
    written = []
    for model in models:
        suffix = f"_{_slug(Path(model).name)}" if len(models) > 1 else ""
        found = [r for r in results if r.model == model]
        figures = chain(
            _figures(unstructured(found), deciders), _cost_figures(found, deciders), _earlybert_figures(found)
        )
        for stem, figure in figures:
            path = out / f"{_slug(stem)}{suffix}.png"
            figure.savefig(path, dpi=150, bbox_inches="tight")
            written.append(path)
    return written


def _figures(results: list[Result], deciders: dict[str, Decider]) -> Iterator[tuple[str, Figure]]:
    tasks = sorted({r.task for r in results if r.arm != "transfer"})
    for task in tasks:
        yield f"curve_{task}", curve_figure(results, task, deciders[task])
    for level in sorted({level_key(r) for r in results if r.arm == "transfer"}):
        yield f"transfer_{_percent(level)}", transfer_figure(results, deciders, level)
    if (level := _overlap_level(results)) is not None and (figure := overlap_figure(results, level)) is not None:
        yield f"overlap_{_percent(level)}", figure
    for task in tasks:
        if (figure := layers_figure(results, task)) is not None:
            yield f"layers_{task}", figure
    model = results[0].model
    try:
        heads = attention_heads(model)
    except TicketlabError as error:
        log.warning("no attention-head figures: %s", error)
        return
    if heads is None:
        return
    for task in tasks:
        if (figure := heads_figure(results, task, heads)) is not None:
            yield f"heads_{task}", figure


def _cost_figures(results: list[Result], deciders: dict[str, Decider]) -> Iterator[tuple[str, Figure]]:
    costs = unit_costs(results)
    for task in sorted({r.task for r in results}):
        if (figure := cost_figure(results, costs, task, deciders[task])) is not None:
            yield f"cost_{task}", figure


def _earlybert_figures(results: list[Result]) -> Iterator[tuple[str, Figure]]:
    groups: dict[str, list[Group]] = defaultdict(list)
    for group in earlybert_groups(results):
        if EARLYBERT in group.arms:
            groups[group.task].append(group)
    for task, found in groups.items():
        yield f"earlybert_distance_{task}", earlybert_distance_figure(found)
        yield f"earlybert_heads_{task}", earlybert_heads_figure(found)


def curve_figure(results: list[Result], task: str, decider: Decider) -> Figure:
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
    for (arm, source), style in zip(series, _styles([arm for arm, _ in series])):
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
    figure.suptitle(f"{task}: {metric} vs sparsity  ·  {_model_name(results)}", fontweight="bold")
    ax.set_title("lines: mean over seeds; bands: min to max", fontsize=9, color="0.35")
    return figure


def cost_figure(results: list[Result], costs: pd.DataFrame, task: str, decider: Decider) -> Figure | None:
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
    for (arm, source, settings), style in zip(series, _styles([arm for arm, *_ in series])):
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
    figure.suptitle(f"{task}: {metric} vs cost  ·  {_model_name(results)}", fontweight="bold")
    ax.set_title("means over seeds; each point: an arm at one sparsity (IMP's first: dense)", fontsize=9, color="0.35")
    return figure


def transfer_matrix(
    results: list[Result], deciders: dict[str, Decider], level: float, against: str
) -> tuple[Grid, Grid]:
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


def transfer_figure(results: list[Result], deciders: dict[str, Decider], level: float) -> Figure:
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
        image = _heatmap(ax, 100 * gain.values, delta.rows, columns, DIVERGING, norm, text)
        for k in range(size):
            ax.add_patch(Rectangle((k - 0.5, k - 0.5), 1, 1, fill=False, ec="0.15", lw=1.5))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("target task · its deciding metric")
    axes[0].set_ylabel("ticket found on")
    bar = figure.colorbar(image, ax=axes, shrink=0.85)
    bar.set_label("change relative to the reference, %\n(blue: better, red: worse)")
    figure.suptitle(
        f"Transfer of IMP tickets at {_percent(level)}% sparsity  ·  {_model_name(results)}", fontweight="bold"
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
    image = _heatmap(ax, grid.values, grid.rows, grid.columns, SEQUENTIAL, Normalize(0, 1), text)
    figure.colorbar(image, ax=ax, label="IoU of the kept weights")
    figure.suptitle(
        f"Overlap of IMP tickets at {_percent(level)}% sparsity  ·  {_model_name(results)}", fontweight="bold"
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
    image = _heatmap(ax, values, grid.rows, columns, SEQUENTIAL_R, norm, text)
    ax.axhline(len(grid.rows) - 1.5, color="white", lw=3)
    ax.axvline(len(grid.columns) - 1.5, color="white", lw=3)
    ax.set_ylabel("block (stage.block)" if "." in grid.rows[0] else "layer")
    figure.colorbar(image, ax=ax, label="sparsity (share removed)", format=PercentFormatter(1.0))
    figure.suptitle(f"{task}: where the IMP ticket prunes  ·  {_model_name(results)}", fontweight="bold")
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
    image = _heatmap(ax, values, rows, columns, SEQUENTIAL, norm, text)
    ax.set_xlabel("attention head")
    ax.set_ylabel("layer")
    figure.colorbar(image, ax=ax, label="fraction of weights kept", format=PercentFormatter(1.0))
    figure.suptitle(f"{task}: weights kept per attention head  ·  {_model_name(results)}", fontweight="bold")
    ax.set_title(_ticket_caption(found) + "; Q, K, V rows and attention-output columns", fontsize=9, color="0.35")
    return figure


def earlybert_distance_figure(groups: list[Group]) -> Figure:
    """EarlyBERT's search on one task, a panel per settings: the window distance of each draw against the training
    step (faint: the distance to the previous draw), a line per seed, the threshold, and the draw step marked."""
    common, own = split_settings([group.settings for group in groups])
    figure = Figure(figsize=(8, 0.8 + 3.2 * len(groups)), layout="constrained")
    axes = figure.subplots(len(groups), 1, squeeze=False, sharex=True)[:, 0]
    colors = colormaps["tab10"].colors
    last = max(d["step"] for group in groups for r in group.arms[EARLYBERT] for d in r.record["search"]["draws"])
    for ax, group in zip(axes, groups):
        for k, r in enumerate(group.arms[EARLYBERT]):
            search, color = r.record["search"], colors[k % len(colors)]
            steps = [d["step"] for d in search["draws"]]
            window, distance = (
                [np.nan if d[key] is None else d[key] for d in search["draws"]] for key in ("window", "distance")
            )
            drawn = "early bird" if search["early_bird"] else "no early bird, drawn"
            ax.plot(steps, distance, color=color, lw=1, ls="--", alpha=0.45)
            ax.plot(
                steps,
                window,
                color=color,
                lw=1.8,
                marker="o",
                ms=3.5,
                label=f"seed {r.seed}: {drawn} at step {search['draw_step']}",
            )
            at = steps.index(search["draw_step"]) if search["draw_step"] in steps else -1
            ax.plot(
                search["draw_step"],
                window[at],
                ls="none",
                marker="*",
                ms=15,
                mec="black",
                mew=0.8,
                mfc=color if search["early_bird"] else "white",
                zorder=4,
            )
        settings = group.arms[EARLYBERT][0].record["search"]
        ax.axhline(settings["threshold"], color="0.3", ls=":", lw=1.3, label=f"threshold {settings['threshold']:g}")
        ax.plot([], [], color="0.5", lw=1, ls="--", alpha=0.6, label="distance to the previous draw")
        ax.plot(
            [],
            [],
            ls="none",
            marker="*",
            ms=11,
            mfc="0.6",
            mec="black",
            mew=0.8,
            label="ticket drawn\n(hollow: at the last step)",
        )
        ax.set_xlim(0, 1.04 * last)
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("mask distance (normalized Hamming)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8.5)
        ax.set_title(
            f"{own[group.settings] + ':  ' if own[group.settings] else ''}"
            f"lines: the largest distance to the previous {settings['window']} draws",
            fontsize=9,
            color="0.35",
        )
    axes[-1].set_xlabel("training step")
    figure.suptitle(
        f"{groups[0].task}: EarlyBERT's search for an early-bird ticket  ·  {Path(groups[0].model).name}\n"
        f"{_settings_caption(common)}",
        fontweight="bold",
    )
    return figure


def earlybert_heads_figure(groups: list[Group]) -> Figure:
    """What EarlyBERT's tickets on one task keep, a row per settings: the share of seeds keeping each attention head,
    and the share of FFN neurons kept per layer (EarlyBERT and the random structured ticket)."""
    common, own = split_settings([group.settings for group in groups])
    grids = [heads_kept_grid(group.arms[EARLYBERT]) for group in groups]
    layers, heads = grids[0].values.shape
    figure = Figure(
        figsize=(max(7.5, 4.6 + 0.5 * heads), 1.4 + len(groups) * (0.9 + 0.36 * layers)), layout="constrained"
    )
    axes = figure.subplots(len(groups), 2, squeeze=False, width_ratios=[max(3.0, 0.5 * heads), 2.6])
    styles = {EARLYBERT: dict(color="black"), RANDOM: dict(color=colormaps["tab10"].colors[CONTROL_COLORS["random"]])}
    for (heat, bars), group, grid in zip(axes, groups, grids):
        text = np.vectorize(lambda v: "" if np.isnan(v) else f"{v:.0%}")(grid.values)
        image = _heatmap(heat, grid.values, grid.rows, grid.columns, SEQUENTIAL, Normalize(0, 1), text)
        heat.set_xlabel("attention head")
        heat.set_ylabel("layer")
        seeds = len(group.arms[EARLYBERT])
        heat.set_title(
            f"{own[group.settings] + ':  ' if own[group.settings] else ''}"
            f"heads kept, over {seeds} seed{'s' * (seeds > 1)}",
            fontsize=9,
            color="0.35",
        )
        arms = [arm for arm in (EARLYBERT, RANDOM) if arm in group.arms]
        for k, arm in enumerate(arms):
            rows = np.arange(layers) + (k - (len(arms) - 1) / 2) * 0.4
            bars.barh(rows, ffn_kept_by_layer(group.arms[arm]), height=0.38, label=arm_label(arm), **styles[arm])
        bars.set_yticks(range(layers), grid.rows)
        bars.set_ylim(layers - 0.5, -0.5)
        bars.set_xlim(0, 1)
        bars.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        bars.set_xlabel("FFN neurons kept per layer, mean over seeds")
        bars.grid(axis="x", alpha=0.3)
        bars.legend(
            loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, frameon=False, fontsize=8.5, handlelength=1.2
        )
    figure.colorbar(
        image,
        ax=axes[-1, 0],
        location="bottom",
        label="share of seeds keeping the head",
        format=PercentFormatter(1.0),
        shrink=0.8,
        aspect=30,
    )
    figure.suptitle(
        f"{groups[0].task}: what EarlyBERT's structured tickets keep  ·  {Path(groups[0].model).name}\n"
        f"{_settings_caption(common)}",
        fontweight="bold",
    )
    return figure


def _settings_caption(common: str) -> str:
    return f"settings: {common}" if common else "settings: see each panel"


def diverging_norm(*values: np.ndarray) -> Normalize:
    """Colour limits symmetric about 0 over all `values`: a loss and a gain of one size get opposite colours of one
    strength."""
    finite = np.abs(np.concatenate([np.ravel(v) for v in values]))
    finite = finite[np.isfinite(finite)]
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    return Normalize(-limit, limit)


def _heatmap(ax: Axes, values: np.ndarray, rows, columns, cmap: Colormap, norm: Normalize, text: np.ndarray):
    """An annotated heatmap; NaN cells take the colormap's `bad` colour."""
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), rows)
    ax.tick_params(length=0)
    ax.spines[:].set_visible(False)
    small = len(columns) > 8
    for (i, j), label in np.ndenumerate(text):
        value = values[i, j]
        ink = "0.45" if np.isnan(value) else _ink(cmap(norm(value)))
        ax.text(j, i, label, ha="center", va="center", color=ink, fontsize=7 if small else 9)
    return image


def _ink(rgba: tuple[float, ...]) -> str:
    """Black or white text, whichever reads on this colour."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


def _styles(arms: list[str]) -> list[dict]:
    spare = iter(SPARE_COLORS)
    tab10 = colormaps["tab10"].colors
    styles = []
    for k, arm in enumerate(arms):
        name, marks = split_arm(arm)  # another granularity, or distilled: its arm's colour, dashed, a marker of its own
        line = dict(ls="--", marker=MARKERS[k % len(MARKERS)]) if marks else {}
        if name == "imp":
            styles.append({**dict(color="black", marker="o", lw=2.2, ms=5, zorder=3), **line})
        else:
            color = tab10[CONTROL_COLORS[name] if name in CONTROL_COLORS else next(spare, 7)]
            styles.append({**dict(color=color, marker=MARKERS[k % len(MARKERS)], lw=1.4, ms=4.5), **line})
    return styles


def _tickets_at(results: list[Result], level: float) -> dict[str, list[Result]]:
    """IMP tickets at `level`, by task."""
    found: dict[str, list[Result]] = defaultdict(list)
    for r in sorted(results, key=lambda r: (r.task, r.seed)):
        if r.arm == "imp" and level_key(r) == round(level, 6):
            found[r.task].append(r)
    return dict(found)


def _highest_tickets(results: list[Result], task: str) -> list[Result]:
    """The task's IMP tickets at its highest level above 0 (one per seed)."""
    levels = [level_key(r) for r in results if r.task == task and r.arm == "imp" and level_key(r) > 0]
    return _tickets_at(results, max(levels)).get(task, []) if levels else []


def _overlap_level(results: list[Result]) -> float | None:
    """The highest level that the most tasks have IMP tickets at."""
    tasks: dict[float, set[str]] = defaultdict(set)
    for r in results:
        if r.arm == "imp" and level_key(r) > 0:
            tasks[level_key(r)].add(r.task)
    return max(tasks, key=lambda level: (len(tasks[level]), level)) if tasks else None


def _ticket_caption(found: list[Result]) -> str:
    seeds = len({r.seed for r in found})
    return f"IMP ticket at {_percent(level_key(found[0]))}% sparsity, mean over {seeds} seed{'s' * (seeds > 1)}"


def _percent(level: float) -> str:
    return f"{100 * level:.4g}"


def _model_name(results: list[Result]) -> str:
    return Path(results[0].model).name


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)
