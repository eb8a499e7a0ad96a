"""The summary of a recipe with pre-training (the CV paper's setting): per pre-training method, what it reached, and
per task and sparsity the dense model, IMP's own ticket and the method's universal ticket (found on the pre-training
task, transferred), read from each method's runs."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pandas as pd

from ..arms import IMP, RANDOM, TRANSFER
from ..atomic import atomic_path
from ..pretrain import PRETRAINING_METHODS, pretrain_record
from .build import load_results, markdown_table
from .tables import dense_rows, make_tables

SUMMARY = "summary.md"


def pretraining_table(runs: Mapping[str, tuple[Path, Path]]) -> pd.DataFrame:
    """One row per method, task and sparsity; `runs` maps a method to (its pre-trained model, its runs' folder).

    Cells are the task's deciding metric, mean over seeds, with the paper's matching verdict for the tickets, and
    random pruning's where the runs have it (the transfer grid's sparsity)."""
    rows = []
    for method, (_, folder) in runs.items():
        source = PRETRAINING_METHODS[method][0]
        results, deciders = load_results([folder])
        long = make_tables(results, deciders).long
        deciding = long[long.decides]
        for task, rows_of_task in deciding.groupby("task", sort=False):
            dense = rows_of_task[dense_rows(rows_of_task)].iloc[0]
            for level in sorted(set(rows_of_task.level) - {0.0}):
                at = rows_of_task[rows_of_task.level == level]
                imp = at[at.arm == IMP]
                universal = at[(at.arm == TRANSFER) & (at.source == source)]
                random = at[at.arm == RANDOM]
                rows.append(
                    {
                        "method": method,
                        "task": task,
                        "metric": f"{dense.split} {dense.metric}",
                        "sparsity": level,
                        "seeds": int(dense.n),
                        "dense": dense["mean"],
                        "imp_ticket": imp["mean"].iloc[0] if len(imp) else float("nan"),
                        "imp_matching": bool(imp.matching_paper.iloc[0]) if len(imp) else None,
                        "universal_ticket": universal["mean"].iloc[0] if len(universal) else float("nan"),
                        "universal_matching": bool(universal.matching_paper.iloc[0]) if len(universal) else None,
                        "random_pruning": random["mean"].iloc[0] if len(random) else float("nan"),
                    }
                )
    return pd.DataFrame(rows)


def pretraining_overview(runs: Mapping[str, tuple[Path, Path]]) -> pd.DataFrame:
    """One row per method: its pre-training task, steps, time and dev metrics."""
    rows = []
    for method, (model, _) in runs.items():
        record = pretrain_record(model)
        rows.append(
            {
                "method": method,
                "task": record["task"],
                "steps": record["steps"],
                "train_time_s": record["train_time_s"],
                "dev metric": ", ".join(f"{name} {value:.4f}" for name, value in record["dev"].items()),
                "model": str(model),
            }
        )
    return pd.DataFrame(rows)


def write_pretraining_summary(runs: Mapping[str, tuple[Path, Path]], out: Path) -> Path:
    """summary.md and summary.csv in `out`: the pre-training overview, then the table of every method; returns the
    path of summary.md."""
    overview, table = pretraining_overview(runs), pretraining_table(runs)
    with atomic_path(out / "summary.csv") as tmp:
        table.to_csv(tmp, index=False)
    lines = [
        "# Tickets in pre-trained vision models",
        "",
        "## Pre-training",
        "",
        markdown_table(overview.drop(columns="model").round(1)),
        "",
        "Per method: the deciding metric (mean over seeds) of the dense model, of IMP's ticket found on the task "
        "itself, of the universal ticket (IMP on the method's pre-training task, transferred), with the "
        "paper's matching verdict (✓: ≥ dense mean − dense std), and of random pruning where it ran.",
        "",
    ]
    for method, rows in table.groupby("method", sort=False):
        lines += [f"## {method} ({runs[method][1].name}/report/report.md)", "", markdown_table(_display(rows)), ""]
    with atomic_path(out / SUMMARY) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return out / SUMMARY


def _display(rows: pd.DataFrame) -> pd.DataFrame:
    def ticket(value: float, matching: bool | None) -> str:
        return "—" if pd.isna(value) else f"{value:.4f}{' ✓' if matching else ''}"

    return pd.DataFrame(
        {
            "task": rows.task,
            "metric": rows.metric,
            "sparsity": [f"{level:.1%}" for level in rows.sparsity],
            "dense": [f"{value:.4f}" for value in rows.dense],
            "IMP ticket": [ticket(v, m) for v, m in zip(rows.imp_ticket, rows.imp_matching)],
            "universal ticket": [ticket(v, m) for v, m in zip(rows.universal_ticket, rows.universal_matching)],
            "random pruning": [ticket(v, None) for v in rows.random_pruning],
        }
    )
