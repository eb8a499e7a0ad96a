"""Masked fine-tuning step time over dense step time (target: at most 1.05).

Same model, same batches, one process: a dense copy and a 90%-sparse copy (global magnitude ticket) take turns,
`STEPS` optimizer steps each per repeat; the ratio of the median step times is reported.
Run: make bench   (or .venv/bin/python benchmarks/bench_masked_step.py [--model minilm-l6])
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import torch

from ticketlab.config import TrainConfig
from ticketlab.masks import apply_mask, ones_like
from ticketlab.models import load_pretrained, load_tokenizer, prunable_weights, resolve_model
from ticketlab.pruning import magnitude_prune
from ticketlab.tasks import TASKS
from ticketlab.train.hooks import MaskEnforcer
from ticketlab.train.loop import make_optimizer, training_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="splade-tiny")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per turn")
    parser.add_argument("--sparsity", type=float, default=0.9)
    args = parser.parse_args()

    task = TASKS.get("rotten-tomatoes")
    config = TrainConfig(batch_size=32, max_length=64, learning_rate=1e-4, weight_decay=0.01)
    path = resolve_model(args.model)
    tokenizer = load_tokenizer(path)
    features = task.encode(tokenizer, task.splits(None)["train"][: config.batch_size * args.steps], config.max_length)
    collate = task.collator(tokenizer, train=True)
    batches = [collate(features[i : i + config.batch_size]) for i in range(0, len(features), config.batch_size)]

    dense = load_pretrained(path, task.auto_class, seed=0, **task.model_options())
    masked = copy.deepcopy(dense)
    weights = prunable_weights(masked)
    mask = magnitude_prune(weights, ones_like(weights), args.sparsity)
    apply_mask(weights, mask)
    arms = {
        "dense": (dense, []),
        "masked": (masked, [MaskEnforcer(list(weights.values()), [mask[n] for n in weights])]),
    }
    state = {}
    for name, (model, hooks) in arms.items():
        optimizer = make_optimizer(model, config)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        state[name] = (model, optimizer, scheduler, hooks)

    def turn(name: str) -> float:
        model, optimizer, scheduler, hooks = state[name]
        start = time.perf_counter()
        for step, batch in enumerate(batches, 1):
            training_step(model, batch, optimizer, scheduler, hooks, config.max_grad_norm, step)
        return (time.perf_counter() - start) / len(batches)

    for name in state:  # warm-up
        turn(name)
    times = {name: [] for name in state}
    for repeat in range(args.repeats):
        order = ("dense", "masked") if repeat % 2 == 0 else ("masked", "dense")
        for name in order:
            times[name].append(turn(name))
    dense_ms, masked_ms = (1000 * statistics.median(times[n]) for n in ("dense", "masked"))
    ratios = [m / d for m, d in zip(times["masked"], times["dense"])]
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    print(
        f"model {args.model}, batch {config.batch_size} x <= {config.max_length} tokens, sparsity {args.sparsity:.0%}, "
        f"{args.repeats} repeats x {args.steps} steps, alternating"
    )
    print(f"dense step {dense_ms:.1f} ms, masked step {masked_ms:.1f} ms (medians)")
    print(f"masked / dense = {masked_ms / dense_ms:.3f} (median of per-repeat ratios: {statistics.median(ratios):.3f})")


if __name__ == "__main__":
    main()
