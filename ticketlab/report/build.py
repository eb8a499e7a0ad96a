"""`ticketlab report`: the tables, verdicts and plots of a set of runs, regenerated from the run store alone
(no training, no model loaded) into a folder: report.md, CSV tables and PNGs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..atomic import atomic_path
from ..errors import TicketlabError
from ..masks import LOW_DENSITY
from ..tasks import TASKS
from .claims import claims_table
from .cost import TEXT as COST_TEXT
from .cost import cost_table, cost_views
from .earlybert import CELLS_TEXT as EARLYBERT_TEXT
from .earlybert import earlybert_table, earlybert_views
from .frontier import draw_frontier, frontier_table, frontier_view, timed_exports
from .plots.draw import draw_all
from .results import Result, collect
from .tables import Deciders, Tables, make_tables
from .views import gaps_view, matching_view, task_views, transfer_views

CELLS = "mean ± std (min–max) over seeds; std is the sample standard deviation (ddof=1), 0 with a single seed"
DEFINITIONS_TEXT = (
    """\
- **matching (paper)**, Chen et al. 2020: the subnetwork's mean over seeds is within one standard deviation of the
  dense model's mean (mean ≥ dense mean − dense std; for loss and perplexity, where lower is better,
  mean ≤ dense mean + dense std).
- **matching (strict)**: for every seed, the subnetwork is at least as good as the dense model of the same seed.
- Ties count as matching. The dense model of a seed is round 0 of that seed's IMP run, trained without
  distillation: distilled arms (`· distilled`, tickets that learned from that dense model too) are judged against
  the same dense model as the others. Subnetworks are grouped by their nominal sparsity level. `*` marks the
  metric that decides matching (`--metric TASK=[SPLIT/]METRIC`).
- Cells: """
    + CELLS
    + "."
)

FRONTIER_TEXT = (
    "Each exported ticket's held-out metric (mean ± std over seeds) beside its speedup over the fastest dense way to "
    "run the same model on this machine (fp32, bf16 where native, INT8: export.json's latency), each seed's fastest "
    "format; frontier: no other ticket is both faster and better. Timings are the machine's that exported them."
)
FILES = {
    "results.csv": "every metric of every arm and level: n, mean, std, min, max over seeds; "
    "matching flags on the deciding metric",
    "matching.csv": "per task: the dense baseline and the highest matching sparsity under each definition",
    "table2.csv": "per task: the dense model, then every arm at the highest matching sparsity (every metric)",
    "transfer.csv": "source x target at each level: the target's deciding metric, minus dense, minus random pruning",
    "gaps.csv": "per task and level: IMP's deciding metric minus every other arm's, seed by seed "
    "(positive: IMP is better)",
    "nearly_empty.csv": f"every subnetwork's matrices that keep under {LOW_DENSITY:.0%} of their weights "
    "(only where any do)",
    "earlybert.csv": "per task and EarlyBERT settings: dense, EarlyBERT and the random structured ticket, "
    "every metric, "
    "what they keep, the draw step and the times (only with EarlyBERT results)",
    "cost.csv": "per task, arm and level: the cost to find each ticket, to train it and in total, training FLOPs and "
    "seconds, mean over seeds (NaN where a unit was stored without its ledger)",
    "frontier.csv": "per task, batch and exported ticket: the held-out metric over seeds, the speedup over the fastest "
    "dense export, the format, and whether it is on the Pareto frontier (only with --exports)",
}


def load_results(paths: Iterable[str | Path], metrics: dict[str, str] | None = None) -> tuple[list[Result], Deciders]:
    """The results in `paths` and the (split, metric) deciding matching for each of their tasks;
    `metrics` maps a task to "METRIC" or "SPLIT/METRIC" instead of the paper's."""
    paths, metrics = list(paths), metrics or {}
    results = collect(paths)
    if not results:
        raise TicketlabError(f"no complete round in {', '.join(map(str, paths))}")
    tasks = sorted({r.task for r in results})
    unknown = sorted(set(metrics) - set(tasks))
    if unknown:
        raise TicketlabError(f"--metric {unknown[0]}=...: no run is on task {unknown[0]!r} (tasks: {', '.join(tasks)})")
    return results, {task: TASKS.get(task).decider(metrics.get(task)) for task in tasks}


def build_report(
    paths: Iterable[str | Path],
    out: str | Path | None = None,
    metrics: dict[str, str] | None = None,
    exports: Iterable[str | Path] = (),
) -> Path:
    """Write report.md, the CSV tables and the plots into `out` (default: report/ beside the runs); returns `out`.
    `exports`: folders holding exports of these runs' tickets, drawn as the accuracy/latency frontier."""
    results, deciders = load_results(paths, metrics)
    tables, earlybert = make_tables(results, deciders), earlybert_table(results, deciders)
    cost = cost_table(results)
    exports = list(exports)
    frontier = frontier_table(results, timed_exports(exports), deciders) if exports else pd.DataFrame()
    runs = sorted({r.run.resolve() for r in results})
    out = Path(out) if out is not None else Path(os.path.commonpath([run.parent for run in runs])) / "report"
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in csv_files(tables, earlybert, cost, frontier).items():
        with atomic_path(out / name) as tmp:
            frame.to_csv(tmp, index=False)
    plots = draw_all(results, deciders, out) + (draw_frontier(frontier, out) if not frontier.empty else [])
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(markdown(tables, earlybert, cost, frontier, deciders, runs, plots, out))
    return out


