"""Latency measured side by side: models take turns on the same inputs in one process (shared by the benchmarks)."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Callable, Sequence

import torch


@torch.inference_mode()
def race(models: Sequence[Callable[..., Any]], inputs: dict[str, Any], repeats: int, turn: float) -> list[float]:
    """Median milliseconds per call of each model, in turns of the same number of calls (enough to fill `turn`
    seconds, at least one); the order of the turns rotates from one repeat to the next."""
    start = time.perf_counter()
    for _ in range(3):  # warm-up, and a measure of how many calls fill a turn
        for model in models:
            model(**inputs)
    calls = max(1, math.ceil(turn / ((time.perf_counter() - start) / (3 * len(models)))))
    times: list[list[float]] = [[] for _ in models]
    for repeat in range(repeats):
        for index in [(repeat + k) % len(models) for k in range(len(models))]:
            start = time.perf_counter()
            for _ in range(calls):
                models[index](**inputs)
            times[index].append(1000 * (time.perf_counter() - start) / calls)
    return [statistics.median(t) for t in times]
