"""EarlyBERT in a report (Chen et al., ACL 2021): structured early-bird tickets, whole attention heads and FFN neurons
removed, against the dense model and a random structured ticket with the same counts per layer.

A lottery run holds them as branches (ticketlab.store): earlybert-<hash>/round_00 and earlybert-random-<hash>/round_00,
<hash> naming the EarlyBERT settings. Their records carry `structure` (what is kept), `train_time_s` and
`dense_train_time_s`; EarlyBERT's also `search` (its settings, the draws, the draw step). Each round folder holds
structure.safetensors: `heads.{i}` and `ffn.{i}`, True where layer i keeps the head or neuron. A seed's dense model is
round 0 of the same run.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..arms import DENSE, DISTILLED, EARLYBERT, EARLYBERT_RANDOM, GRANULARITY_MARK, STRUCTURED_ARMS, arm_label
from ..errors import TicketlabError
from ..masks import load_mask
from ..store import RunStore
from ..store.records import EarlyBertSearch
from .anatomy import Grid
from .results import Result, by_seed
from .tables import STATS, Deciders, metric_columns
from .verdict import summarize
from .views import column_name, stats_cell

ARMS = (DENSE, EARLYBERT, EARLYBERT_RANDOM)  # display order
KEPT = [
    "heads_kept",
    "heads_total",
    "heads_per_layer",
    "layers",
    "ffn_kept",
    "params_kept",
    "sparsity",
    "draw_step",
    "early_bird",
    "search_time_s",
    "train_time_s",
    "time_ratio",
]
COLUMNS = ["task", "model", "settings", "arm", "split", "metric", "decides", *STATS, "minus_dense", *KEPT]
CELLS_TEXT = """\
Structured tickets (EarlyBERT, Chen et al. 2021): whole attention heads and FFN neurons removed, found early in
training through learned slimming coefficients, then the smaller model trained. They are not in the tables above:
their sparsity is no level of the IMP schedule.
- dense: round 0 of the same runs; random structured ticket: random heads and neurons, the same counts per layer.
- Δ dense: the deciding metric minus the same seed's dense model, mean over seeds.
- heads, FFN neurons and parameters kept: against the dense model; sparsity: of the prunable weights.
- draw step: when the ticket was drawn, mean over seeds; early bird: the seeds whose mask distance fell below the
  threshold (the others were drawn at the last search step).
- search + train: seconds, mean over seeds; time ratio: (search + training time) / the same seed's dense training time,
  mean over seeds."""


@dataclass(frozen=True)
class Group:
    """The results of one task, base model and EarlyBERT settings: per arm of ARMS, one result per seed."""

    task: str
    model: str
    settings: str  # the settings in `search`, e.g. "heads 0.33 · ffn 0.4 · l1 0.0001"
    arms: dict[str, list[Result]]


def earlybert_groups(results: Iterable[Result]) -> list[Group]:
    """The structured tickets grouped by task, model and settings, with the dense round 0 of their runs."""
    results = list(results)
    structured = sorted((r for r in results if r.arm in STRUCTURED_ARMS), key=lambda r: (r.seed, str(r.run)))
    settings = {
        (r.run, branch_settings(r)): settings_label(r.record.search) + _distilled(r.run)
        for r in structured
        if r.arm == EARLYBERT
    }
    dense = {r.run: r for r in results if r.branch is None and r.round == 0}
    found: dict[tuple[str, str, str], dict[str, list[Result]]] = defaultdict(lambda: defaultdict(list))
    for r in structured:
        reference = dense.get(r.run) or _same_training(r.run, dense)
        if reference is None:
            raise TicketlabError(f"{r.run} has EarlyBERT branches but no complete round 0 (its dense model)")
        arms = found[r.task, r.model, settings.get((r.run, branch_settings(r)), f"settings {branch_settings(r)}")]
        _add(arms[r.arm], r)
        if not any(other is reference for other in arms[DENSE]):
            _add(arms[DENSE], reference)
    return [Group(*key, {arm: arms[arm] for arm in ARMS if arm in arms}) for key, arms in sorted(found.items())]


def _same_training(run: Path, dense: dict[Path, Result]) -> Result | None:
    """The dense round 0 of another run trained as `run`'s is (the same model, data, task and recipe): a distilled
    run's, which the report reads from the plain run beside it."""
    training = _training(run)
    if training is None:
        return None
    return next((result for other, result in dense.items() if _training(other) == training), None)


def _training(run: Path) -> tuple | None:
    """What decides a run's dense round 0: its model, data, task and recipe (None: no settings to read)."""
    if not (run / "config.json").is_file():
        return None
    config = RunStore(run).config()
    return config.model, config.model_hash, config.task, config.data, config.train


def _distilled(run: Path) -> str:
    """ " · distilled" for a run whose tickets learn from its dense round too (ticketlab.distillation), else ""."""
    distilled = (run / "config.json").is_file() and RunStore(run).config().distill is not None
    return f"{GRANULARITY_MARK}{DISTILLED}" if distilled else ""


