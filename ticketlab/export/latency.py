"""Whole-model latency: an export against the fastest dense way this machine runs the same model.

"Dense" is the fastest of fp32, bf16 where the CPU runs it natively (ticketlab.hardware: AMX-BF16 or AVX512-BF16;
both the model cast to bf16 weights and fp32 weights under bf16 autocast) and dynamic INT8 (torch.ao). Models take
turns on the same inputs in one process, the order rotating; medians.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ..hardware import native_bf16
from .kernels import quantize

Forward = Callable[..., Any]


def dense_variants(model: nn.Module) -> dict[str, Forward]:
    """Copies of `model` (fp32, CPU) for each dense way this machine runs it, by name: "fp32", "bf16 weights" and
    "bf16 autocast" (where the CPU has native bf16), "int8"."""
    variants: dict[str, Forward] = {"fp32": copy.deepcopy(model)}
    if native_bf16("cpu"):
        variants["bf16 weights"] = copy.deepcopy(model).to(torch.bfloat16)
        variants["bf16 autocast"] = autocast_bf16(copy.deepcopy(model))
    variants["int8"] = copy.deepcopy(model)
    quantize(variants["int8"])
    return variants


def autocast_bf16(model: nn.Module) -> Forward:
    """`model`'s forward under CPU bf16 autocast."""

    def forward(**inputs: Any) -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(**inputs)

    return forward


def text_inputs(vocab_size: int, batch: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """batch x length random word pieces (ids from 1000 up, past BERT's special ones, in a vocabulary that large) and
    a full attention mask."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000 if vocab_size > 1000 else 0, vocab_size, (batch, length), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@torch.inference_mode()
def race(models: Sequence[Forward], inputs: Mapping[str, Any], repeats: int, turn: float) -> list[float]:
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


def against_dense(
    exported: Forward, dense: Mapping[str, Forward], inputs: Mapping[str, Any], repeats: int = 5, turn: float = 0.05
) -> dict[str, Any]:
    """The exported model raced against every dense variant: each one's milliseconds, the fastest dense, and the
    speedup of the export over it."""
    *dense_ms, exported_ms = race([*dense.values(), exported], inputs, repeats, turn)
    timings = dict(zip(dense, dense_ms))
    fastest = min(timings, key=timings.__getitem__)
    return {
        "dense ms": {name: round(ms, 3) for name, ms in timings.items()},
        "fastest dense": fastest,
        "exported ms": round(exported_ms, 3),
        "speedup": round(timings[fastest] / exported_ms, 3),
    }
