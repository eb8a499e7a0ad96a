"""A ticket worth shipping: test accuracy against speed over the fastest dense export, on minilm-l6 and the whole
Rotten Tomatoes training split (goal: within 1 point of dense test accuracy, >= 3x at batch 1 x 128, >= 2x at 32).

Stages, each resumable (every training is a ticketlab run unit, so re-running goes on where it stopped):

  epochs   the dense model trained for each of EPOCHS epochs (seed 0, the fastest precision of the machine); the number
           of epochs is the one with the best dense dev accuracy, chosen on the dense model alone
  train    per seed, method (imp, wanda, gmp), distillation (off, on) and granularity: tickets at LEVELS, every
           round's weights kept for export; method earlybert: EarlyBERT's compacted ticket (a branch of IMP's run of
           the same seed and distillation, whose dense round 0 it shares)
  ship     every ticket exported in each format that may be its fastest on this machine (unstructured: the sparse
           formats; compacted: fp32, bf16, INT8) and timed side by side with the fastest dense export of the full-size
           model at batch 1 and 32 x 128 tokens (ticketlab.export), then the report with the frontier
  table    the test accuracy of every arm and level over the seeds that finished (mean ± std, and the mean gap to the
           same seed's dense model), read from the run store, as markdown for RESULTS.md (no training, no timing)

Run: .venv/bin/python benchmarks/bench_ship.py [--stages epochs train table] [--seeds 0 1 2] [--methods wanda earlybert]
[--distill off on] [--granularities weight block:4x4] [--out runs/ship]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

import ticketlab
from ticketlab.arms import EARLYBERT, arm_label
from ticketlab.config import resolve_precision
from ticketlab.earlybert import EarlyBirdConfig
from ticketlab.export.latency import against_dense, dense_variants, text_inputs
from ticketlab.hardware import cpu_features, cpu_name, native_bf16
from ticketlab.lottery import resolve_config, run_lottery
from ticketlab.models import load_pretrained, prunable_weights, resolve_model
from ticketlab.report.build import build_report, load_results
from ticketlab.report.earlybert import ticket_arm
from ticketlab.report.results import is_dense, level_key, metric_value
from ticketlab.report.verdict import summarize
from ticketlab.store import RunStore
from ticketlab.tasks import TASKS

LEVELS = "0.5,0.7,0.8,0.9,0.95"
EPOCHS = (1, 2)
RECIPE = dict(model="minilm-l6", task="rotten-tomatoes", learning_rate=1e-4, precision="auto")  # the minilm preset's lr
METHODS = ("imp", "wanda", "gmp", "earlybert")
COMPACTED_FORMATS = ("dense", "bf16", "int8")  # a compacted model is a smaller dense one
# The block shape the sparse export runs fastest at 90% (RESULTS.md, "Exported tickets": fastest dense / sparse-bf16
# 1.24x at batch 1 and 1.50x at 32 for 4x4 blocks, against 1.27x and 1.01x for single weights)
BLOCK = "block:4x4"
SHAPES = ((1, 128), (32, 128))  # batch x tokens the frontier is measured at


def dense_config(epochs: int, seed: int):
    """The dense model's run settings at `epochs`."""
    options = {k: v for k, v in RECIPE.items() if k not in ("model", "task")}
    return resolve_config(
        RECIPE["model"], RECIPE["task"], None, 0.95, schedule=LEVELS, epochs=epochs, seed=seed, **options
    )


def choose_epochs(out: Path) -> int:
    """Train the dense model (seed 0) for each of EPOCHS and keep the number with the best dev accuracy (round 0 of
    IMP's run at that many epochs, which every other method's run then copies)."""
    accuracy = {}
    for epochs in EPOCHS:
        config = dense_config(epochs, 0)
        result = run_lottery(config, out / "tickets", last_round=0)
        dense = result.rounds[0]
        accuracy[epochs] = dense["dev"]["accuracy"]
        print(f"dense, {epochs} epoch(s): dev accuracy {accuracy[epochs]:.4f}, test {dense['test']['accuracy']:.4f}")
    chosen = max(EPOCHS, key=lambda epochs: (accuracy[epochs], -epochs))
    (out / "epochs.json").write_text(json.dumps({"dev_accuracy": accuracy, "chosen": chosen}, indent=2))
    print(f"epochs chosen on the dense model's dev accuracy: {chosen}")
    return chosen


def train(out: Path, epochs: int, seeds: list[int], methods: list[str], distill: list[bool], granularities: list[str]):
    """The tickets of every combination, in this process, one after another."""
    options = {k: v for k, v in RECIPE.items() if k not in ("model", "task")}
    for seed, method, distilled in [(s, m, d) for s in seeds for m in methods for d in distill]:
        settings = dict(out=out / "tickets", distill=distilled or None, epochs=epochs, seed=seed, **options)
        if method == "earlybert":  # structured already: one ticket whatever the granularity
            ticketlab.earlybert(RECIPE["model"], RECIPE["task"], sparsity=0.95, schedule=LEVELS, **settings)
            continue
        for granularity in granularities:
            ticketlab.find(
                RECIPE["model"],
                RECIPE["task"],
                sparsity=0.95,
                save_weights=True,
                schedule=LEVELS,
                finder=method,
                granularity=granularity,
                **settings,
            )