def csv_files(
    tables: Tables, earlybert: pd.DataFrame, cost: pd.DataFrame, frontier: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """The CSV files of a report by name (FILES); gaps.csv, nearly_empty.csv, earlybert.csv and frontier.csv only
    where they have rows."""
    frames = dict(
        zip(
            FILES,
            (
                tables.long,
                tables.matching,
                tables.table2,
                tables.transfer,
                tables.gaps,
                tables.nearly_empty,
                earlybert,
                cost,
                frontier,
            ),
        )
    )
    optional = {"gaps.csv", "nearly_empty.csv", "earlybert.csv", "frontier.csv"}
    return {name: frame for name, frame in frames.items() if name not in optional or not frame.empty}


def markdown(
    tables: Tables,
    earlybert: pd.DataFrame,
    cost: pd.DataFrame,
    frontier: pd.DataFrame,
    deciders: Deciders,
    runs: list[Path],
    plots: list[Path],
    out: Path,
) -> str:
    """report.md: definitions, tables, the plots (relative links), the files and runs it was built from."""
    lines = [
        "# Lottery ticket report",
        "",
        f"Built by `ticketlab report` from {len(runs)} runs.",
        "",
        "## Definitions",
        "",
        DEFINITIONS_TEXT,
        "",
        "## Highest matching sparsity (IMP)",
        "",
        markdown_table(matching_view(tables)),
        "",
    ]
    for task, view in task_views(tables, deciders).items():
        lines += [f"## Table 2: {task}", "", markdown_table(view), ""]
    transfers = transfer_views(tables)
    if transfers:
        lines += [
            "## Transfer",
            "",
            "Cells: the target's deciding metric, mean over seeds (minus the target's dense mean / "
            "minus random pruning's mean on the target at the same sparsity). Diagonal: the target's own IMP ticket.",
            "",
        ]
        for level, view in transfers.items():
            lines += [f"### Sparsity {level:.1%}", "", markdown_table(view), ""]
    claims = claims_table(tables)
    if len(claims) > len(tables.matching):  # controls or transfers ran: the paper's claims can be read
        lines += [
            "## The BERT paper's claims",
            "",
            "Each claim of Chen et al. (NeurIPS 2020) beside what these runs measured, read from the tables below: "
            "gaps are IMP minus the arm on the deciding metric, mean ± std over seeds (positive: IMP is better).",
            "",
            markdown_table(claims),
            "",
        ]
    if not tables.gaps.empty:
        lines += [
            "## IMP against every other arm",
            "",
            "Cells: IMP's deciding metric minus the arm's, seed by seed (positive: "
            "IMP is better; lower-is-better metrics flipped), " + CELLS + ".",
            "",
            markdown_table(gaps_view(tables)),
            "",
        ]
    if not tables.nearly_empty.empty:
        lines += [
            f"## Matrices below {LOW_DENSITY:.0%} density",
            "",
            "A matrix a mask nearly empties can cut the only path "
            "to the head (the pooler under `--scope global`): these subnetworks may sit at the majority class.",
            "",
            markdown_table(_kept_as_percent(tables.nearly_empty)),
            "",
        ]
    if not earlybert.empty:
        lines += ["## EarlyBERT", "", EARLYBERT_TEXT, ""]
        for (task, model), view in earlybert_views(earlybert, deciders).items():
            lines += [f"### {task} · {model}", "", markdown_table(view), ""]
    if not frontier.empty:
        lines += [
            "## Shipped tickets: accuracy against speed",
            "",
            FRONTIER_TEXT,
            "",
            markdown_table(frontier_view(frontier)),
            "",
        ]
    if cost.train_flops.notna().any():  # runs stored before the ledger have none
        lines += ["## Cost", "", COST_TEXT, ""]
        for task, view in cost_views(cost).items():
            lines += [f"### {task}", "", markdown_table(view), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{plot.stem}]({_relative(plot, out)})\n" for plot in plots]
    files = csv_files(tables, earlybert, cost, frontier)
    lines += ["## Files", ""] + [f"- [{name}]({name}): {FILES[name]}" for name in files]
    lines += ["", "## Runs", ""] + [f"- `{_relative(run, out)}`" for run in runs]
    return "\n".join(lines) + "\n"


def markdown_table(frame: pd.DataFrame) -> str:
    rows = [list(map(str, frame.columns)), ["---"] * len(frame.columns)]
    rows += [[str(value).replace("|", "\\|") for value in row] for row in frame.itertuples(index=False)]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def _kept_as_percent(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(sparsity=frame["sparsity"].map("{:.1%}".format), kept=frame["kept"].map("{:.2%}".format))


def _relative(path: Path, out: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), out.resolve())).as_posix()
