"""Fine-tuning step time in bf16 autocast over fp32 (`--precision`), side by side in one process.

Two copies of the same model take turns on the same batches, `STEPS` optimizer steps each per repeat (fp32, and bf16
autocast with fp32 master weights); the medians of the step times and of the per-repeat ratios are reported, with
the CPU and its vector features (bf16 is native only with AMX-BF16 or AVX512-BF16).
Run: make bench   (or .venv/bin/python benchmarks/bench_precision.py [--model minilm-l6] [--length 128])
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from ticketlab.config import TrainConfig
from ticketlab.hardware import cpu_features, cpu_name, native_bf16
from ticketlab.models import load_pretrained, load_tokenizer, resolve_model
from ticketlab.tasks import TASKS
from ticketlab.train.loop import make_optimizer, training_step

PRECISIONS = ("fp32", "bf16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--length", type=int, default=64, help="max tokens per example")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per turn")
    args = parser.parse_args()

    task = TASKS.get("rotten-tomatoes")
    config = TrainConfig(batch_size=32, max_length=args.length, learning_rate=1e-4)
    path = resolve_model(args.model)
    tokenizer = load_tokenizer(path)
    examples = sorted(task.splits(None)["train"], key=lambda example: -len(example[0]))  # the longest: full length
    features = task.encode(tokenizer, examples[: config.batch_size * args.steps], config.max_length)
    collate = task.collator(tokenizer, train=True)
    batches = [collate(features[i : i + config.batch_size]) for i in range(0, len(features), config.batch_size)]
    model = load_pretrained(path, task.auto_class, seed=0, **task.model_options())
    state = {}
    for precision in PRECISIONS:
        copied = copy.deepcopy(model)
        optimizer = make_optimizer(copied, config)
        state[precision] = (copied, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0))

    def turn(precision: str) -> float:
        model, optimizer, scheduler = state[precision]
        start = time.perf_counter()
        for step, batch in enumerate(batches, 1):
            training_step(model, batch, optimizer, scheduler, [], config.max_grad_norm, step, precision=precision)
        return (time.perf_counter() - start) / len(batches)

    for precision in PRECISIONS:  # warm-up
        turn(precision)
    times: dict[str, list[float]] = {precision: [] for precision in PRECISIONS}
    for repeat in range(args.repeats):
        for precision in PRECISIONS if repeat % 2 == 0 else PRECISIONS[::-1]:
            times[precision].append(turn(precision))
    fp32_ms, bf16_ms = (1000 * statistics.median(times[p]) for p in PRECISIONS)
    ratios = [b / f for b, f in zip(times["bf16"], times["fp32"])]
    print(f"CPU: {cpu_name()}; features: {', '.join(cpu_features())}; native bf16: {native_bf16('cpu')}")
    print(f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(
        f"model {args.model}, batch {config.batch_size} x {args.length} tokens, {args.repeats} repeats x "
        f"{args.steps} steps, alternating"
    )
    print(f"fp32 step {fp32_ms:.0f} ms, bf16 autocast step {bf16_ms:.0f} ms (medians)")
    print(f"fp32 / bf16 = {fp32_ms / bf16_ms:.2f}x (median of per-repeat ratios: {1 / statistics.median(ratios):.2f}x)")


if __name__ == "__main__":
    main()