def ship(out: Path, epochs: int, formats: list[str], levels: list[float] | None) -> None:
    """Every ticket of the runs trained for `epochs` (`levels`: only those; None: all) exported in each of `formats`
    (a compacted EarlyBERT ticket: in each of COMPACTED_FORMATS) at each of SHAPES (resumable: an export folder that
    exists is complete), then their report with the frontier."""
    runnable = [form for form in (*formats, *COMPACTED_FORMATS) if "bf16" not in form or native_bf16("cpu")]
    runs = trained_runs(out, epochs)
    for run in runs:
        store = RunStore(run)
        tickets = {}  # export folder under out/exports -> (what to export, the formats it is exported in)
        for round in store.completed_rounds():
            level = store.metrics(round)["level"]
            chosen = levels is None or any(abs(level - wanted) < 1e-6 for wanted in levels)
            if round > 0 and chosen and store.weights_path(round).is_file():
                tickets[f"{store.path.name}/round_{round:02d}"] = (f"{store.path}:{round}", formats)
        earlybert = store.branch(EarlyBirdConfig().branch(EARLYBERT))  # the settings `train` searches with
        if earlybert.is_complete(0):
            tickets[f"{store.path.name}/{earlybert.path.name}"] = (earlybert.round_dir(0) / "model", COMPACTED_FORMATS)
        for name, (ticket, its_formats) in tickets.items():
            for (batch, length), form in [(shape, f) for shape in SHAPES for f in its_formats if f in runnable]:
                folder = out / "exports" / name / f"{form}-b{batch}"
                if not folder.exists():
                    folder.parent.mkdir(parents=True, exist_ok=True)
                    ticketlab.export_ticket(ticket, folder, form, batch_size=batch, length=length)
                    print(f"exported {folder.relative_to(out)}")
    report = build_report(runs, out / "report", exports=[out / "exports"])
    print((report / "frontier.csv").read_text())


def trained_runs(out: Path, epochs: int) -> list[Path]:
    """The runs of the grid: those trained for `epochs` (not the other epochs' dense runs)."""
    runs = [path.parent for path in sorted((out / "tickets").glob("*/config.json"))]
    return [run for run in runs if RunStore(run).config().train.epochs == epochs]


def accuracy_table(out: Path, epochs: int) -> str:
    """Markdown: per arm (rows) and level (columns), the test accuracy over seeds, mean ± std (seeds; mean gap to the
    same seed's dense model, in points)."""
    results, _ = load_results(trained_runs(out, epochs))
    test = ("test", "accuracy")
    dense = {r.seed: metric_value(r, test) for r in results if is_dense(r)}
    cells: dict[str, dict[float, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in results:
        if not is_dense(r) and r.source is None and (value := metric_value(r, test)) is not None:
            cells[arm_label(ticket_arm(r))][level_key(r)][r.seed] = value
    levels = sorted({level for arm in cells.values() for level in arm})
    lines = [
        f"dense: {_mean_std(dense.values())} ({len(dense)})",
        "",
        "| ticket | " + " | ".join(f"{level:.1%}" for level in levels) + " |",
        "|---|" + "---|" * len(levels),
    ]
    for arm, by_level in sorted(cells.items()):
        row = []
        for values in (by_level.get(level) for level in levels):
            gap = summarize(values[s] - dense[s] for s in values if s in dense).mean if values else None
            row.append(f"{_mean_std(values.values())} ({len(values)}; {100 * gap:+.2f})" if values else "")
        lines.append(f"| {arm} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _mean_std(values: Iterable[float]) -> str:
    """mean ± std over seeds (the std only where there are several)."""
    stats = summarize(values)
    return f"{stats.mean:.4f}" + (f" ± {stats.std:.4f}" if stats.n > 1 else "")


def ceiling() -> None:
    """The speed bound of any ticket: minilm-l6 with every prunable linear layer free (its bias alone), against the
    fastest dense way to run the whole model, at each of SHAPES."""
    task = TASKS.get(RECIPE["task"])
    model = load_pretrained(resolve_model(RECIPE["model"]), task.auto_class, seed=0, **task.model_options()).eval()
    dense = dense_variants(model)
    for name in prunable_weights(model):
        layer = model.get_submodule(f"{model.base_model_prefix}.{name.removesuffix('.weight')}")
        layer.forward = _free(layer)
    for batch, length in SHAPES:
        timed = against_dense(model, dense, text_inputs(model.config.vocab_size, batch, length))
        print(f"ceiling at {batch} x {length}: {timed['speedup']:.2f}x over {timed['fastest dense']} ({timed})")


def _free(layer: nn.Linear):
    """A linear layer that costs no product: its output is its bias, written out (any kernel writes its output; a
    broadcast view instead slowed what reads it, 0.63x against 2.7x measured)."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        return layer.bias.expand(*x.shape[:-1], layer.out_features).contiguous()

    return forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    stages = ("epochs", "train", "ship", "table", "ceiling")
    parser.add_argument("--stages", nargs="+", default=["epochs", "train", "ship", "table"], choices=stages)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--distill", nargs="+", default=["off", "on"], choices=("off", "on"))
    parser.add_argument("--granularities", nargs="+", default=["weight", BLOCK])
    parser.add_argument("--out", type=Path, default=Path("runs/ship"))
    parser.add_argument("--formats", nargs="+", default=["sparse", "sparse-int8", "sparse-bf16"], help="ship: formats")
    parser.add_argument("--levels", nargs="+", type=float, help="ship: only the tickets at these levels (default all)")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; features: {', '.join(cpu_features())}; precision auto -> {resolve_precision('auto')}")
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = args.out / "epochs.json"
    epochs = (
        choose_epochs(args.out)
        if "epochs" in args.stages or not chosen.exists()
        else json.loads(chosen.read_text())["chosen"]
    )
    if "train" in args.stages:
        train(args.out, epochs, args.seeds, args.methods, [d == "on" for d in args.distill], args.granularities)
    if "ship" in args.stages:
        ship(args.out, epochs, args.formats, args.levels)
    if "table" in args.stages:
        print(accuracy_table(args.out, epochs))
    if "ceiling" in args.stages:
        ceiling()


if __name__ == "__main__":
    main()
