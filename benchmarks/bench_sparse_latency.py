"""Whole-model latency of a ticket exported to run faster, dense / exported, and the break-even sparsity of each
kernel (goals on 2 cores, 90% sparsity: >= 3x at batch 1 and >= 2x at batch 32 x 128 tokens; >= 5x with INT8 at
batch 1).

For each model, granularity and sparsity: a magnitude ticket of the pre-trained weights (the default "layers" scope;
latency does not depend on training), the encoder exported as `sparse` (each pruned linear layer through the fastest
kernel of ticketlab.export.kernels, timed on the deployment shape) and as `sparse-int8`, raced against the dense
model and its dynamic-INT8 copy in one process, turns alternating (the order rotating each repeat); the ratio of
medians is the speedup. A kernel's break-even sparsity is the lowest sparsity of the grid at which its time summed
over the pruned layers (from the export's own timings) is below dense's. The ceiling is dense / the model with every
prunable linear layer free (returning zeros at no cost): no kernel can beat it, so it bounds every speedup (Amdahl).
ONNX Runtime runs the dense model and the 90% weight ticket, one session each, in turns.
Run: .venv/bin/python benchmarks/bench_sparse_latency.py [--models minilm-l6 splade-tiny] [--batches 1 32]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from racing import race
from transformers import AutoModel

from ticketlab.export.formats import kernels_for, quantize
from ticketlab.export.kernels import available_kernels
from ticketlab.export.onnx import write_onnx
from ticketlab.export.sparse import sparsify
from ticketlab.masks import apply_mask, ones_like
from ticketlab.models import layer_stack_weights, load_pretrained, prunable_weights, resolve_model
from ticketlab.pruning import magnitude_prune, parse_granularity, scope_rankings

GRANULARITIES = ["weight", "block:1x4", "block:4x4", "block:8x8", "2:4"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["minilm-l6", "splade-tiny"])
    parser.add_argument("--granularities", nargs="*", default=GRANULARITIES, help="none: the ceiling and ONNX only")
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.5, 0.7, 0.9, 0.95])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--turn", type=float, default=0.3, help="seconds of forward calls per turn, at least one call")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime comparison")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, kernels: {', '.join(available_kernels())}"
        f"; load average at start {os.getloadavg()[0]:.2f}"
    )
    rows = []
    for name in args.models:
        dense = load_pretrained(resolve_model(name), AutoModel, seed=0).eval()
        int8 = copy.deepcopy(dense)
        quantize(int8)
        weights = prunable_weights(dense)
        rankings = scope_rankings("layers", list(weights), layer_stack_weights(dense))
        free = without_linear_cost(dense, weights)
        for batch in args.batches:
            inputs = make_inputs(dense.config.vocab_size, batch, args.length)
            dense_ms, free_ms = race((dense, free), inputs, args.repeats, args.turn)
            print(
                f"{name} batch {batch} x {args.length}: dense {dense_ms:.1f} ms, with the prunable linear layers free "
                f"{free_ms:.1f} ms: ceiling of any speedup {dense_ms / free_ms:.2f}x",
                flush=True,
            )
            for granularity in args.granularities:
                plans = {}
                for sparsity in args.sparsities:
                    mask = magnitude_prune(
                        weights, ones_like(weights), sparsity, rankings, parse_granularity(granularity)
                    )
                    sparse = copy.deepcopy(dense)
                    apply_mask(prunable_weights(sparse), mask)
                    sparse_int8 = copy.deepcopy(sparse)
                    plans[sparsity] = sparsify(sparse, mask, batch * args.length)
                    sparsify(sparse_int8, mask, batch * args.length, kernels_for("sparse-int8"))
                    quantize(sparse_int8)
                    ms = race((dense, int8, sparse, sparse_int8), inputs, args.repeats, args.turn)
                    row = (name, batch, granularity, sparsity, *ms, ms[0] / ms[1], ms[0] / ms[2], ms[0] / ms[3])
                    rows.append(row)
                    print(
                        f"{name} batch {batch} x {args.length}, {granularity} {sparsity:.0%}: dense {ms[0]:.1f} ms, "
                        f"int8 {ms[1]:.1f} ms, sparse {ms[2]:.1f} ms, sparse-int8 {ms[3]:.1f} ms; dense / sparse "
                        f"{row[-2]:.2f}x, dense / sparse-int8 {row[-1]:.2f}x; kernels {kernel_counts(plans[sparsity])}",
                        flush=True,
                    )
                print(f"  break-even sparsity ({granularity}): {break_even(plans)}", flush=True)
        if not args.no_onnx and 0.9 in args.sparsities:
            print(f"{name}: ONNX Runtime, batch 1 x {args.length}: {onnx_race(dense, weights, rankings, args)}")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}\n")
    print(
        "| model | batch x length | granularity | sparsity | dense | INT8 | sparse | sparse + INT8 "
        "| dense / INT8 | **dense / sparse** | **dense / (sparse + INT8)** |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, batch, granularity, sparsity, *ms, int8_x, sparse_x, both_x in rows:
        print(
            f"| {name} | {batch} x {args.length} | {granularity} | {sparsity:.0%} | "
            + " | ".join(f"{m:.1f} ms" for m in ms)
            + f" | {int8_x:.2f} | **{sparse_x:.2f}** | **{both_x:.2f}** |"
        )


class Free(torch.nn.Module):
    """A linear layer that costs nothing: zeros of the output's shape."""

    def __init__(self, out_features: int):
        super().__init__()
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(*x.shape[:-1], self.out_features)


