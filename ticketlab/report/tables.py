"""The tables of a report, from stored results: every metric over seeds with the matching verdicts, the highest
matching sparsity per task, Table 2 (dense, IMP and every control at that sparsity) and the transfer matrix.

`deciders` maps each task to the (split, metric) that decides matching (`TASKS.get(task).decider(spec)`).
Results group by nominal sparsity `level`; a task's dense baseline is IMP's round 0 (level 0) of each seed.
Structured tickets (STRUCTURED_ARMS) have no level of the schedule: they stay out of these tables (see earlybert.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd

from ..arms import DENSE, IMP, RANDOM, TRANSFER, arm_label, arm_order
from ..errors import TicketlabError
from ..tasks import TASKS
from .results import Result, by_seed, is_dense, level_key, unstructured
from .verdict import LOWER_IS_BETTER, highest_matching, is_matching_paper, is_matching_strict, summarize

Deciders = dict[str, tuple[str, str]]

KEYS = ["task", "arm", "source", "level", "split", "metric"]
STATS = ["n", "mean", "std", "min", "max"]
FLAGS = ["matching_paper", "matching_strict"]
DEFINITIONS = ("paper", "strict")


def dense_rows(frame: pd.DataFrame) -> pd.Series:
    """Which rows of a table are dense models (IMP at level 0): ticketlab.report.results.is_dense for tables."""
    return (frame.arm == IMP) & (frame.level == 0)


def metric_columns(task: str, deciders: Deciders) -> list[tuple[str, str]]:
    """Every (split, metric) of a task, the deciding one first."""
    spec = TASKS.get(task)
    pairs = [(split, metric) for split in spec.eval_splits for metric in spec.metrics]
    return [deciders[task]] + [pair for pair in pairs if pair != deciders[task]]


@dataclass(frozen=True)
class Tables:
    long: pd.DataFrame  # one row per task, arm, source, level, split, metric: stats over seeds, flags
    matching: pd.DataFrame  # one row per task: the deciding metric, the dense baseline, highest matching levels
    table2: pd.DataFrame  # rows of `long` at each task's dense and highest matching levels
    transfer: pd.DataFrame  # source x target at each transfer level (diagonal: the target's own IMP ticket)
    nearly_empty: pd.DataFrame  # one row per subnetwork and matrix it keeps below LOW_DENSITY of (see masks.py)
    gaps: pd.DataFrame  # IMP minus every other arm at the same task and level, paired by seed


def make_tables(results: Iterable[Result], deciders: Deciders) -> Tables:
    """Every table of the report; TicketlabError when a task or seed lacks its dense round."""
    results = list(results)
    values = _values(unstructured(results))  # one row per result, split and metric: what long and gaps summarize
    long = long_table(values, deciders)
    matching = matching_table(long, deciders)
    return Tables(
        long,
        matching,
        table2(long, matching),
        _with_flags(transfer_matrix(results, deciders), long),
        nearly_empty_table(results),
        gaps_table(values, deciders),
    )


def nearly_empty_table(results: Iterable[Result]) -> pd.DataFrame:
    """The matrices each subnetwork kept less than LOW_DENSITY of, as its training recorded them."""
    rows = [
        {
            "task": r.task,
            "arm": arm_label(r.arm, r.source),
            "seed": r.seed,
            "sparsity": r.level,
            "matrix": low["matrix"],
            "kept": low["kept"],
        }
        for r in results
        for low in r.record.nearly_empty or []
    ]
    return pd.DataFrame(rows, columns=["task", "arm", "seed", "sparsity", "matrix", "kept"])


def gaps_table(values: pd.DataFrame, deciders: Deciders) -> pd.DataFrame:
    """The deciding metric of IMP minus that of every other arm at the same task and level, seed by seed (better
    positive: flipped for lower-is-better metrics), and n, mean, std, min, max of those differences; `values` as
    `_values` makes them."""
    columns = ["task", "level", "arm", "source", "split", "metric", *STATS]
    rows = []
    for task, (split, metric) in deciders.items():
        deciding = values[
            (values.task == task) & (values.split == split) & (values.metric == metric) & (values.level > 0)
        ]
        sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        imp = deciding[deciding.arm == IMP].set_index(["level", "seed"]).value
        for (arm, source, level), group in deciding[deciding.arm != IMP].groupby(
            ["arm", "source", "level"], sort=False
        ):
            paired = [
                sign * (imp[level, seed] - value)
                for seed, value in zip(group.seed, group.value)
                if (level, seed) in imp.index
            ]
            if paired:
                rows.append(
                    {
                        "task": task,
                        "level": level,
                        "arm": arm,
                        "source": source,
                        "split": split,
                        "metric": metric,
                        **summarize(paired)._asdict(),
                    }
                )
    rows.sort(key=lambda row: (row["task"], row["level"], arm_order(row["arm"], row["source"])))
    return pd.DataFrame(rows, columns=columns)


def long_table(values: pd.DataFrame, deciders: Deciders) -> pd.DataFrame:
    """n, mean, std, min, max over seeds of every metric of the unstructured arms (`values` as `_values` makes them);
    matching flags on the deciding metric's rows."""
    dense = _dense_baselines(values, deciders)
    rows = []
    for key, group in values.groupby(KEYS, sort=False):
        row = dict(zip(KEYS, key), sparsity=group.sparsity.mean(), **summarize(group.value)._asdict())
        task, split, metric = row["task"], row["split"], row["metric"]
        row["decides"] = deciders[task] == (split, metric)
        if row["decides"]:
            per_seed = dict(zip(group.seed, group.value))
            row["matching_paper"] = is_matching_paper(per_seed, dense[task], metric)
            row["matching_strict"] = is_matching_strict(per_seed, dense[task], metric)
        rows.append(row)
    orders = {task: metric_columns(task, deciders) for task in deciders}

    def order(row: dict) -> tuple:
        pairs, pair = orders[row["task"]], (row["split"], row["metric"])
        rank = pairs.index(pair) if pair in pairs else len(pairs)
        return row["task"], arm_order(row["arm"], row["source"]), row["level"], rank, pair

    frame = pd.DataFrame(sorted(rows, key=order), columns=[*KEYS, "sparsity", *STATS, "decides", *FLAGS])
    return frame.astype({flag: "boolean" for flag in FLAGS})