def ticket_arm(result: Result) -> str:
    """A result's arm where tickets of every kind stand side by side (the frontier): a structured ticket's with its
    run's distillation marked, as unstructured arms carry it ("earlybert · distilled"); the EarlyBERT tables keep the
    plain arm and mark distillation in their settings instead."""
    return result.arm + _distilled(result.run) if result.arm in STRUCTURED_ARMS else result.arm


def settings_label(search: EarlyBertSearch) -> str:
    """The settings an EarlyBERT search records, as "heads 0.33 · ffn 0.4 · ..."."""
    return " · ".join(
        f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}" for key, value in search.settings.items()
    )


def split_settings(labels: Sequence[str]) -> tuple[str, dict[str, str]]:
    """The settings every label shares, and each label's own (what differs; "" with a single label)."""
    parts = {label: label.split(" · ") for label in labels}
    common = [p for p in parts[labels[0]] if all(p in other for other in parts.values())]
    return " · ".join(common), {label: " · ".join(p for p in own if p not in common) for label, own in parts.items()}


def seed_table(group: Group) -> pd.DataFrame:
    """One row per arm and seed: what the ticket keeps, its search, its times against the same seed's dense model."""
    structures = {r.seed: r.record.structure for arm in (EARLYBERT, EARLYBERT_RANDOM) for r in group.arms.get(arm, [])}
    dense_s = {r.seed: _dense_train_time(r, group) for r in group.arms[DENSE]}
    return pd.DataFrame(
        [_seed_row(r, structures[r.seed], dense_s[r.seed]) for arm in group.arms for r in group.arms[arm]],
        columns=["arm", "seed", *KEPT],
    )


