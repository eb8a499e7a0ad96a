"""The report's tables for display (ticketlab.report.tables makes them): frames of strings, one cell per statistic
over seeds, as the terminal and report.md show them."""

from __future__ import annotations

import pandas as pd

from ..arms import arm_label
from .tables import DEFINITIONS, Deciders, Tables, metric_columns


def matching_view(tables: Tables) -> pd.DataFrame:
    """The highest matching sparsity of every task, for display."""
    return pd.DataFrame(
        {
            "task": tables.matching.task,
            "decided by": [
                f"{s} {m}" + (" (lower is better)" if low else "")
                for s, m, low in zip(tables.matching.split, tables.matching.metric, tables.matching.lower_is_better)
            ],
            "seeds": tables.matching.seeds.astype(str),
            "dense": [
                f"{mean:.4f} ± {std:.4f}" for mean, std in zip(tables.matching.dense_mean, tables.matching.dense_std)
            ],
            **{
                f"highest matching ({d})": [
                    "none" if pd.isna(level) else f"{level:.1%}" for level in tables.matching[f"highest_{d}"]
                ]
                for d in DEFINITIONS
            },
        }
    )


def task_views(tables: Tables, deciders: Deciders) -> dict[str, pd.DataFrame]:
    """Table 2 for display, one frame of strings per task: a row per arm, a column per metric (* decides)."""
    views = {}
    for task, rows in tables.table2.groupby("task", sort=False):
        columns = metric_columns(task, deciders)
        cells = []
        for (selected, label, level), group in rows.groupby(["selected_by", "label", "level"], sort=False):
            stats = {(r.split, r.metric): r for r in group.itertuples()}
            decider = stats.get(columns[0])
            cells.append(
                {
                    "at": selected,
                    "subnetwork": label,
                    "sparsity": f"{level:.1%}",
                    "seeds": str(decider.n if decider else ""),
                    **{column_name(pair, pair == columns[0]): stats_cell(stats.get(pair)) for pair in columns},
                    "matching (paper / strict)": _flags(decider),
                }
            )
        views[task] = pd.DataFrame(cells)
    return views


def gaps_view(tables: Tables) -> pd.DataFrame:
    """The gaps for display: a row per task and arm, a column per sparsity, cells "mean ± std (min–max)"."""
    gaps = tables.gaps
    levels = sorted(gaps.level.unique())
    rows = []
    for (task, arm, source), group in gaps.groupby(["task", "arm", "source"], sort=False):
        by_level = {row.level: row for row in group.itertuples()}
        rows.append(
            {
                "task": task,
                "IMP minus": arm_label(arm, source or None),
                **{f"{level:.1%}": stats_cell(by_level.get(level)) for level in levels},
            }
        )
    return pd.DataFrame(rows)


def transfer_views(tables: Tables) -> dict[float, pd.DataFrame]:
    """The transfer matrix for display, one frame per level: rows source, columns target, cells
    "mean (minus dense / minus random pruning)"."""
    views = {}
    for level, rows in tables.transfer.groupby("level"):
        cells = rows.assign(
            cell=[
                f"{r.mean:.4f} ({r.minus_dense:+.4f} / {'—' if pd.isna(r.minus_random) else f'{r.minus_random:+.4f}'})"
                for r in rows.itertuples()
            ]
        )
        view = cells.pivot(index="source", columns="target", values="cell").fillna("")
        views[level] = view.reset_index().rename(columns={"source": "source \\ target"})
    return views


def column_name(pair: tuple[str, str], decides: bool) -> str:
    """A metric's column in a displayed table: "dev accuracy", with * when it decides."""
    return f"{pair[0]} {pair[1]}{'*' if decides else ''}"


def stats_cell(stats) -> str:
    """A displayed cell of stats over seeds (anything with n, mean, std, min, max): "mean ± std (min–max)"."""
    if stats is None:
        return "—"
    if stats.n == 1:
        return f"{stats.mean:.4f}"
    return f"{stats.mean:.4f} ± {stats.std:.4f} ({stats.min:.4f}–{stats.max:.4f})"


def _flags(stats) -> str:
    if stats is None:
        return "—"
    return " / ".join("yes" if flag else "no" for flag in (stats.matching_paper, stats.matching_strict))