def matching_table(long: pd.DataFrame, deciders: Deciders) -> pd.DataFrame:
    """Per task: the deciding metric, the dense mean and std, and IMP's highest matching sparsity by each definition."""
    rows = []
    for task, (split, metric) in deciders.items():
        imp = long[(long.task == task) & (long.arm == IMP) & long.decides]
        dense = imp[dense_rows(imp)].iloc[0]
        pruned = imp[imp.level > 0]
        rows.append(
            {
                "task": task,
                "split": split,
                "metric": metric,
                "lower_is_better": metric in LOWER_IS_BETTER,
                "seeds": dense.n,
                "dense_mean": dense["mean"],
                "dense_std": dense["std"],
                **{
                    f"highest_{d}": highest_matching(dict(zip(pruned.level, pruned[f"matching_{d}"])))
                    for d in DEFINITIONS
                },
            }
        )
    return pd.DataFrame(rows)


def table2(long: pd.DataFrame, matching: pd.DataFrame) -> pd.DataFrame:
    """Table 2 of the paper, every metric: per task the dense model, then every arm at the highest matching
    sparsity; `selected_by` names the definition(s) that chose the level (both when they agree)."""
    parts = []
    for m in matching.itertuples():
        task_rows = long[long.task == m.task]
        parts.append(task_rows[dense_rows(task_rows)].assign(arm=DENSE, selected_by="dense"))
        levels: dict[float, list[str]] = {}
        for definition in DEFINITIONS:
            if pd.notna(level := getattr(m, f"highest_{definition}")):
                levels.setdefault(level, []).append(definition)
        for level, definitions in levels.items():
            parts.append(task_rows[task_rows.level == level].assign(selected_by=" & ".join(definitions)))
    frame = pd.concat(parts, ignore_index=True)
    frame.insert(2, "label", [arm_label(a, s) for a, s in zip(frame.arm, frame.source)])
    return frame[["selected_by", *frame.columns.drop("selected_by")]]


