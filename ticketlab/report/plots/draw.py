"""Every figure a report's results allow, drawn and saved into the report's folder."""

from __future__ import annotations

import logging
from collections import defaultdict
from itertools import chain
from pathlib import Path
from typing import Iterator

from matplotlib.figure import Figure

from ...arms import EARLYBERT, TRANSFER
from ...errors import TicketlabError
from ..anatomy import attention_heads
from ..cost import unit_costs
from ..earlybert import Group, earlybert_groups
from ..results import Result, level_key, unstructured
from ..tables import Deciders
from .cost import cost_figure
from .curve import curve_figure
from .earlybert import earlybert_distance_figure, earlybert_heads_figure
from .style import percent, save, slug
from .tickets import heads_figure, layers_figure, overlap_figure, overlap_level
from .transfer import transfer_figure

log = logging.getLogger(__name__)


def draw_all(results: list[Result], deciders: Deciders, out: Path) -> list[Path]:
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
        suffix = f"_{slug(Path(model).name)}" if len(models) > 1 else ""
        found = [r for r in results if r.model == model]
        figures = chain(
            _figures(unstructured(found), deciders), _cost_figures(found, deciders), _earlybert_figures(found)
        )
        for stem, figure in figures:
            written.append(save(figure, out / f"{slug(stem)}{suffix}.png"))
    return written


def _figures(results: list[Result], deciders: Deciders) -> Iterator[tuple[str, Figure]]:
    tasks = sorted({r.task for r in results if r.arm != TRANSFER})
    for task in tasks:
        yield f"curve_{task}", curve_figure(results, task, deciders[task])
    for level in sorted({level_key(r) for r in results if r.arm == TRANSFER}):
        yield f"transfer_{percent(level)}", transfer_figure(results, deciders, level)
    if (level := overlap_level(results)) is not None and (figure := overlap_figure(results, level)) is not None:
        yield f"overlap_{percent(level)}", figure
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


def _cost_figures(results: list[Result], deciders: Deciders) -> Iterator[tuple[str, Figure]]:
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
