"""A ticket worth shipping: test accuracy against speed over the fastest dense export, on minilm-l6 and the whole
Rotten Tomatoes training split (goal: within 1 point of dense test accuracy, >= 3x at batch 1 x 128, >= 2x at 32).

Stages, each resumable (every training is a ticketlab run unit, so re-running goes on where it stopped):

  epochs   the dense model trained for each of EPOCHS epochs (seed 0, the fastest precision of the machine); the number
           of epochs is the one with the best dense dev accuracy, chosen on the dense model alone
  train    per seed, method (imp, wanda, gmp), distillation (off, on) and granularity: tickets at LEVELS, every
           round's weights kept for export; EarlyBERT's compacted tickets with and without distillation
  ship     every ticket exported in its fastest format on this machine and timed side by side with the fastest
           dense export at batch 1 and 32 x 128 tokens (ticketlab.export)

Run: .venv/bin/python benchmarks/bench_ship.py [--stages epochs train] [--seeds 0 1 2] [--methods wanda]
[--distill off on] [--granularities weight block:4x4] [--out runs/ship]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import ticketlab
from ticketlab.config import resolve_precision
from ticketlab.hardware import cpu_features, cpu_name
from ticketlab.lottery import resolve_config, run_lottery

LEVELS = "0.5,0.7,0.8,0.9,0.95"
EPOCHS = (1, 2)
RECIPE = dict(model="minilm-l6", task="rotten-tomatoes", learning_rate=1e-4, precision="auto")  # the minilm preset's lr
METHODS = ("imp", "wanda", "gmp")


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
    for seed in seeds:
        for granularity in granularities:
            for method in methods:
                for distilled in distill:
                    ticketlab.find(
                        RECIPE["model"],
                        RECIPE["task"],
                        sparsity=0.95,
                        out=out / "tickets",
                        save_weights=True,
                        schedule=LEVELS,
                        finder=method,
                        granularity=granularity,
                        distill=distilled or None,
                        epochs=epochs,
                        seed=seed,
                        **{k: v for k, v in RECIPE.items() if k not in ("model", "task")},
                    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", default=["epochs", "train"], choices=("epochs", "train", "ship"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--distill", nargs="+", default=["off", "on"], choices=("off", "on"))
    parser.add_argument("--granularities", nargs="+", default=["weight"])
    parser.add_argument("--out", type=Path, default=Path("runs/ship"))
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


if __name__ == "__main__":
    main()
