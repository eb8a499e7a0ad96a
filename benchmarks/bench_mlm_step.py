"""MLM step and evaluation time with vocabulary logits at the masked positions only, over the full-vocabulary path.

Same model, same batches, one process: two copies of the masked LM, one trained through the plain call (logits at every
position), one through the MLM task's `forward` (logits at the ~15% masked positions), take turns, `STEPS` optimizer
steps each per repeat; then the dev split is evaluated both ways, alternating. Ratios of the median times are reported.
Run: make bench   (or .venv/bin/python benchmarks/bench_mlm_step.py [--model minilm-l6])
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from typing import Callable

import torch

from ticketlab.config import TrainConfig
from ticketlab.models import load_pretrained, load_tokenizer, resolve_model
from ticketlab.tasks import TASKS
from ticketlab.train.batches import call_model
from ticketlab.train.evaluate import eval_batch_size, predict
from ticketlab.train.loop import make_optimizer, training_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="splade-tiny")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1, help="optimizer steps per turn")
    parser.add_argument("--eval-repeats", type=int, default=3)
    args = parser.parse_args()

    task = TASKS.get("mlm")
    config = TrainConfig(batch_size=32, max_length=128, learning_rate=1e-4)
    path = resolve_model(args.model)
    tokenizer = load_tokenizer(path)
    splits = task.splits(None)
    features = task.encode(tokenizer, splits["train"], config.max_length)[: config.batch_size * args.steps]
    dev = task.encode(tokenizer, splits["dev"], config.max_length)
    collate, dev_collate = task.collator(tokenizer, train=True), task.collator(tokenizer, train=False)
    torch.manual_seed(0)
    batches = [collate(features[i : i + config.batch_size]) for i in range(0, len(features), config.batch_size)]

    model = load_pretrained(path, task.auto_class, seed=0, **task.model_options())
    ways = {"full": call_model, "masked-only": task.forward}
    state = {}
    for name in ways:
        copied = copy.deepcopy(model)
        optimizer = make_optimizer(copied, config)
        state[name] = (copied, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0))

    def train_turn(name: str) -> float:
        copied, optimizer, scheduler = state[name]
        start = time.perf_counter()
        for step, batch in enumerate(batches, 1):
            training_step(copied, batch, optimizer, scheduler, [], config.max_grad_norm, step, ways[name])
        return (time.perf_counter() - start) / len(batches)

    scores = {}

    def eval_turn(name: str) -> float:
        start = time.perf_counter()
        outputs = predict(model, dev, dev_collate, eval_batch_size(config.batch_size), task.outputs, ways[name])
        elapsed = time.perf_counter() - start
        scores[name] = task.score(splits["dev"], dev, outputs)
        return elapsed

    train_times = alternate(train_turn, list(ways), args.repeats)
    eval_times = alternate(eval_turn, list(ways), args.eval_repeats)
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    print(
        f"model {args.model}, batch {config.batch_size} x {config.max_length} tokens, "
        f"{args.repeats} repeats x {args.steps} training steps, "
        f"{args.eval_repeats} evaluations of {len(dev)} dev blocks, alternating"
    )
    report("training step", train_times, 1000, "ms")
    report("dev evaluation", eval_times, 1, "s")
    for name, metrics in scores.items():
        print(f"dev metrics, {name}: " + ", ".join(f"{k} {v:.6f}" for k, v in metrics.items()))


def alternate(turn: Callable[[str], float], names: list[str], repeats: int) -> dict[str, list[float]]:
    """Times of `repeats` turns per name after one warm-up each, alternating which name goes first."""
    for name in names:
        turn(name)
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            times[name].append(turn(name))
    return times


def report(what: str, times: dict[str, list[float]], scale: float, unit: str) -> None:
    full, masked = (statistics.median(times[n]) for n in ("full", "masked-only"))
    ratios = [f / m for f, m in zip(times["full"], times["masked-only"])]
    print(
        f"{what}: full vocabulary {scale * full:.1f} {unit}, "
        f"masked positions only {scale * masked:.1f} {unit} (medians); "
        f"speedup full / masked-only = {full / masked:.2f} "
        f"(median of per-repeat ratios: {statistics.median(ratios):.2f})"
    )


if __name__ == "__main__":
    main()
