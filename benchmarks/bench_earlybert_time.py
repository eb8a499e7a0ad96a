"""EarlyBERT's training time (search + training of the compacted model) over a dense fine-tune at matched epochs.

One process, the real pipeline (`ticketlab.earlybert.earlybert`) into a fresh run store per repeat: the dense round 0,
then the early-bird search, the compacted ticket's training and the random structured ticket's, all with the task's
recipe. A first repeat warms the process up and is not counted. Every repeat gives the same metrics (the runs are
seeded), so the times are the only thing that varies; ratios of the medians are reported.
Run: make bench   (or .venv/bin/python benchmarks/bench_earlybert_time.py [--model minilm-l6 --train-examples 3200])
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile

import torch

from ticketlab.earlybert import earlybert
from ticketlab.tasks import TASKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="splade-tiny")
    parser.add_argument("--task", default="rotten-tomatoes")
    parser.add_argument("--repeats", type=int, default=3, help="counted repeats, after one warm-up")
    parser.add_argument("--train-examples", type=int, help="default: the whole training split")
    args = parser.parse_args()

    split, metric = TASKS.get(args.task).decider()
    times: dict[str, list[float]] = {"dense": [], "search": [], "earlybert": [], "random": []}
    for repeat in range(args.repeats + 1):
        with tempfile.TemporaryDirectory() as out:
            result = earlybert(args.model, args.task, out=out, train_examples=args.train_examples)
        if repeat == 0:
            first = result
            continue
        assert all(
            r[split] == f[split]
            for r, f in zip(
                (result.dense, result.earlybert, result.random), (first.dense, first.earlybert, first.random)
            )
        )
        for name, seconds in (
            ("dense", result.dense["train_time_s"]),
            ("search", result.earlybert["search"]["time_s"]),
            ("earlybert", result.earlybert["train_time_s"]),
            ("random", result.random["train_time_s"]),
        ):
            times[name].append(seconds)
        print(f"repeat {repeat}: " + ", ".join(f"{name} {values[-1]:.1f} s" for name, values in times.items()))

    median = {name: statistics.median(values) for name, values in times.items()}
    search = first.earlybert["search"]
    shape = first.earlybert["structure"]
    print(f"\nmachine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(
        f"{args.model} on {args.task}: {first.dense['steps']} steps a training; "
        f"early bird drawn at step {search['draw_step']}"
        f" ({'found' if search['early_bird'] else 'not found'}; draws every {search['draw_every']} steps)"
    )
    print(
        f"kept: {sum(map(len, shape['heads']))}/{sum(shape['heads_total'])} heads, "
        f"{sum(shape['ffn_kept'])}/{sum(shape['ffn_total'])} FFN neurons,"
        f" {shape['params'] / shape['dense_params']:.1%} of the parameters, "
        f"prunable-weight sparsity {first.earlybert['sparsity']:.1%}"
    )
    print(
        f"{split} {metric}: dense {first.dense[split][metric]:.4f}, EarlyBERT {first.earlybert[split][metric]:.4f}, "
        f"random structured {first.random[split][metric]:.4f}"
    )
    print("medians: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in median.items()))
    print(
        "(search + EarlyBERT training) / dense training: "
        f"{(median['search'] + median['earlybert']) / median['dense']:.3f}"
    )
    print(
        f"compacted training / dense training: {median['earlybert'] / median['dense']:.3f}; "
        f"search / dense: {median['search'] / median['dense']:.3f}"
    )


if __name__ == "__main__":
    main()
