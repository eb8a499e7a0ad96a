"""What the report's figures share: an arm's colour and marker in every figure, the colormaps, the annotated heatmap,
captions, file names and how a figure is saved."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from ...arms import IMP, INVERTED, NOISE, ONE_SHOT, RANDOM, RANDOM_PER_MATRIX, REINIT, SHUFFLE, split_arm
from ..results import Result

CONTROL_COLORS = {  # tab10 indices: an arm has the same colour in every figure
    ONE_SHOT: 0,
    RANDOM: 1,
    RANDOM_PER_MATRIX: 8,
    REINIT: 2,
    SHUFFLE: 4,
    NOISE: 6,
    INVERTED: 3,
}
SPARE_COLORS = (9, 5, 7)  # for IMP with rewinding and any other arm
MARKERS = "sD^vPX<>*ph"
DIVERGING = colormaps["RdBu"].with_extremes(bad="0.93")  # red: worse, blue: better
SEQUENTIAL = colormaps["viridis"].with_extremes(bad="white")  # dark: little kept
SEQUENTIAL_R = colormaps["viridis_r"].with_extremes(bad="white")  # dark: much pruned


def save(figure: Figure, path: Path) -> Path:
    """Write `figure` to `path` as the report's PNG files are written."""
    figure.savefig(path, dpi=150, bbox_inches="tight")
    return path


def arm_styles(arms: list[str]) -> list[dict]:
    """Line styles of `arms`, in order: IMP black and bold, each control its colour, the rest spare colours."""
    spare = iter(SPARE_COLORS)
    tab10 = colormaps["tab10"].colors
    styles = []
    for k, arm in enumerate(arms):
        name, marks = split_arm(arm)  # another granularity, or distilled: its arm's colour, dashed, a marker of its own
        line = dict(ls="--", marker=MARKERS[k % len(MARKERS)]) if marks else {}
        if name == IMP:
            styles.append({**dict(color="black", marker="o", lw=2.2, ms=5, zorder=3), **line})
        else:
            color = tab10[CONTROL_COLORS[name] if name in CONTROL_COLORS else next(spare, 7)]
            styles.append({**dict(color=color, marker=MARKERS[k % len(MARKERS)], lw=1.4, ms=4.5), **line})
    return styles


def diverging_norm(*values: np.ndarray) -> Normalize:
    """Colour limits symmetric about 0 over all `values`: a loss and a gain of one size get opposite colours of one
    strength."""
    finite = np.abs(np.concatenate([np.ravel(v) for v in values]))
    finite = finite[np.isfinite(finite)]
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    return Normalize(-limit, limit)


def heatmap(
    ax: Axes, values: np.ndarray, rows, columns, cmap: Colormap, norm: Normalize, text: np.ndarray
) -> AxesImage:
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


def percent(level: float) -> str:
    """A level as the figures write it: 0.6 -> "60"."""
    return f"{100 * level:.4g}"


def model_name(results: list[Result]) -> str:
    """The base model of `results`, as titles name it."""
    return Path(results[0].model).name


def slug(name: str) -> str:
    """`name` fit for a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)