def without_linear_cost(dense: torch.nn.Module, weights: dict) -> torch.nn.Module:
    """A copy of `dense` whose prunable linear layers are Free."""
    free = copy.deepcopy(dense)
    for name in weights:
        parent, _, child = name.rpartition(".")[0].rpartition(".")
        module = free.get_submodule(f"{parent}.{child}" if parent else child)
        if isinstance(module, torch.nn.Linear):
            setattr(free.get_submodule(parent) if parent else free, child, Free(module.out_features))
    return free


def kernel_counts(plan: dict) -> str:
    counts: dict[str, int] = {}
    for entry in plan.values():
        counts[entry["kernel"]] = counts.get(entry["kernel"], 0) + 1
    return ", ".join(f"{n} {kernel}" for kernel, n in sorted(counts.items()))


def break_even(plans: dict[float, dict]) -> str:
    """Per kernel, the lowest sparsity whose summed per-layer time beats dense's (from the exports' timings)."""
    kernels = sorted({kernel for plan in plans.values() for entry in plan.values() for kernel in entry["ms"]})
    found = {}
    for kernel in kernels:
        if kernel == "dense":
            continue
        for sparsity, plan in sorted(plans.items()):
            timed = [entry["ms"] for entry in plan.values() if kernel in entry["ms"]]
            if timed and len(timed) == len(plan) and sum(t[kernel] for t in timed) < sum(t["dense"] for t in timed):
                found[kernel] = f"{sparsity:.0%}"
                break
        else:
            found[kernel] = "never in the grid"
    return ", ".join(f"{kernel} {where}" for kernel, where in found.items())


def onnx_race(dense, weights, rankings, args) -> str:
    """Median ms of ONNX Runtime on the dense model and on a 90% weight ticket, one session each, in turns."""
    import onnxruntime

    pruned = copy.deepcopy(dense)
    mask = magnitude_prune(weights, ones_like(weights), 0.9, rankings, parse_granularity("weight"))
    apply_mask(prunable_weights(pruned), mask)
    inputs = {k: v.numpy() for k, v in make_inputs(dense.config.vocab_size, 1, args.length).items()}
    with tempfile.TemporaryDirectory() as folder:
        sessions = []
        for label, model in (("dense", dense), ("ticket", pruned)):
            path = Path(folder) / f"{label}.onnx"
            write_onnx(model, path)
            options = onnxruntime.SessionOptions()  # no spinning: an idle session's threads would slow the other's turn
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            sessions.append(onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))
        times = [[], []]
        for repeat in range(args.repeats * 3):
            for index in (repeat % 2, 1 - repeat % 2):
                start = time.perf_counter()
                sessions[index].run(None, inputs)
                times[index].append(time.perf_counter() - start)
    dense_ms, ticket_ms = (1e3 * statistics.median(t) for t in times)
    return f"dense {dense_ms:.1f} ms, 90% weight ticket {ticket_ms:.1f} ms, dense / ticket {dense_ms / ticket_ms:.2f}x"


def make_inputs(vocab: int, batch: int, length: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (batch, length), generator=generator)  # ordinary word pieces
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


if __name__ == "__main__":
    main()
