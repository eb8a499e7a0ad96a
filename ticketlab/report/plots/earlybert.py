"""EarlyBERT's figures: its search for an early-bird ticket, and what its structured tickets keep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from ...arms import EARLYBERT, EARLYBERT_RANDOM, RANDOM, arm_label
from ..earlybert import Group, ffn_kept_by_layer, heads_kept_grid, split_settings
from .style import CONTROL_COLORS, SEQUENTIAL, heatmap


def earlybert_distance_figure(groups: list[Group]) -> Figure:
    """EarlyBERT's search on one task, a panel per settings: the window distance of each draw against the training
    step (faint: the distance to the previous draw), a line per seed, the threshold, and the draw step marked."""
    common, own = split_settings([group.settings for group in groups])
    figure = Figure(figsize=(8, 0.8 + 3.2 * len(groups)), layout="constrained")
    axes = figure.subplots(len(groups), 1, squeeze=False, sharex=True)[:, 0]
    colors = colormaps["tab10"].colors
    last = max(d["step"] for group in groups for r in group.arms[EARLYBERT] for d in r.record.search.draws)
    for ax, group in zip(axes, groups):
        for k, r in enumerate(group.arms[EARLYBERT]):
            search, color = r.record.search, colors[k % len(colors)]
            steps = [d["step"] for d in search.draws]
            window, distance = (
                [np.nan if d[key] is None else d[key] for d in search.draws] for key in ("window", "distance")
            )
            drawn = "early bird" if search.early_bird else "no early bird, drawn"
            ax.plot(steps, distance, color=color, lw=1, ls="--", alpha=0.45)
            ax.plot(
                steps,
                window,
                color=color,
                lw=1.8,
                marker="o",
                ms=3.5,
                label=f"seed {r.seed}: {drawn} at step {search.draw_step}",
            )
            at = steps.index(search.draw_step) if search.draw_step in steps else -1
            ax.plot(
                search.draw_step,
                window[at],
                ls="none",
                marker="*",
                ms=15,
                mec="black",
                mew=0.8,
                mfc=color if search.early_bird else "white",
                zorder=4,
            )
        settings = group.arms[EARLYBERT][0].record.search.settings
        threshold = settings["threshold"]
        ax.axhline(threshold, color="0.3", ls=":", lw=1.3, label=f"threshold {threshold:g}")
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
    random_color = colormaps["tab10"].colors[CONTROL_COLORS[RANDOM]]
    styles = {EARLYBERT: dict(color="black"), EARLYBERT_RANDOM: dict(color=random_color)}
    for (heat, bars), group, grid in zip(axes, groups, grids):
        text = np.vectorize(lambda v: "" if np.isnan(v) else f"{v:.0%}")(grid.values)
        image = heatmap(heat, grid.values, grid.rows, grid.columns, SEQUENTIAL, Normalize(0, 1), text)
        heat.set_xlabel("attention head")
        heat.set_ylabel("layer")
        seeds = len(group.arms[EARLYBERT])
        heat.set_title(
            f"{own[group.settings] + ':  ' if own[group.settings] else ''}"
            f"heads kept, over {seeds} seed{'s' * (seeds > 1)}",
            fontsize=9,
            color="0.35",
        )
        arms = [arm for arm in (EARLYBERT, EARLYBERT_RANDOM) if arm in group.arms]
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