def transfer_matrix(results: Iterable[Result], deciders: Deciders) -> pd.DataFrame:
    """Every transfer (source -> target, level) and IMP on each of those tasks at that level (the diagonal): the
    target's deciding metric over seeds, and against two references on the target, the target's dense model and
    random pruning at the same level: the reference's mean (`dense`, `random`) and the difference of means
    (`minus_dense`, `minus_random`), both over the seeds the cell and the reference share. The report's table and
    its plot both read this."""
    columns = ["source", "target", "level", "split", "metric", *STATS, "minus_dense", "dense", "minus_random", "random"]
    results = unstructured(results)
    cells: dict[tuple[str, str, float], list[Result]] = {}
    for r in results:
        if r.arm == TRANSFER:
            cells.setdefault((r.source, r.task, level_key(r)), []).append(r)
    tasks = {task for source, target, _ in cells for task in (source, target)}
    levels = {level for *_, level in cells}
    for r in results:
        if r.arm == IMP and r.task in tasks and level_key(r) in levels:
            cells.setdefault((r.task, r.task, level_key(r)), []).append(r)
    rows = []
    for (source, target, level), found in cells.items():
        decider = deciders[target]
        values = by_seed(found, decider)
        references = {
            "dense": [r for r in results if r.task == target and is_dense(r)],
            "random": [r for r in results if r.task == target and r.arm == RANDOM and level_key(r) == level],
        }
        row = {"source": source, "target": target, "level": level, "split": decider[0], "metric": decider[1]}
        row.update(summarize(list(values.values()))._asdict())
        for name, reference in references.items():
            baseline = by_seed(reference, decider)
            shared = sorted(values.keys() & baseline.keys())
            mean = float(np.mean([baseline[s] for s in shared])) if shared else np.nan
            row[name] = mean
            row[f"minus_{name}"] = float(np.mean([values[s] for s in shared])) - mean if shared else np.nan
        rows.append(row)
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["level", "source", "target"], ignore_index=True)


def _with_flags(transfer: pd.DataFrame, long: pd.DataFrame) -> pd.DataFrame:
    """The transfer matrix with the matching verdicts of each cell (from the long table's deciding rows)."""
    deciding = long[long.decides].assign(source=lambda f: f.source.where(f.arm == TRANSFER, f.task))
    deciding = deciding[deciding.arm.isin([TRANSFER, IMP])].rename(columns={"task": "target"})
    flags = deciding[["source", "target", "level", *FLAGS]]
    return transfer.merge(flags, on=["source", "target", "level"], how="left")


def _values(results: Iterable[Result]) -> pd.DataFrame:
    """One row per result, split and metric. Levels are rounded to 1e-6: 1 - s carries float noise."""
    frame = pd.DataFrame(
        [
            {
                "task": r.task,
                "arm": r.arm,
                "source": r.source or "",
                "level": round(r.level, 6),
                "seed": r.seed,
                "split": split,
                "metric": metric,
                "value": value,
                "sparsity": r.sparsity,
                "run": str(r.run),
                "round_dir": str(r.mask.parent),
            }
            for r in results
            for split, values in r.metrics.items()
            for metric, value in values.items()
        ]
    )
    clash = frame[frame.duplicated([*KEYS, "seed"], keep=False)].sort_values([*KEYS, "seed"])
    if not clash.empty:
        first, second = clash.iloc[0], clash.iloc[1]
        raise TicketlabError(
            f"{first.task} {first.arm} at sparsity {first.level:g} with seed {first.seed} is in two places "
            f"({first.round_dir} and {second.round_dir}): report them separately"
        )
    return frame


def _dense_baselines(values: pd.DataFrame, deciders: Deciders) -> dict[str, dict[int, float]]:
    """task -> seed -> the deciding metric of IMP's round 0; every seed with results of a task must have one."""
    dense: dict[str, dict[int, float]] = {}
    for task, (split, metric) in deciders.items():
        rows = values[dense_rows(values) & (values.task == task) & (values.split == split) & (values.metric == metric)]
        dense[task] = dict(zip(rows.seed, rows.value))
        for seed, run in values[values.task == task].groupby("seed").run.first().items():
            if seed not in dense[task]:
                raise TicketlabError(
                    f"no dense model (IMP round 0) of {task} with seed {seed} among the runs, e.g. for {run}"
                )
    return dense
