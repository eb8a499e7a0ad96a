"""Experiments fanned out: a reduced small preset run in this process and on a local Ray with 2 workers, side by side
(goal: at least 1.8x with 2 workers on units of at least 30 s), and Ray's scheduling overhead per unit.

The reduced preset is the small one (splade-tiny; Rotten Tomatoes on 2,000 examples and MLM on the embedded
Wikipedia sample; linear 0.2 to 80%) with 2 seeds, the random control and the transfer grid at 60%: 16 units. Both
runs start from empty folders; this process keeps torch's default threads (every core), each Ray worker one thread
(one CPU per unit). The overhead is the wall time of no-op units on the same, warm, Ray, per unit. Then the same
units' length: the mean wall time of a unit as the store records it; and what bounds the speedup on one machine: how
many units Ray ran at once (the trainings' seconds over its wall time) and how much longer a training takes on one
worker's thread than on this process's threads.
Run: .venv/bin/python benchmarks/bench_executor.py [--out runs/bench-executor] [--seeds 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import time
from pathlib import Path

import ray
import torch

from ticketlab.executors import RayExecutor, Unit, run_units
from ticketlab.experiment import run_experiment
from ticketlab.plan import recipe_units
from ticketlab.recipe import load_recipe

NOOPS = 40


def reduced(seeds: int):
    return dataclasses.replace(load_recipe("small"), seeds=seeds, controls=["random"], rewind_steps=[])


def unit_seconds(out: Path) -> list[float]:
    """The wall time of every trained unit in a store (rounds and branches)."""
    return [json.loads(path.read_text())["wall_time_s"] for path in out.glob("*/**/round_*/metrics.json")]


def nothing() -> None:
    """A unit that does no work: what remains of its wall time is scheduling."""


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-executor"))
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"{torch.get_num_threads()} torch threads here, torch {torch.__version__}, ray {ray.__version__}"
    )
    recipe = reduced(args.seeds)
    here, on_ray = args.out / "here", args.out / "ray"
    shutil.rmtree(args.out, ignore_errors=True)
    units = recipe_units(recipe, here.resolve(), range(args.seeds), 100)
    executor = RayExecutor(init={"num_cpus": 2})
    here_s = timed(lambda: run_experiment(recipe, here))
    try:
        ray_s = timed(lambda: run_experiment(recipe, on_ray, executor=executor))
        noops = [Unit(f"no-op {i}", nothing, {}, None) for i in range(NOOPS)]
        overhead_s = timed(lambda: run_units(noops, executor)) / NOOPS
    finally:
        ray.shutdown()
    lengths, ray_lengths = unit_seconds(here), unit_seconds(on_ray)
    print(f"\n{len(units)} units ({len(lengths)} trainings, {sum(lengths) / len(units):.0f} s a unit on average here)")
    print(f"in this process: {here_s:.0f} s; on a local Ray with 2 workers: {ray_s:.0f} s")
    print(f"speedup: {here_s / ray_s:.2f}x (goal: at least 1.8x)")
    # What bounds it on one machine: the workers share its cores, which this process's torch threads already use.
    print(f"units at once on Ray (their trainings' seconds / its wall time): {sum(ray_lengths) / ray_s:.2f}")
    print(f"a training on one worker's thread / on this process's threads: {sum(ray_lengths) / sum(lengths):.2f}")
    print(f"Ray's overhead per unit (no-op units, warm workers): {1000 * overhead_s:.0f} ms")


if __name__ == "__main__":
    main()