def earlybert_table(results: Iterable[Result], deciders: Deciders) -> pd.DataFrame:
    """Per task, model, settings, arm (dense, EarlyBERT, random structured ticket) and metric: n, mean, std, min, max
    over seeds; minus_dense, the mean over seeds of the difference to the same seed's dense model; and the means over
    seeds of what the tickets keep, their draw step, their times (early_bird: the number of seeds that found one).
    Empty without structured tickets."""
    rows = []
    for group in earlybert_groups(results):
        seeds = seed_table(group)
        pairs = metric_columns(group.task, deciders)
        dense = {pair: by_seed(group.arms[DENSE], pair) for pair in pairs}
        for arm, found in group.arms.items():
            kept = _over_seeds(seeds[seeds.arm == arm])
            for split, metric in pairs:
                if not (values := by_seed(found, (split, metric))):
                    continue
                differences = [
                    value - dense[split, metric][seed] for seed, value in values.items() if seed in dense[split, metric]
                ]
                rows.append(
                    {
                        "task": group.task,
                        "model": group.model,
                        "settings": group.settings,
                        "arm": arm,
                        "split": split,
                        "metric": metric,
                        "decides": deciders[group.task] == (split, metric),
                        **summarize(values.values())._asdict(),
                        "minus_dense": np.mean(differences) if differences else math.nan,
                        **kept,
                    }
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def earlybert_views(table: pd.DataFrame, deciders: Deciders) -> dict[tuple[str, str], pd.DataFrame]:
    """The EarlyBERT table for display, one frame of strings per task and base model: a row per settings and arm,
    a column per metric (* decides); a settings column (what differs) where a task has several."""
    views = {}
    for (task, model), rows in table.groupby(["task", "model"], sort=False):
        columns = metric_columns(task, deciders)
        _, settings = split_settings(rows.settings.unique())
        cells = []
        for (label, arm), group in rows.groupby(["settings", "arm"], sort=False):
            stats = {(r.split, r.metric): r for r in group.itertuples()}
            first, decider = group.iloc[0], stats.get(columns[0])
            cells.append(
                {
                    **({"settings": settings[label]} if len(settings) > 1 else {}),
                    "subnetwork": arm_label(arm),
                    "seeds": str(first.n),
                    **{column_name(pair, pair == columns[0]): stats_cell(stats.get(pair)) for pair in columns},
                    "Δ dense*": "—" if arm == DENSE or decider is None else f"{decider.minus_dense:+.4f}",
                    "heads kept": _heads_cell(first),
                    "FFN kept": f"{first.ffn_kept:.1%}",
                    "params kept": f"{first.params_kept:.1%}",
                    "sparsity": f"{first.sparsity:.1%}",
                    "draw step": _draw_cell(first),
                    "search + train": _times_cell(first),
                    "time ratio": "—" if pd.isna(first.time_ratio) else f"{first.time_ratio:.2f}×",
                }
            )
        views[task, model] = pd.DataFrame(cells)
    return views


def structure_of(result: Result) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The heads and the FFN neurons a structured ticket keeps in each layer, as bool arrays (structure.safetensors)."""
    kept, _ = load_mask(RunStore(result.mask.parent.parent).structure_path(result.round))
    layers = sorted(int(name.partition(".")[2]) for name in kept if name.startswith("heads."))
    return [kept[f"heads.{i}"].numpy() for i in layers], [kept[f"ffn.{i}"].numpy() for i in layers]


def heads_kept_grid(found: Sequence[Result]) -> Grid:
    """Per layer (rows) and attention head (columns): the fraction of the tickets (seeds) that keep the head."""
    heads = [structure_of(r)[0] for r in found]
    width = max(len(layer) for layer in heads[0])
    values = np.full((len(heads[0]), width), np.nan)
    for i in range(len(heads[0])):
        values[i, : len(heads[0][i])] = np.mean([ticket[i] for ticket in heads], axis=0)
    return Grid(tuple(map(str, range(len(values)))), tuple(map(str, range(width))), values)


def ffn_kept_by_layer(found: Sequence[Result]) -> np.ndarray:
    """Per layer: the fraction of its FFN neurons a ticket keeps, mean over the tickets (seeds)."""
    return np.mean([[layer.mean() for layer in structure_of(r)[1]] for r in found], axis=0)


def branch_settings(result: Result) -> str:
    """The settings' hash that ends a structured ticket's branch name (earlybert-<hash>, earlybert-random-<hash>)."""
    return result.branch.rpartition("-")[2]


def _add(found: list[Result], result: Result) -> None:
    """Append a result of a seed `found` lacks; TicketlabError naming both places when it has one."""
    if clash := next((other for other in found if other.seed == result.seed), None):
        raise TicketlabError(
            f"{result.task} {result.arm} with seed {result.seed} is in two places ({clash.mask.parent} and "
            f"{result.mask.parent}): report them separately"
        )
    found.append(result)


def _dense_train_time(dense: Result, group: Group) -> float:
    """The seed's dense training time: its round 0's train_time_s, else what its structured tickets stored."""
    tickets = [r for arm in (EARLYBERT, EARLYBERT_RANDOM) for r in group.arms.get(arm, []) if r.seed == dense.seed]
    times = [dense.record.trained.train_time_s, *(r.record.dense_train_time_s for r in tickets)]
    return next((seconds for seconds in times if seconds is not None), math.nan)


def _seed_row(result: Result, structure: Mapping[str, Any], dense_s: float) -> dict[str, Any]:
    """What one ticket keeps (the dense model: everything), its search and its times."""
    is_dense = result.arm not in STRUCTURED_ARMS
    heads = structure["heads_total"] if is_dense else [len(kept) for kept in structure["heads"]]
    search = result.record.search
    search_s = search.time_s if search else math.nan
    train_s = dense_s if is_dense else result.record.trained.train_time_s
    train_s = math.nan if train_s is None else train_s
    return {
        "arm": DENSE if is_dense else result.arm,
        "seed": result.seed,
        "heads_kept": sum(heads),
        "heads_total": sum(structure["heads_total"]),
        "heads_per_layer": heads[0] if len(set(heads)) == 1 else math.nan,
        "layers": len(heads),
        "ffn_kept": sum(structure["ffn_total" if is_dense else "ffn_kept"]) / sum(structure["ffn_total"]),
        "params_kept": 1.0 if is_dense else structure["params"] / structure["dense_params"],
        "sparsity": result.sparsity,
        "draw_step": search.draw_step if search else math.nan,
        "early_bird": search.early_bird if search else math.nan,
        "search_time_s": search_s,
        "train_time_s": train_s,
        "time_ratio": (np.nan_to_num(search_s) + train_s) / dense_s,
    }


def _over_seeds(seeds: pd.DataFrame) -> dict[str, Any]:
    """The columns of KEPT over seeds: means, early_bird a count, heads_per_layer where every seed agrees."""
    means = {column: seeds[column].astype(float).mean() for column in KEPT}
    per_layer = seeds.heads_per_layer.unique()
    return {
        **means,
        "heads_total": seeds.heads_total.iloc[0],
        "layers": seeds.layers.iloc[0],
        "heads_per_layer": per_layer[0] if len(per_layer) == 1 else math.nan,
        "early_bird": int(seeds.early_bird.eq(True).sum()) if seeds.early_bird.notna().any() else math.nan,
    }


def _heads_cell(row: pd.Series) -> str:
    if pd.notna(row.heads_per_layer):
        return f"{row.heads_per_layer:g}/{row.heads_total / row.layers:g} per layer"
    return f"{row.heads_kept:.4g}/{row.heads_total:g}"


def _draw_cell(row: pd.Series) -> str:
    if pd.isna(row.draw_step):
        return "—"
    return f"{row.draw_step:.4g} (early bird {row.early_bird:g}/{row.n})"


def _times_cell(row: pd.Series) -> str:
    if pd.isna(row.train_time_s):
        return "—"
    search = "" if pd.isna(row.search_time_s) else f"{row.search_time_s:.1f} + "
    return f"{search}{row.train_time_s:.1f} s"
