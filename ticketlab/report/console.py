"""Every table ticketlab prints on the terminal: a run's rounds, an EarlyBERT run, a report's tables, the tasks, a
verification. The CLI and the report call these; files (report.md, CSV, PNG) are made in build.py and plots/."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..api import ticket_file
from ..arms import arm_label
from ..earlybert import EarlyBertResult
from ..export.trust import export_damage, is_export
from ..lottery import LotteryResult
from ..masks import entropy_bound, load_mask, sparsity
from ..models.matrices import type_counts
from ..store import MARKER, RunStore, describe, verify
from ..store.records import RoundRecord
from ..tasks import TASKS
from .anatomy import ALL
from .build import CELLS, load_results
from .earlybert import earlybert_table, earlybert_views
from .results import Result
from .tables import Deciders, make_tables
from .views import gaps_view, matching_view, task_views, transfer_views


def print_tables(
    paths: Iterable[str | Path], metrics: dict[str, str] | None = None, console: Console | None = None
) -> None:
    """Print the highest matching sparsities, Table 2 of every task, the transfer matrices and the EarlyBERT tables."""
    results, deciders = load_results(paths, metrics)
    tables = make_tables(results, deciders)
    console = console or Console()
    console.print(rich_table(matching_view(tables), "Highest matching sparsity (IMP)"))
    for task, view in task_views(tables, deciders).items():
        console.print(rich_table(view, f"{task}: dense and every arm at the highest matching sparsity", CELLS))
    for level, view in transfer_views(tables).items():
        console.print(
            rich_table(view, f"Transfer at sparsity {level:.1%}: mean (minus dense / minus random pruning)", labels=1)
        )
    if not tables.gaps.empty:
        console.print(
            rich_table(
                gaps_view(tables), "IMP minus every other arm, seed by seed (positive: IMP is better)", CELLS, labels=2
            )
        )
    print_earlybert_tables(results, deciders, console)


def print_earlybert_tables(results: list[Result], deciders: Deciders, console: Console) -> None:
    """Print, per task and model, dense against EarlyBERT and the random structured ticket over seeds."""
    for (task, model), view in earlybert_views(earlybert_table(results, deciders), deciders).items():
        console.print(
            rich_table(view, f"{task}: EarlyBERT  ·  {model}", CELLS, labels=view.columns.get_loc("subnetwork") + 1)
        )


def rich_table(frame: pd.DataFrame, title: str, caption: str | None = None, labels: int = 2) -> Table:
    """A frame of strings as a rich Table: the first `labels` columns left-aligned, the rest right-aligned."""
    table = Table(title=title, caption=caption)
    for i, column in enumerate(frame.columns):
        table.add_column(str(column), justify="left" if i < labels else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*map(str, row))
    return table


def print_rounds(result: LotteryResult, metric: str | None = None) -> None:
    """The table closing `ticketlab find`: one row per round, every metric of every evaluation split, the change of
    the deciding metric against the dense round 0, the wall time and the training FLOPs (the cost ledger's); an
    early-bird round that only drew the next mask shows no metrics."""
    config = RunStore.open(result.path).config()
    task, finder = TASKS.get(config.task), arm_label(config.prune.finder)
    split, decider = task.decider(metric)
    dense = result.rounds[0][split][decider]
    title = f"{finder} on {task.name} (matching decided by {split} {decider})"
    table = Table(title=title, caption=str(result.path))
    columns = [(s, m) for s in task.eval_splits for m in task.metrics]
    headers = ("round", "sparsity", *(f"{s} {m}" for s, m in columns), f"Δ {decider} vs dense", "wall time")
    for column in (*headers, "train FLOPs"):
        table.add_column(column, justify="right")
    for record in result.rounds:
        table.add_row(
            str(record["round"]),
            f"{record['sparsity']:.1%}",
            *(f"{record[s][m]:.4f}" if s in record else "—" for s, m in columns),
            f"{record[split][decider] - dense:+.4f}" if split in record else "—",
            f"{record['wall_time_s']:.0f} s",
            f"{record['cost']['train_flops']:.3g}" if "cost" in record else "",  # rounds stored before the ledger
        )
    Console().print(table)


def print_earlybert(result: EarlyBertResult) -> None:
    """The table closing `ticketlab earlybert`: dense, the early-bird ticket and the random structured ticket."""
    task = TASKS.get(RunStore.open(result.run).config().task)
    split, decider = task.decider()
    search = result.earlybert["search"]
    found = (
        f"early bird at step {search['draw_step']}"
        if search["early_bird"]
        else f"no early bird, drawn at step {search['draw_step']}"
    )
    table = Table(title=f"EarlyBERT on {task.name} ({found} of {result.dense['steps']})", caption=str(result.run))
    columns = [(s, m) for s in task.eval_splits for m in task.metrics]
    for column in (
        "",
        *(f"{s} {m}" for s, m in columns),
        f"Δ {decider}",
        "heads, FFN kept",
        "sparsity",
        "time (s)",
        "× dense",
    ):
        table.add_column(column, justify="right")
    dense_time = result.dense.get("train_time_s")  # runs stored before EarlyBERT lack it
    table.add_row(
        "dense",
        *(f"{result.dense[s][m]:.4f}" for s, m in columns),
        "",
        "",
        "",
        f"{dense_time:.1f}" if dense_time else "",
        "1",
    )
    for label, record in (("EarlyBERT", result.earlybert), ("random", result.random)):
        shape = record["structure"]
        search_time = record.get("search", {}).get("time_s")
        table.add_row(
            label,
            *(f"{record[s][m]:.4f}" for s, m in columns),
            f"{record[split][decider] - result.dense[split][decider]:+.4f}",
            f"{sum(map(len, shape['heads']))}/{sum(shape['heads_total'])}, "
            f"{sum(shape['ffn_kept']) / sum(shape['ffn_total']):.0%}",
            f"{record['sparsity']:.1%}",
            f"{search_time:.1f}+{record['train_time_s']:.1f}" if search_time else f"{record['train_time_s']:.1f}",
            f"{record['time_ratio']:.2f}" if record["time_ratio"] is not None else "",
        )
    Console().print(table)


def print_verification(paths: Sequence[str]) -> bool:
    """`ticketlab verify`: a line per damaged unit (of a run; an export folder is one unit) and how to redo it, then a
    count; True when nothing is damaged."""
    exports = [Path(path) for path in paths if is_export(Path(path))]
    units = [(folder / MARKER, export_damage(folder)) for folder in exports]
    units += verify(path for path in paths if Path(path) not in exports)
    damaged = [(marker, problems) for marker, problems in units if problems]
    for marker, problems in damaged:
        print(f"{marker.parent}: damaged, {describe(problems)}; run the command that made it again to redo it")
    print(f"{len(units)} units checked, {len(damaged)} damaged")
    return not damaged


def print_tasks() -> None:
    """`ticketlab tasks`: every task, its metrics (* decides matching), evaluation splits and the files it reads."""
    console = Console(highlight=False)
    for name in TASKS:
        task = TASKS.get(name)
        metrics = ", ".join(f"{m}*" if m == task.metric else m for m in task.metrics)
        console.print(f"[bold]{name}[/bold]  {metrics}  on {', '.join(task.eval_splits)}")
        console.print(f"    {task.description}\n    --data: {task.files}", markup=False)
    console.print("* the metric that decides matching (change it with --metric)")


def print_pretraining(record: dict) -> None:
    """The line closing `ticketlab pretrain`: method, steps, time and the dev metrics."""
    print(
        f"{record['method']} pre-training, {record['steps']} steps in {record['train_time_s']:.0f} s: "
        + ", ".join(f"dev {name} {value:.4f}" for name, value in record["dev"].items())
    )


def print_transfer(ticket: str, task: str, seed: int, record: dict) -> None:
    """The line closing one seed of `ticketlab transfer`: every metric of the transferred ticket (its record as
    stored)."""
    splits = RoundRecord.from_json(record, TASKS.get(task).eval_splits).splits
    print(
        f"transfer of {ticket} to {task}, seed {seed}: "
        + ", ".join(
            f"{split} {metric} {value:.4f}" for split, values in splits.items() for metric, value in values.items()
        )
    )


def print_export(folder: Path) -> None:
    """The lines closing `ticketlab export`: the folder, its weights, the kernels chosen with the time each layer
    takes against dense on the deployment shape, the dev metrics measured at export, and its bytes on disk."""
    record = json.loads((folder / "export.json").read_text())
    batch, length = record["tokens"]
    print(f"{folder}: {record['format']}, {record['weights']}")
    plan = record.get("kernels", {})
    if plan:
        chosen = Counter(entry["kernel"] for entry in plan.values())
        fastest = sum(entry["ms"][entry["kernel"]] for entry in plan.values())
        # the dense kernel of the format: fp32, or what replaced it (sparse-int8, sparse-bf16)
        dense = next(k for k in ("dense", "int8", "dense-bf16") if all(k in entry["ms"] for entry in plan.values()))
        baseline = sum(entry["ms"][dense] for entry in plan.values())
        print(
            f"  {len(plan)} pruned linear layers on {batch} x {length} tokens, {record['threads']} threads: "
            + ", ".join(f"{count} {kernel}" for kernel, count in chosen.most_common())
            + f"; {fastest:.2f} ms against {baseline:.2f} ms all {dense} ({baseline / fastest:.2f}x)"
        )
    if "latency" in record:
        print(f"  whole model on {batch} x {length} tokens: {latency_line(record['latency'])}")
    for name, metrics in record.get("dev", {}).items():
        print(f"  {name}: " + ", ".join(f"{metric} {value:.4f}" for metric, value in metrics.items()))
    if "onnx_max_abs_error" in record:
        print(f"  model.onnx: max |ONNX Runtime - torch| {record['onnx_max_abs_error']:.1e}")
    if "bytes" in record:
        model, dense = record["bytes"]["model"], record["bytes"]["dense"]
        whole = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        print(f"  on disk: the model {model:,} bytes against {dense:,} dense ({model / dense:.3f}x); folder {whole:,}")


def latency_line(latency: dict) -> str:
    """An export's latency against every dense way to run it, and the speedup over the fastest, in one line."""
    dense = ", ".join(f"{name} {ms:.2f}" for name, ms in latency["dense ms"].items())
    return (
        f"exported {latency['exported ms']:.2f} ms against dense {dense} ms: "
        f"{latency['speedup']:.2f}x the fastest dense ({latency['fastest dense']})"
    )


def print_ticket(source: str) -> None:
    """`ticketlab ticket show`: a ticket's provenance (its metadata), its sparsity per matrix type, and its file's
    bytes against the entropy bound and against one byte per weight (the bool tensors masks were once saved as)."""
    path = ticket_file(source)
    mask, metadata = load_mask(path)
    console = Console(highlight=False)
    console.print(f"Ticket {path}", style="bold", markup=False)
    provenance = Table(title="Provenance", show_header=False)
    for key in sorted(metadata):
        provenance.add_row(Text(key), Text(metadata[key]))  # as written: no markup
    if not metadata:
        provenance.add_row("no provenance recorded")
    console.print(provenance)

    types = Table(title="Sparsity per matrix type")
    for column in ("matrix type", "matrices", "weights", "kept", "sparsity"):
        types.add_column(column, justify="left" if column == "matrix type" else "right")
    counts = type_counts(mask)
    total = sum(weights for _, _, weights in counts.values())
    counts[ALL] = (len(mask), sum(kept for _, kept, _ in counts.values()), total)
    for kind, (matrices, kept, weights) in counts.items():
        types.add_row(kind, str(matrices), f"{weights:,}", f"{kept:,}", f"{1 - kept / weights:.2%}" if weights else "")
    console.print(types)

    size = Table(title="File size")
    for column in ("", "bytes", "bits per weight", "file / this"):
        size.add_column(column, justify="left" if not column else "right")
    file_bytes = path.stat().st_size
    for label, bytes_ in (
        ("this file", file_bytes),
        (f"entropy bound N·H(s)/8, s = {sparsity(mask):.2%}", entropy_bound(mask)),
        ("per-matrix bound Σ N_i·H(s_i)/8", entropy_bound(mask, per_matrix=True)),
        ("1 byte per weight (bool tensors)", total),
    ):
        size.add_row(
            label,
            f"{bytes_:,.0f}",
            f"{8 * bytes_ / total:.3f}" if total else "",
            f"{file_bytes / bytes_:.3f}" if bytes_ else "",
        )
    console.print(size)
